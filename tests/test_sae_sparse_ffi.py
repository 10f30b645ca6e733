"""SAEConfig.step="ffi" (issue #16): the C++ kernels called by XLA compute the same products,
gradients, Adam moments and loss curves as the dense (XLA) step, under jit and vmap, on one
core too (no host callback that could deadlock)."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from interp import sae
from interp.sae import common, sparse_ffi, training
from test_sae_sparse import (D_IN, D_SAE, assert_step_matches_dense, cfg, close, data,
                              loss_curves, start_state)

if not sparse_ffi.available():  # pragma: no cover - g++ is on the README's machine
    pytest.skip("the FFI kernels do not build here (no g++?)", allow_module_level=True)


def _sparse_codes(rng, shape, density=0.05):
    return (rng.standard_normal(shape) * (rng.random(shape) < density)).astype(np.float32)


def test_kernels_equal_dense_products_shared_and_per_member():
    rng = np.random.default_rng(0)
    f, g = _sparse_codes(rng, (3, 48, 200)), rng.standard_normal((3, 48, 24)).astype(np.float32)
    W = rng.standard_normal((3, 200, 24)).astype(np.float32)
    J = jnp.asarray
    for w_axis in (None, 0):  # one decoder shared by the sweep, or one per member
        Wm = W[0] if w_axis is None else W
        close(jax.jit(jax.vmap(sparse_ffi.decode, (0, w_axis)))(J(f), J(Wm)), f @ Wm, "decode")
        want = np.where(f != 0, g @ np.swapaxes(Wm, -1, -2), 0)
        close(jax.vmap(sparse_ffi.masked_dot, (0, 0, w_axis))(J(f), J(g), J(Wm)), want,
              "masked dot")
    close(sparse_ffi.outer(J(f[0]), J(g[0])), f[0].T @ g[0], "outer")
    close(jax.vmap(sparse_ffi.outer)(J(f), J(g)), np.swapaxes(f, 1, 2) @ g, "outer, vmapped")
    close(jax.vmap(sparse_ffi.outer_t, (0, None))(J(f), J(g[0])),
          np.swapaxes(np.swapaxes(f, 1, 2) @ g[0], 1, 2), "outer transposed, g shared")
    z = rng.standard_normal((2, 5, 40)).astype(np.float32)
    for k in (1, 7, 40):
        close(jax.vmap(lambda a: sparse_ffi.kth_largest(a, k))(J(z)),
              jax.lax.top_k(J(z), k)[0][..., -1:], f"k-th largest, k={k}")


def test_kth_largest_selection_is_exact_when_its_sample_misses():
    """The kernel's selection guesses a threshold from every 8th entry; rows whose largest
    entries all sit on that stride (the guess keeps fewer than k: the whole row is searched),
    all off it (the guess keeps many), and rows of ties must still give the k-th largest
    exactly (a selected entry, so equality is exact)."""
    rng = np.random.default_rng(3)
    n = 1024
    random_rows = rng.standard_normal((4, n)).astype(np.float32)
    on_stride = rng.uniform(-1, 0, (2, n)).astype(np.float32)
    on_stride[:, 0::8] += 10.0  # the 128 largest entries are exactly the sampled ones
    off_stride = rng.uniform(-1, 0, (2, n)).astype(np.float32)
    off_stride[:, 1::8] += 10.0  # none of the 128 largest is sampled
    ties = np.repeat(rng.integers(0, 3, (2, n // 8)), 8, axis=1).astype(np.float32)
    z = np.concatenate([random_rows, on_stride, off_stride, ties, np.zeros((1, n), np.float32)])
    for k in (1, 32, 64, 200, 255, 700):
        got = np.asarray(sparse_ffi.kth_largest(jnp.asarray(z), k))[:, 0]
        # exact by construction: the kernel returns one of the row's own entries, no arithmetic
        np.testing.assert_array_equal(got, -np.sort(-z, axis=1)[:, k - 1], err_msg=f"k={k}")


@pytest.mark.parametrize("arch,strategy", [("relu", "none"), ("topk", "none"), ("gated", "none"),
                                           ("relu", "ghost_scaled"), ("topk", "auxk"),
                                           ("relu", "resample")])
def test_ffi_step_gradients_and_adam_moments_equal_dense(arch, strategy):
    dense_cfg = cfg(arch, dead_strategy=strategy)
    assert_step_matches_dense(dense_cfg, dense_cfg.replace(step="ffi"))


@pytest.mark.parametrize("options", [{"pre_encoder_bias": False},
                                     {"l1_weighted_by_decoder_norm": True},
                                     {"decoder_norm": "free", "l1_weighted_by_decoder_norm": True}])
def test_fused_ffi_step_equals_dense_under_recipe_options(options):
    dense_cfg = cfg("relu", **options)
    assert common.fused_core(dense_cfg.replace(step="ffi"))
    assert_step_matches_dense(dense_cfg, dense_cfg.replace(step="ffi"))


# --------------------------------------------------------------------------- the fused core
def _reference_core(x, W_enc, c, W_dec, w, k):
    z = x @ W_enc + c
    f = jax.nn.relu(z)
    if k:
        f = jnp.where(z >= jax.lax.top_k(z, k)[0][..., -1:], f, 0.0)
    return f, f @ W_dec, jnp.sum(f * w, -1), jnp.sum(f > 0, 0).astype(jnp.float32)


def _core_inputs(seed=0, B=64, d=24, M=200):
    rng = np.random.default_rng(seed)
    J = lambda a: jnp.asarray(a, jnp.float32)  # noqa: E731
    return (J(rng.standard_normal((B, d))), J(rng.standard_normal((d, M)) * 0.3),
            J(rng.standard_normal(M) - 2.0), J(rng.standard_normal((M, d))),
            J(rng.random(M) + 0.5)), J(rng.standard_normal((B, d)))


def _core_loss(core, target):
    """Uses every output with a gradient, f itself included (so the kernels' df input is
    exercised, not only the symbolic-zero path the training step takes)."""
    def loss(x, W_enc, c, W_dec, w, k):
        f, x_hat, sparsity, _ = core(x, W_enc, c, W_dec, w, k)
        return (jnp.sum((target - x_hat) ** 2) + 0.1 * jnp.sum(sparsity)
                + 0.01 * jnp.sum(f ** 2))
    return loss


@pytest.mark.parametrize("k", [0, 10])
def test_fused_core_equals_its_definition_forward_and_gradients(k):
    args, target = _core_inputs()
    want, got = _reference_core(*args, k), sparse_ffi.sae_core(*args, k)
    for name, a, b in zip(("f", "x_hat", "sparsity", "fire count"), got, want):
        close(a, b, name)
    assert 0 < float(jnp.mean(want[0] > 0)) < 0.2  # a sparse regime, not all or nothing
    argnums = (0, 1, 2, 3, 4)
    g_want = jax.grad(_core_loss(_reference_core, target), argnums)(*args, k)
    g_got = jax.jit(jax.grad(_core_loss(sparse_ffi.sae_core, target), argnums),
                    static_argnums=5)(*args, k)
    for name, a, b in zip(("x", "W_enc", "c", "W_dec", "w"), g_got, g_want):
        close(a, b, f"grad {name}")


@pytest.mark.parametrize("k", [32, 200])
def test_fused_top_k_selects_exactly_where_the_kernel_samples_its_threshold(k):
    """At 1024 latents the fused forward picks the k-th value from a strided sample; with
    one-hot inputs the pre-activations are W_enc's rows + c, so the codes must be the top-k of
    those, on rows the sample reads well and rows it misses."""
    rng = np.random.default_rng(4)
    d, M = 64, 1024
    W_enc = rng.standard_normal((d, M)).astype(np.float32)
    W_enc[:8, 0::8] += 10.0  # rows whose largest entries are exactly the sampled ones
    W_enc[8:16, 3::8] += 10.0  # rows whose largest entries are all off the sample
    c = rng.standard_normal(M).astype(np.float32)
    W_dec = rng.standard_normal((M, d)).astype(np.float32)
    f, *_ = sparse_ffi.sae_core(jnp.eye(d, dtype=jnp.float32), jnp.asarray(W_enc),
                                jnp.asarray(c), jnp.asarray(W_dec), jnp.zeros(M, jnp.float32), k)
    z = W_enc + c
    kth = -np.sort(-z, axis=1)[:, k - 1:k]
    want = np.where((z >= kth) & (z > 0), z, 0.0)
    # the chosen latents compared as booleans; the values with a tolerance (XLA's product and
    # the kernel's addition need not round exactly as numpy does on every CPU)
    np.testing.assert_array_equal(np.asarray(f) != 0, want != 0)
    np.testing.assert_allclose(np.asarray(f), want, rtol=1e-6, atol=1e-6)


@pytest.mark.parametrize("batched,k", [("W_enc", 0), ("c", 0), ("x", 0), ("W_enc", 10)])
def test_fused_core_under_vmap_per_member_and_shared_operands(batched, k):
    (x, W_enc, c, W_dec, w), target = _core_inputs(1)
    stack = {"W_enc": jnp.stack([W_enc * (1 + 0.1 * i) for i in range(3)]),
             "c": jnp.stack([c + 0.2 * i for i in range(3)]),
             "x": jnp.stack([x * (1 + 0.1 * i) for i in range(3)])}[batched]

    def grads(core):
        def one(v):
            a = {"W_enc": (x, v, c, W_dec, w), "c": (x, W_enc, v, W_dec, w),
                 "x": (v, W_enc, c, W_dec, w)}[batched]
            return jax.grad(_core_loss(core, target), (1, 2, 3))(*a, k)
        return jax.jit(jax.vmap(one))(stack)

    for name, a, b in zip(("W_enc", "c", "W_dec"), grads(sparse_ffi.sae_core),
                          grads(_reference_core)):
        close(a, b, f"vmapped grad {name}")


def test_the_training_step_uses_the_fused_core_and_drops_the_unused_input_gradient():
    for arch, strategy, fused in [("relu", "none", True), ("relu", "resample", True),
                                  ("topk", "none", True), ("relu", "ghost", False),
                                  ("topk", "auxk", False), ("gated", "none", False)]:
        assert common.fused_core(cfg(arch, dead_strategy=strategy, step="ffi")) == fused
    assert not common.fused_core(cfg("relu", step="dense"))
    c = cfg("relu", step="ffi")
    state, x = start_state(c)
    h = training.config_hyper(c)
    hlo = jax.jit(lambda s: training.train_step(c, s, x, h)).lower(state).compile().as_text()
    assert hlo.count("sae_core_fwd") == 1 and hlo.count("sae_core_bwd") == 1
    assert "sae_core_dx" not in hlo  # the data's gradient is never needed: XLA removed it


@pytest.mark.parametrize("arch", ["relu", "topk"])
def test_200_ffi_steps_track_the_dense_loss_curve(arch):
    dense_hist, ffi_hist = loss_curves(cfg(arch), step="ffi")
    assert len(dense_hist["loss"]) == 10
    np.testing.assert_allclose(ffi_hist["loss"], dense_hist["loss"], rtol=1e-3)
    assert 0 < dense_hist["l0"][-1] < 0.2 * D_SAE


def test_vmapped_ffi_sweep_equals_the_dense_sweep():
    sweep = {"l1_coeff": [0.01, 0.05, 0.2]}
    dense_cfg = cfg(steps=30)
    dense_state, dense_hist = sae.train_sweep(dense_cfg, data(), sweep, progress=False,
                                              log_every=10)
    ffi_state, ffi_hist = sae.train_sweep(dense_cfg.replace(step="ffi"), data(), sweep,
                                          progress=False, log_every=10)
    np.testing.assert_allclose(ffi_hist["loss"], dense_hist["loss"], rtol=1e-4)
    for name in dense_state.params:
        # 30 Adam steps amplify rounding (threaded sums in another order) in entries whose
        # gradient is near 0 up to about one lr-sized step: atol 1e-3 x max|value|
        want = np.asarray(dense_state.params[name])
        np.testing.assert_allclose(ffi_state.params[name], want, rtol=1e-3,
                                   atol=1e-3 * float(np.max(np.abs(want))), err_msg=name)
    assert np.asarray(ffi_state.params["W_dec"]).shape == (3, D_SAE, D_IN)


def test_a_missing_compiler_is_named(monkeypatch):
    monkeypatch.setattr(sparse_ffi.shutil, "which", lambda name: None)
    with pytest.raises(sparse_ffi.KernelBuildError, match="g\\+\\+"):
        sparse_ffi._compiler()


# --------------------------------------------------------------------------- step="auto"
def test_auto_picks_the_step_by_measured_density(monkeypatch):
    c = cfg("relu", step="auto")
    assert training.step_kind(c, None) == "dense"  # nothing measured: a fresh SAE is dense
    low, high = (training.AUTO_DENSITY * D_SAE * f for f in (0.5, 1.5))
    assert training.step_kind(c, np.float32(low)) == "ffi"
    assert training.step_kind(c, np.float32(high)) == "dense"
    assert training.step_kind(c, np.array([low, high])) == "dense"  # a sweep: the densest
    assert training.step_kind(cfg("topk", k=16, step="auto"), None) == "ffi"
    assert training.step_kind(cfg("topk", k=D_SAE // 2, step="auto"), None) == "dense"
    assert training.auto_uses_ffi(c) and not training.auto_uses_ffi(c, mesh=object())
    assert not training.auto_uses_ffi(cfg("relu", step="dense"))
    monkeypatch.setattr(training.jax, "default_backend", lambda: "gpu")
    assert not training.auto_uses_ffi(c)


def test_an_auto_run_moves_to_the_ffi_step_once_sparse_and_tracks_dense():
    dense_cfg = cfg("relu", l1_coeff=0.1, lr=3e-3)
    auto_cfg = dense_cfg.replace(step="auto")
    _, dense_hist = sae.train(dense_cfg, data(), progress=False, log_every=20)
    _, auto_hist = sae.train(auto_cfg, data(), progress=False, log_every=20)
    runner = training.runner_for(auto_cfg, False)
    # a fresh SAE fires on about half its latents (dense step), a trained one on few (ffi)
    assert dense_hist["l0"][0] > training.AUTO_DENSITY * D_SAE > dense_hist["l0"][-1]
    assert runner.steps["dense"]._cache_size() == 1 and runner.steps["ffi"]._cache_size() == 1
    np.testing.assert_allclose(auto_hist["loss"], dense_hist["loss"], rtol=1e-3)


def test_an_auto_run_resumed_or_continued_equals_the_uninterrupted_run(tmp_path):
    """The kind travels in the history: a resume (checkpoint at step 110, not a check step,
    after the switch) and a continuation of a finished shorter run take the same steps."""
    c = cfg("relu", l1_coeff=0.1, lr=3e-3, step="auto")
    full, full_hist = sae.train(c, data(), progress=False, log_every=20)
    assert full_hist[training.AUTO_HISTORY_KEY] == ["ffi"]
    sae.train(c, data(), progress=False, log_every=20, checkpoint_dir=tmp_path / "a",
              stop_after=110)
    resumed, _ = sae.resume(tmp_path / "a", data(), progress=False, log_every=20)
    short, short_hist = sae.train(c.replace(steps=110), data(), progress=False, log_every=20)
    sae.save_checkpoint(tmp_path / "b", short, c, short_hist)
    continued, _ = sae.resume(tmp_path / "b", data(), progress=False, log_every=20)
    # exact on purpose: all three runs execute the same compiled steps on the same batches in
    # this process, and the kernels are deterministic (each output has one owner, fixed order),
    # so equality is guaranteed bit for bit; any difference means a different step was taken
    for name in full.params:
        np.testing.assert_array_equal(resumed.params[name], full.params[name])
        np.testing.assert_array_equal(continued.params[name], full.params[name])
