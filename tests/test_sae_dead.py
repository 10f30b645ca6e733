"""Dead-latent strategies: each revives latents that `none` leaves dead; ghost gradients reach
only dead latents; resampling resets exactly the dead rows and their Adam moments."""

import functools

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from interp import sae
from interp.sae import dead as dead_lib
from interp.sae import training

D_IN, D_SAE, BATCH = 16, 64, 256


def data():
    return sae.SparseDictionaryData(d_in=D_IN, n_features=32, batch_size=BATCH, mean_active=3)


def killed_state(cfg):
    """A fresh state with the first half of the latents dead by construction: their encoder
    columns shrunk so they can never win (top-k: scale 0.01) or never be positive (ReLU/gated:
    scale 0.1 and bias -1, while ||x|| < 5 here), and marked as not having fired for a window.
    With no dead-latent strategy nothing ever sends them a gradient again."""
    stats = training.input_statistics([data().batch(i) for i in range(4)], cfg)
    st = training.init_state(cfg, stats, cfg.seed)
    kill = jnp.arange(cfg.d_sae) < cfg.d_sae // 2
    p = dict(st.params)
    if cfg.architecture == "topk":
        p["W_enc"] = jnp.where(kill, 0.01, 1.0) * p["W_enc"]
    else:
        p["W_enc"] = jnp.where(kill, 0.1, 1.0) * p["W_enc"]
        bias = "b_gate" if cfg.architecture == "gated" else "b_enc"
        p[bias] = jnp.where(kill, -1.0, p[bias])
    return st._replace(params=p,
                       steps_since_fired=jnp.where(kill, cfg.dead_window_steps, 0))


@functools.lru_cache(maxsize=None)
def final_dead_fraction(cfg):
    _, hist = sae.train(cfg, data(), progress=False, log_every=cfg.steps,
                        state=killed_state(cfg))
    return hist["dead_fraction"][-1]


BASE = dict(d_in=D_IN, d_sae=D_SAE, batch_size=BATCH, steps=150, lr=1e-2, lr_warmup_steps=10,
            l1_coeff=0.01, dead_window_steps=25)


@pytest.mark.parametrize("strategy,extra", [
    ("resample", {"resample_at": (0.5,)}),
    ("ghost", {}),
    ("ghost_scaled", {}),
    ("ghost_all", {"ghost_all_steps": 50}),
    ("auxk", {"architecture": "topk", "k": 4, "aux_k": 16}),
])
def test_strategy_revives_latents_that_none_leaves_dead(strategy, extra):
    cfg = sae.SAEConfig(**BASE, **extra, dead_strategy=strategy)
    # the `none` baseline differs only in the strategy (and is shared across ReLU strategies)
    dead_none = final_dead_fraction(sae.SAEConfig(**BASE, dead_strategy="none",
                                                  **{k: v for k, v in extra.items()
                                                     if k in ("architecture", "k")}))
    dead = final_dead_fraction(cfg)
    assert dead_none >= 0.5  # the killed half stays dead without a strategy
    assert dead < dead_none - 0.25, (strategy, dead, dead_none)


@pytest.mark.parametrize("strategy", ["ghost", "ghost_scaled", "ghost_all"])
def test_ghost_gradient_reaches_only_dead_latents(strategy):
    cfg = sae.SAEConfig(d_in=D_IN, d_sae=D_SAE, dead_strategy=strategy, ghost_all_steps=None)
    params = sae.init_sae(jax.random.PRNGKey(0), cfg).params
    params = dict(params, b_dec=jnp.full(D_IN, 0.2), b_enc=jnp.full(D_SAE, -0.3))
    x = jnp.asarray(data().batch(0))
    dead = jnp.arange(D_SAE) % 3 == 0
    if strategy == "ghost_all":
        dead = dead_lib.dead_mask(jnp.zeros(D_SAE, jnp.int32), jnp.int32(0), cfg)
        assert bool(jnp.all(dead))
    arch_out = lambda p: sae.relu.forward(p, x, cfg)  # noqa: E731

    def ghost_only(p):
        out = arch_out(p)
        recon = jnp.sum((x - out["x_hat"]) ** 2, -1)
        return dead_lib.ghost_loss(p, x, out["z"], out["x_hat"], recon, dead, cfg)

    loss, g = jax.jit(jax.value_and_grad(ghost_only))(params)
    assert float(loss) > 0
    alive = ~dead
    # b_dec is stopped, as specified (the cancellation is exact up to float32 rounding)
    assert float(jnp.max(jnp.abs(g["b_dec"]))) < 1e-5 * float(jnp.max(jnp.abs(g["W_enc"])))
    # exact zeros: the ghost loss reaches latents only through a 0/1 dead mask
    np.testing.assert_array_equal(g["W_enc"][:, alive], 0.0)
    np.testing.assert_array_equal(g["b_enc"][alive], 0.0)
    np.testing.assert_array_equal(g["W_dec"][alive], 0.0)
    assert float(jnp.min(jnp.abs(g["b_enc"][dead]))) > 0      # every dead latent is reached
    assert float(jnp.min(jnp.linalg.norm(g["W_dec"][dead], axis=-1))) > 0
    # the loss value equals the MSE's magnitude (times the dead fraction when scaled)
    mse = float(jnp.mean(jnp.sum((x - arch_out(params)["x_hat"]) ** 2, -1)))
    expect = mse * (float(jnp.mean(dead)) if strategy == "ghost_scaled" else 1.0)
    assert float(loss) == pytest.approx(expect, rel=1e-3)


def test_ghost_loss_is_zero_without_dead_latents():
    cfg = sae.SAEConfig(d_in=D_IN, d_sae=D_SAE, dead_strategy="ghost")
    params = sae.init_sae(jax.random.PRNGKey(0), cfg).params
    x = jnp.asarray(data().batch(0))
    out = sae.relu.forward(params, x, cfg)
    recon = jnp.sum((x - out["x_hat"]) ** 2, -1)
    none = jnp.zeros(D_SAE, bool)
    # exact: nothing is dead, so the loss is masked away
    assert float(dead_lib.ghost_loss(params, x, out["z"], out["x_hat"], recon, none, cfg)) == 0


@pytest.mark.parametrize("arch", ["relu", "gated"])
def test_resampling_resets_exactly_the_dead_rows_and_their_adam_moments(arch):
    cfg = sae.SAEConfig(d_in=D_IN, d_sae=D_SAE, architecture=arch, dead_strategy="resample",
                        batch_size=BATCH, dead_window_steps=10)
    stats = training.input_statistics([data().batch(0)], cfg)
    st = training.init_state(cfg, stats, 0)
    key = jax.random.PRNGKey(3)
    noisy = lambda t: jax.tree_util.tree_map(  # noqa: E731
        lambda a: a + 0.5 + jax.random.uniform(key, a.shape), t)
    st = st._replace(params=noisy(st.params), adam_m=noisy(st.adam_m), adam_v=noisy(st.adam_v),
                     steps_since_fired=jnp.where(jnp.arange(D_SAE) % 4 == 1, 10, 3),
                     step=jnp.int32(77))
    dead = np.arange(D_SAE) % 4 == 1
    x = jnp.asarray(data().batch(1))
    new = jax.jit(lambda s, b: training.resample_step(cfg, s, b))(st, x)
    axes = sae.registry.get(arch).FEATURE_AXES
    for name in st.params:
        old_p, new_p = np.asarray(st.params[name]), np.asarray(new.params[name])
        # exact below: untouched rows are copied, reset moments written as zeros
        if name not in axes:  # b_dec: not a per-latent parameter
            np.testing.assert_array_equal(new_p, old_p)
            np.testing.assert_array_equal(new.adam_m[name], st.adam_m[name])
            continue
        sel = lambda a, m: np.take(a, np.nonzero(m)[0], axis=axes[name])  # noqa: E731
        np.testing.assert_array_equal(sel(new_p, ~dead), sel(old_p, ~dead))
        assert np.all(sel(new_p, dead) != sel(old_p, dead))
        for moments in ("adam_m", "adam_v"):
            new_mom = np.asarray(getattr(new, moments)[name])
            old_mom = np.asarray(getattr(st, moments)[name])
            np.testing.assert_array_equal(sel(new_mom, dead), 0.0)
            np.testing.assert_array_equal(sel(new_mom, ~dead), sel(old_mom, ~dead))
    # new dictionary rows are unit-norm inputs; encoder rows at 0.2 x mean alive encoder norm
    W_dec = np.asarray(new.params["W_dec"])[dead]
    np.testing.assert_allclose(np.linalg.norm(W_dec, axis=-1), 1.0, rtol=1e-5)
    enc_norms = np.linalg.norm(np.asarray(st.params["W_enc"]), axis=0)
    np.testing.assert_allclose(np.linalg.norm(np.asarray(new.params["W_enc"])[:, dead], axis=0),
                               0.2 * enc_norms[~dead].mean(), rtol=1e-5)
    assert int(new.last_resample_step) == 77
    np.testing.assert_array_equal(new.steps_since_fired[dead], 0)


def test_reconstruction_errors_in_chunks_equal_one_pass():
    cfg = sae.SAEConfig(d_in=D_IN, d_sae=D_SAE)
    params = sae.init_sae(jax.random.PRNGKey(1), cfg).params
    n = 2 * training.RESAMPLE_CHUNK + 37  # three chunks, the last one padded
    x = jax.random.normal(jax.random.PRNGKey(2), (n, D_IN))
    direct = jnp.sum((x - sae.relu.forward(params, x, cfg)["x_hat"]) ** 2, -1)
    np.testing.assert_allclose(training.reconstruction_errors(params, x, cfg), direct,
                               rtol=1e-5, atol=1e-6)


def test_resampling_from_a_pool_picks_the_inputs_the_sae_reconstructs_worst():
    """A pool where one input carries all the reconstruction loss: every dead latent gets that
    input's direction (p proportional to loss^2), however large the pool (it spans chunks)."""
    cfg = sae.SAEConfig(d_in=D_IN, d_sae=D_SAE, dead_strategy="resample", batch_size=BATCH,
                        dead_window_steps=10, resample_pool_rows=9000, b_dec_init="zeros")
    st = training.init_state(cfg, training.input_statistics([data().batch(0)], cfg), 0)
    p = dict(st.params, b_enc=jnp.zeros(D_SAE), b_dec=jnp.zeros(D_IN))
    dead = np.arange(D_SAE) % 3 == 0
    st = st._replace(params=p, steps_since_fired=jnp.where(jnp.asarray(dead), 10, 0))
    pool = np.zeros((9000, D_IN), np.float32)  # a zero input is reconstructed exactly (0)
    pool[7777] = np.linspace(1.0, 2.0, D_IN)
    new = training.resample_step(cfg, st, jnp.asarray(pool))
    want = pool[7777] / np.linalg.norm(pool[7777])
    np.testing.assert_allclose(np.asarray(new.params["W_dec"])[dead],
                               np.broadcast_to(want, (dead.sum(), D_IN)), rtol=1e-5, atol=1e-6)
    np.testing.assert_array_equal(np.asarray(new.params["W_dec"])[~dead],  # exact: copied rows
                                  np.asarray(st.params["W_dec"])[~dead])


def test_pool_resampling_calls_the_pool_once_per_event_and_checks_it():
    cfg = sae.SAEConfig(**{**BASE, "steps": 40}, dead_strategy="resample",
                        resample_at=(0.25, 0.5, 0.75), resample_pool_rows=512)
    with pytest.raises(ValueError, match="resample_pool_rows=512 needs a resample_pool"):
        sae.train(cfg, data(), progress=False)
    asked = []

    def pool(event):
        asked.append(event)
        return np.concatenate([data().batch(1000 + event), data().batch(2000 + event)])

    sae.train(cfg, data(), progress=False, log_every=40, resample_pool=pool)
    assert asked == [0, 1, 2]
    with pytest.raises(ValueError, match=r"resample_pool\(0\) returned shape \(256, 16\), "
                                         r"expected \(512, 16\)"):
        sae.train(cfg, data(), progress=False, resample_pool=lambda e: data().batch(e))
