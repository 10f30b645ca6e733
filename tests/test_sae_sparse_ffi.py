"""SAEConfig.step="ffi" (issue #16): the C++ kernels called by XLA compute the same products,
gradients, Adam moments and loss curves as the dense (XLA) step, under jit and vmap, on one
core too (no host callback that could deadlock)."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from interp import sae
from interp.sae import sparse_ffi
from test_sae_sparse import D_IN, D_SAE, assert_step_matches_dense, cfg, close, data

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


@pytest.mark.parametrize("arch,strategy", [("relu", "none"), ("topk", "none"), ("gated", "none"),
                                           ("relu", "ghost_scaled"), ("topk", "auxk")])
def test_ffi_step_gradients_and_adam_moments_equal_dense(arch, strategy):
    dense_cfg = cfg(arch, dead_strategy=strategy)
    assert_step_matches_dense(dense_cfg, dense_cfg.replace(step="ffi"))


@pytest.mark.parametrize("arch", ["relu", "topk"])
def test_200_ffi_steps_track_the_dense_loss_curve(arch):
    dense_cfg = cfg(arch)
    _, dense_hist = sae.train(dense_cfg, data(), progress=False, log_every=20)
    _, ffi_hist = sae.train(dense_cfg.replace(step="ffi"), data(), progress=False, log_every=20)
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
