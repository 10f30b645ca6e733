"""interp.hooks on the tiny random twins: capture, interventions, jit/scan/grad/vmap/sharding."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from interp import hooks, models
from interp.hooks import UnknownSiteError

ARCHS = ["tiny-llama", "tiny-gemma3"]


@pytest.fixture(scope="module", params=ARCHS)
def model(request):
    return models.load(request.param)


@pytest.fixture(scope="module")
def llama():
    return models.load("tiny-llama")


def tokens(model, n=20, batch=2, seed=0):
    rng = np.random.default_rng(seed)
    return jnp.asarray(rng.integers(0, 256, size=(batch, n)), jnp.int32)


def close(a, b, atol=1e-5):
    np.testing.assert_allclose(np.asarray(a), np.asarray(b), atol=atol, rtol=1e-5)


# --------------------------------------------------------------------- catalogue and errors


def test_catalogue_lists_required_sites(model):
    required = {"embed", "resid_pre", "resid_mid", "resid_post", "attn_pattern", "attn_out",
                "mlp_hidden", "mlp_out", "final_norm", "logits"}
    assert required <= set(model.sites.names)
    assert "resid_pre" in model.sites.layer_sites and "logits" in model.sites.global_sites


def test_unknown_site_names_the_valid_ones(llama):
    with pytest.raises(UnknownSiteError) as e:
        llama.forward(tokens(llama), hooks=hooks.capture("resid_prE"))
    msg = str(e.value)
    assert "'resid_prE'" in msg and "resid_pre" in msg and "attn_pattern" in msg


def test_site_has_one_spelling_and_round_trips(llama):
    site = hooks.Site.parse("blocks.1.resid_post")
    assert site == hooks.Site("resid_post", 1) and str(site) == "blocks.1.resid_post"
    assert hooks.Site.parse(site) is site
    assert str(hooks.Site.parse("embed")) == "embed" and hooks.Site.parse("embed").layer is None
    name, layer = hooks.resolve_site(llama, "blocks.1.attn_out")  # unpacks like a pair
    assert (name, layer) == ("attn_out", 1)
    for s in llama.sites.names:                                  # every catalogue site
        spelled = f"blocks.0.{s}" if llama.sites[s].per_layer else s
        assert str(hooks.resolve_site(llama, spelled)) == spelled


@pytest.mark.parametrize("text,message", [
    ("blocks.1.nonsense", "valid sites"),
    ("resid_post", "write 'resid_post' as blocks.<layer>.<site>"),
    ("blocks.0.embed", "write 'embed' as <site> \\(no layer\\)"),
    ("blocks.99.resid_post", "layer 99 outside 0..3"),
    ("", "a site is a name"),
])
def test_bad_site_names_say_how_to_write_them(llama, text, message):
    with pytest.raises(UnknownSiteError, match=message):
        hooks.resolve_site(llama, text)


def test_bad_layers_are_rejected(llama):
    with pytest.raises(ValueError, match="outside"):
        llama.forward(tokens(llama), hooks=hooks.add("resid_pre", 1.0, layers=99))
    with pytest.raises(ValueError, match="takes no layers"):
        llama.forward(tokens(llama), hooks=hooks.capture("logits", layers=1))
    with pytest.raises(ValueError, match="runs layers 0..1"):
        llama.forward(tokens(llama), hooks=hooks.capture("resid_post", layers=3), stop_at_layer=2)


# --------------------------------------------------------------------- reading


def test_scan_equals_unrolled_with_captures(model):
    h = hooks.Hooks.of(hooks.capture("resid_post", "attn_pattern", "mlp_hidden", "embed"),
                       hooks.capture("q", layers=(1, 3)))
    a = model.forward(tokens(model), hooks=h)
    b = model.forward(tokens(model), hooks=h, unroll=True)
    close(a.logits, b.logits, 1e-4)
    assert a.captures.keys() == b.captures.keys() == {"resid_post", "attn_pattern", "mlp_hidden",
                                                      "embed", "q"}
    for k in a.captures:
        close(a.captures[k], b.captures[k], 1e-4)
    n = model.cfg.n_layers
    assert a.captures["resid_post"].shape == (n, 2, 20, model.cfg.d_model)
    assert a.captures["q"].shape == (2, 2, 20, model.cfg.n_heads, model.cfg.head_dim)


def test_captures_are_consistent(model):
    toks = tokens(model)
    out = model.forward(toks, hooks=hooks.capture("embed", "resid_pre", "resid_mid", "resid_post",
                                                  "attn_out", "mlp_out", "logits"))
    c = out.captures
    close(c["resid_pre"][0], c["embed"])
    close(c["resid_pre"][1:], c["resid_post"][:-1])
    close(c["resid_mid"], c["resid_pre"] + c["attn_out"], 1e-4)
    close(c["resid_post"], c["resid_mid"] + c["mlp_out"], 1e-4)
    close(c["logits"], out.logits)
    plain = model.forward(toks)
    # captures only read values, but the capturing program compiles separately: float32 rounding
    np.testing.assert_allclose(np.asarray(plain.logits), np.asarray(out.logits), rtol=1e-6,
                               atol=1e-6)


def test_attention_pattern_is_causal_and_windowed(model):
    out = model.forward(tokens(model, n=20), hooks=hooks.capture("attn_pattern"))
    p = np.asarray(out.captures["attn_pattern"])  # [L, B, H, T, S]
    np.testing.assert_allclose(p.sum(-1), 1.0, atol=1e-5)
    q, k = np.meshgrid(np.arange(20), np.arange(20), indexing="ij")
    assert np.all(p[..., k > q] == 0)  # exact: exp(finfo.min - max) underflows to 0
    cfg = model.cfg
    for layer in range(cfg.n_layers):
        far = (q - k) >= (cfg.sliding_window or 10**9)
        if cfg.is_global(layer):
            assert np.all(p[layer][..., far] > 0) if far.any() else True
        else:
            assert np.all(p[layer][..., far] == 0)  # exact, as above
    if cfg.arch == "gemma3":
        assert not cfg.is_global(0) and cfg.is_global(5)


def test_stop_and_resume(model):
    toks = tokens(model)
    full = model.forward(toks, hooks=hooks.capture("resid_pre"))
    part = model.forward(toks, stop_at_layer=2)
    assert part.logits is None
    close(part.resid, full.captures["resid_pre"][2])
    rest = model.forward(None, start_at_layer=2, resid=part.resid)
    close(rest.logits, full.logits, 1e-4)
    with pytest.raises(ValueError, match="resid"):
        model.forward(toks, start_at_layer=2)


def test_inactive_hooks_leave_the_program_unchanged(llama):
    """With no hooks the traced program is exactly the untagged one: zero runtime cost."""
    from interp.models import core

    def jaxpr(h=None):
        return str(jax.make_jaxpr(
            lambda p, t: core.forward(llama.arch, p, t, llama.cfg, h).logits)(
                llama.params, tokens(llama)))

    tagged = jaxpr()
    captured = jaxpr(hooks.capture("resid_post", layers=1))
    with hooks.untagged():
        assert jaxpr() == tagged
        with pytest.raises(ValueError, match="inside hooks.untagged"):
            jaxpr(hooks.capture("resid_post", layers=1))
    assert captured != tagged and jaxpr(hooks.capture("resid_post", layers=1)) == captured


# --------------------------------------------------------------------- writing


def test_add_equals_manual_stop_edit_resume(model):
    toks = tokens(model)
    vec = jax.random.normal(jax.random.key(1), (model.cfg.d_model,))
    hooked = model.forward(toks, hooks=hooks.add("resid_pre", vec, scale=3.0, layers=2,
                                                 positions=(0, 1, 5)))
    r = model.forward(toks, stop_at_layer=2).resid
    r = r.at[:, jnp.array([0, 1, 5])].add(3.0 * vec)
    manual = model.forward(None, start_at_layer=2, resid=r)
    close(hooked.logits, manual.logits, 1e-4)
    assert not np.allclose(hooked.logits, model.forward(toks).logits, atol=1e-3)


def test_zero_ablation(model):
    out = model.forward(tokens(model), hooks=hooks.Hooks.of(
        hooks.zero_ablate("mlp_out", layers=1), hooks.capture("resid_mid", "resid_post", "mlp_out")))
    c = out.captures
    assert np.all(np.asarray(c["mlp_out"][1]) == 0)  # exact: written as zeros
    close(c["resid_post"][1], c["resid_mid"][1])
    assert np.abs(np.asarray(c["mlp_out"][2])).max() > 0


def test_patch_from_another_run(model):
    a, b = tokens(model, seed=1), tokens(model, seed=2)
    run_a = model.forward(a, hooks=hooks.capture("resid_pre", layers=(2,)))
    patched = model.forward(b, hooks=hooks.patch("resid_pre", run_a.captures["resid_pre"], layers=(2,)))
    close(patched.logits, run_a.logits, 1e-4)  # the whole residual carries all information
    # patching only the last position changes only the last position's prediction
    last = model.forward(b, hooks=hooks.patch("resid_pre", run_a.captures["resid_pre"], layers=(2,),
                                              positions=19))
    plain = model.forward(b).logits
    close(last.logits[:, :19], plain[:, :19], 1e-5)
    assert np.abs(np.asarray(last.logits[:, 19] - plain[:, 19])).max() > 1e-3


def test_patch_all_layers_and_mean_ablate_per_layer(model):
    a, b = tokens(model, seed=1), tokens(model, seed=2)
    src = model.forward(a, hooks=hooks.capture("attn_out")).captures["attn_out"]
    out = model.forward(b, hooks=hooks.Hooks.of(hooks.patch("attn_out", src), hooks.capture("attn_out")))
    close(out.captures["attn_out"], src)
    means = src.mean(axis=(1, 2))  # [L, d]: one mean per layer
    out = model.forward(b, hooks=hooks.Hooks.of(hooks.mean_ablate("attn_out", means, per_layer=True),
                                                hooks.capture("attn_out")))
    close(out.captures["attn_out"], jnp.broadcast_to(means[:, None, None], src.shape))


def _enc(p, x):
    return x @ p["w"]


def _dec(p, c):
    return c @ p["w"].T


def _kill_first(codes, _):
    return codes.at[..., 0].set(0.0)


def test_splice_encode_decode(model):
    toks = tokens(model)
    d = model.cfg.d_model
    orth = jnp.linalg.qr(jax.random.normal(jax.random.key(0), (d, d)))[0]
    base = model.forward(toks).logits
    exact = model.forward(toks, hooks=hooks.splice("resid_mid", _enc, _dec, {"w": orth}, layers=1))
    close(exact.logits, base, 1e-3)  # an orthogonal autoencoder is lossless
    lossy = {"w": orth[:, : d // 4]}
    spliced = model.forward(toks, hooks=hooks.splice("resid_mid", _enc, _dec, lossy, layers=1))
    assert np.abs(np.asarray(spliced.logits - base)).max() > 1e-2
    with_error = model.forward(toks, hooks=hooks.splice("resid_mid", _enc, _dec, lossy, layers=1,
                                                        keep_error=True))
    close(with_error.logits, base, 1e-3)  # the error term restores the exact activation
    edited = model.forward(toks, hooks=hooks.splice("resid_mid", _enc, _dec, lossy, layers=1,
                                                    keep_error=True, edit=_kill_first))
    assert np.abs(np.asarray(edited.logits - base)).max() > 1e-3


def test_global_site_interventions(model):
    toks = tokens(model)
    vec = jnp.ones(model.cfg.d_model)
    out = model.forward(toks, hooks=hooks.Hooks.of(hooks.add("embed", vec),
                                                   hooks.capture("embed", "resid_pre")))
    close(out.captures["resid_pre"][0], out.captures["embed"])
    plain = model.forward(toks, hooks=hooks.capture("embed"))
    close(out.captures["embed"], plain.captures["embed"] + 1.0)
    zero = model.forward(toks, hooks=hooks.zero_ablate("final_norm"))
    assert np.all(np.asarray(zero.logits) == 0)  # exact: the unembedding of exact zeros


# --------------------------------------------------------------------- JAX transformations


def test_jit_recompiles_only_when_hook_structure_changes(llama):
    from interp.models import _forward_jit

    toks = tokens(llama)
    d = llama.cfg.d_model
    llama.forward(toks, hooks=hooks.add("resid_pre", jnp.zeros(d), layers=2))
    n0 = _forward_jit._cache_size()
    for seed in range(3):  # new values, same structure: no recompilation
        llama.forward(toks, hooks=hooks.add("resid_pre", jax.random.normal(jax.random.key(seed), (d,)),
                                            scale=float(seed), layers=2))
    assert _forward_jit._cache_size() == n0
    llama.forward(toks, hooks=hooks.add("resid_pre", jnp.zeros(d), layers=3))  # another layer set
    assert _forward_jit._cache_size() == n0 + 1
    llama.forward(toks, hooks=hooks.add("resid_mid", jnp.zeros(d), layers=3))  # another site
    assert _forward_jit._cache_size() == n0 + 2


def test_grad_through_intervention_matches_finite_differences(model):
    toks = tokens(model, batch=1)
    d = model.cfg.d_model

    def loss(vec):
        out = model.forward(toks, hooks=hooks.add("resid_pre", vec, layers=1, positions=(0, 3)))
        return -jax.nn.log_softmax(out.logits[0, -1])[7]

    vec = 0.1 * jax.random.normal(jax.random.key(0), (d,))
    g = jax.grad(loss)(vec)
    assert np.isfinite(np.asarray(g)).all() and np.abs(np.asarray(g)).max() > 0
    direction = jax.random.normal(jax.random.key(1), (d,))
    direction = direction / jnp.linalg.norm(direction)
    eps = 1e-2
    fd = (loss(vec + eps * direction) - loss(vec - eps * direction)) / (2 * eps)
    np.testing.assert_allclose(float(g @ direction), float(fd), rtol=2e-2, atol=1e-4)


def test_vmap_over_strengths(model):
    toks = tokens(model, batch=1)
    vec = jnp.ones(model.cfg.d_model)

    def logits(s):
        return model.forward(toks, hooks=hooks.add("resid_pre", vec, scale=s, layers=1)).logits

    strengths = jnp.array([0.0, 0.5, 2.0])
    batched = jax.vmap(logits)(strengths)
    for i, s in enumerate(strengths):
        close(batched[i], logits(s), 1e-4)
    close(batched[0], model.forward(toks).logits, 1e-5)


def test_per_layer_arguments_under_scan(model):
    toks = tokens(model)
    n, d = model.cfg.n_layers, model.cfg.d_model
    vecs = jax.random.normal(jax.random.key(3), (2, d))
    stacked = model.forward(toks, hooks=hooks.add("resid_mid", vecs, layers=(1, 3), per_layer=True))
    separate = model.forward(toks, hooks=hooks.Hooks.of(hooks.add("resid_mid", vecs[0], layers=1),
                                                        hooks.add("resid_mid", vecs[1], layers=3)))
    unrolled = model.forward(toks, hooks=hooks.add("resid_mid", vecs, layers=(1, 3), per_layer=True),
                             unroll=True)
    close(stacked.logits, separate.logits, 1e-4)
    close(stacked.logits, unrolled.logits, 1e-4)
    all_layers = jax.random.normal(jax.random.key(4), (n, d))
    out = model.forward(toks, hooks=hooks.Hooks.of(hooks.add("attn_out", all_layers, per_layer=True),
                                                   hooks.capture("attn_out")))
    ref = model.forward(toks, hooks=hooks.capture("attn_out")).captures["attn_out"]
    close(out.captures["attn_out"][0] - ref[0], jnp.broadcast_to(all_layers[0], ref[0].shape), 1e-4)
    loop = model.forward(toks, hooks=hooks.Hooks.of(hooks.add("attn_out", all_layers, per_layer=True),
                                                    hooks.capture("attn_out")), unroll=True)
    close(out.captures["attn_out"], loop.captures["attn_out"], 1e-4)


def test_sharded_inputs():
    """Batch sharded over 4 (forced host) devices, a replicated steering vector: same result."""
    code = textwrap.dedent("""
        import jax, jax.numpy as jnp, numpy as np
        from jax.sharding import Mesh, NamedSharding, PartitionSpec as P
        from interp import hooks, models
        assert len(jax.devices()) == 4
        m = models.load("tiny-gemma3")
        mesh = Mesh(np.array(jax.devices()), ("data",))
        toks = jnp.asarray(np.random.default_rng(0).integers(0, 256, (8, 16)), jnp.int32)
        vec = jnp.ones(m.cfg.d_model)
        h = hooks.Hooks.of(hooks.add("resid_pre", vec, layers=2), hooks.capture("resid_post", layers=3))
        ref = m.forward(toks, hooks=h)
        sharded = jax.device_put(toks, NamedSharding(mesh, P("data")))
        params = jax.device_put(m.params, NamedSharding(mesh, P()))
        out = m.apply(params, sharded, hooks=h)
        assert len(out.logits.sharding.device_set) == 4
        np.testing.assert_allclose(out.logits, ref.logits, atol=1e-4)
        np.testing.assert_allclose(out.captures["resid_post"], ref.captures["resid_post"], atol=1e-4)
        print("OK")
    """)
    env = dict(os.environ, XLA_FLAGS="--xla_force_host_platform_device_count=4",
               JAX_PLATFORMS="cpu")
    r = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True,
                       timeout=300)
    assert r.returncode == 0 and "OK" in r.stdout, r.stderr[-3000:]


def test_add_one_vector_per_position(llama):
    toks = tokens(llama)
    d = llama.cfg.d_model
    vecs = jax.random.normal(jax.random.key(5), (3, d))
    out = llama.forward(toks, hooks=hooks.Hooks.of(
        hooks.add("resid_pre", vecs, layers=1, positions=(0, 2, 4)), hooks.capture("resid_pre", layers=1)))
    ref = llama.forward(toks, hooks=hooks.capture("resid_pre", layers=1)).captures["resid_pre"][0]
    expected = ref.at[:, jnp.array([0, 2, 4])].add(vecs)
    close(out.captures["resid_pre"][0], expected)
