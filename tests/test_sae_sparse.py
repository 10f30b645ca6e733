"""SAEConfig.step="sparse" (issue #16): the numba sparse-aware step computes the same
gradients, Adam moments and loss curves as the dense (XLA) reference step. (The "ffi" step and
step="auto" are tested in test_sae_sparse_ffi.py.)"""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from interp import sae
from interp.sae import sparse, training

pytest.importorskip("numba")

D_IN, D_SAE, BATCH = 64, 512, 256

two_cores = pytest.mark.skipif(sparse.single_core(), reason=(
    "the sparse step refuses to run on one core (its callbacks can deadlock there)"))



def close(actual, expected, name):
    """rtol 1e-5 plus atol 1e-6 x max|expected| (the issue's tolerance)."""
    expected = np.asarray(expected)
    atol = 1e-6 * float(np.max(np.abs(expected)))
    np.testing.assert_allclose(np.asarray(actual), expected, rtol=1e-5, atol=atol, err_msg=name)


def cfg(arch="relu", **kw):
    base = {"d_in": D_IN, "d_sae": D_SAE, "batch_size": BATCH, "architecture": arch, "k": 16,
            "l1_coeff": 0.05, "lr": 1e-3, "lr_warmup_steps": 10, "adam_beta1": 0.9,
            "steps": 200, "dead_window_steps": 50}
    base.update(kw)
    return sae.SAEConfig(**base)


def data():
    return sae.SparseDictionaryData(d_in=D_IN, n_features=D_SAE, batch_size=BATCH,
                                    mean_active=8)


def start_state(c):
    x = data().batch(0)
    return training.init_state(c, training.input_statistics([x], c), 0), jnp.asarray(x)


def loss_curves(reference, **change):
    """The histories of `reference` and of `reference` with `change`, trained on the same data
    for its 200 steps, logged every 20."""
    _, ref_hist = sae.train(reference, data(), progress=False, log_every=20)
    _, other_hist = sae.train(reference.replace(**change), data(), progress=False, log_every=20)
    return ref_hist, other_hist


def grads(c, state, x):
    dead = jnp.zeros(c.d_sae, bool).at[::7].set(True)  # some dead latents for ghost grads
    def loss(p):
        return training.loss_fn(p, x, dead, state.step, state.input_sq_norm,
                                training.config_hyper(c), c)[0]

    return jax.jit(jax.grad(loss))(state.params)


# --------------------------------------------------------------------------- kernels
@two_cores
@pytest.mark.parametrize("mode", sparse.MODES)
def test_kernels_equal_dense_products_with_sweep_axis(mode, monkeypatch):
    """Each host product, for a stacked sweep (S=3) with one argument shared (leading 1),
    equals the dense numpy product on every member, in both modes ("auto" forced dense)."""
    if mode == "auto":
        monkeypatch.setattr(sparse, "AUTO_DENSITY", 0.0)
    rng = np.random.default_rng(0)
    f = rng.standard_normal((3, 40, 30)).astype(np.float32)
    f[rng.random(f.shape) < 0.9] = 0
    W = rng.standard_normal((1, 30, 8)).astype(np.float32)
    g = rng.standard_normal((3, 40, 8)).astype(np.float32)
    dec = sparse._host_decode(f, W, mode)
    md = sparse._host_masked_dot(f, g, W, mode)
    out = sparse._host_outer(f, g, False, mode)
    out_t = sparse._host_outer(f, g, True, mode)
    for s in range(3):
        close(dec[s], f[s] @ W[0], "decode")
        close(md[s], np.where(f[s] != 0, g[s] @ W[0].T, 0), "masked dot")
        close(out[s], f[s].T @ g[s], "outer")
        close(out_t[s], (f[s].T @ g[s]).T, "outer transposed")
    assert np.all(md[f == 0] == 0)


# --------------------------------------------------------------------------- one step
@two_cores
@pytest.mark.parametrize("arch,strategy,step", [
    ("relu", "none", "sparse"), ("topk", "none", "sparse"), ("gated", "none", "sparse"),
    ("relu", "ghost_scaled", "sparse"), ("topk", "auxk", "sparse")])
def test_sparse_step_gradients_and_adam_moments_equal_dense(arch, strategy, step):
    dense_cfg = cfg(arch, dead_strategy=strategy)
    assert_step_matches_dense(dense_cfg, dense_cfg.replace(step=step))


def assert_step_matches_dense(dense_cfg, other_cfg, check_metrics=True):
    """Gradients, then Adam moments and metric sums after one step, of `other_cfg` (a non-dense
    `step`) equal the dense step's on the same state and batch."""
    state, x = start_state(dense_cfg)
    g_dense, g_other = grads(dense_cfg, state, x), grads(other_cfg, state, x)
    for name in g_dense:
        assert float(np.max(np.abs(g_dense[name]))) > 0, name
        close(g_other[name], g_dense[name], f"grad {name}")
    h = training.config_hyper(dense_cfg)
    def copy(s):  # fresh buffers for each step
        return jax.tree_util.tree_map(jnp.array, s)

    after_dense = jax.jit(lambda s: training.train_step(dense_cfg, s, x, h))(copy(state))
    after_other = jax.jit(lambda s: training.train_step(other_cfg, s, x, h))(copy(state))
    for name in g_dense:
        close(after_other.adam_m[name], after_dense.adam_m[name], f"adam_m {name}")
        close(after_other.adam_v[name], after_dense.adam_v[name], f"adam_v {name}")
    if check_metrics:
        for name in training.METRIC_NAMES:
            np.testing.assert_allclose(after_other.metric_sums[name],
                                       after_dense.metric_sums[name], rtol=1e-5, err_msg=name)


# --------------------------------------------------------------------------- training runs
@two_cores
@pytest.mark.parametrize("arch", ["relu", "topk"])
def test_200_sparse_steps_track_the_dense_loss_curve(arch):
    dense_hist, sparse_hist = loss_curves(cfg(arch), step="sparse")
    assert len(dense_hist["loss"]) == 10
    np.testing.assert_allclose(sparse_hist["loss"], dense_hist["loss"], rtol=1e-3)
    assert dense_hist["loss"][-1] < 0.5 * dense_hist["loss"][0]  # it did train
    assert 0 < dense_hist["l0"][-1] < 0.2 * D_SAE                # at a sparse L0


@two_cores
def test_vmapped_sweep_is_one_kernel_call_per_product(monkeypatch):
    """Under vmap each product is one host call that receives the whole sweep axis, and the
    sweep equals the dense sweep."""
    calls = []
    host = sparse._host_decode

    def spy(f, W, mode):
        calls.append(f.shape)
        return host(f, W, mode)

    monkeypatch.setattr(sparse, "_host_decode", spy)
    sweep = {"l1_coeff": [0.01, 0.05, 0.2]}
    dense_cfg = cfg(steps=30)
    dense_state, dense_hist = sae.train_sweep(dense_cfg, data(), sweep, progress=False,
                                              log_every=10)
    sparse_state, sparse_hist = sae.train_sweep(dense_cfg.replace(step="sparse"), data(),
                                                sweep, progress=False, log_every=10)
    assert calls and all(shape == (3, BATCH, D_SAE) for shape in calls), set(calls)
    np.testing.assert_allclose(sparse_hist["loss"], dense_hist["loss"], rtol=1e-4)
    for name in dense_state.params:
        np.testing.assert_allclose(sparse_state.params[name], dense_state.params[name],
                                   rtol=1e-3, atol=1e-4, err_msg=name)


def test_default_step_is_dense_and_unknown_step_is_rejected():
    assert sae.SAEConfig(d_in=4, d_sae=8).step == "dense"
    assert sparse.use_sparse("dense") is None
    with pytest.raises(ValueError, match=r"SAEConfig.step='fast'.*dense, sparse, auto"):
        sae.SAEConfig(d_in=4, d_sae=8, step="fast")


@two_cores
def test_kth_largest_kernel_equals_top_k_under_vmap():
    z = jnp.asarray(np.random.default_rng(3).standard_normal((2, 5, 40)), jnp.float32)
    kth = jax.jit(jax.vmap(lambda a: sparse.kth_largest(a, 7)))(z)
    close(kth, jax.lax.top_k(z, 7)[0][..., -1:], "k-th largest")


def test_one_core_refuses_sparse_and_auto_products_are_dense(monkeypatch):
    monkeypatch.setattr(sparse, "single_core", lambda: True)
    with pytest.raises(ValueError, match="at least 2 CPU cores"):
        sparse.use_sparse("sparse")
    monkeypatch.setattr(sparse, "single_core", lambda: False)
    assert sparse.use_sparse("sparse") == "sparse"
    assert sparse.use_sparse("auto") is None  # the driver chooses between whole steps
