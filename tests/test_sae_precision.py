"""SAEConfig.compute_dtype="bfloat16" (issue #16): the dense products of the step take
bfloat16-rounded inputs and accumulate in float32, forward and backward; the step stays within
bfloat16's rounding of the float32 step and trains to the same loss."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from interp import sae
from interp.sae import common, precision, registry, sparse_ffi
from test_sae_sparse import cfg, grads, loss_curves, start_state


def rounded64(a):
    """The bfloat16 value of each entry, as float64 (exact)."""
    return np.asarray(jnp.asarray(a).astype(jnp.bfloat16).astype(jnp.float32), np.float64)


def assert_close(actual, expected, rel, name):
    expected = np.asarray(expected, np.float64)
    err = np.max(np.abs(np.asarray(actual, np.float64) - expected))
    assert err <= rel * np.max(np.abs(expected)), f"{name}: max error {err:.3g}"


def test_bf16_matmul_and_its_gradients_are_float32_sums_of_rounded_inputs():
    rng = np.random.default_rng(0)
    a = rng.standard_normal((48, 40)).astype(np.float32)
    b = rng.standard_normal((40, 24)).astype(np.float32)
    g = rng.standard_normal((48, 24)).astype(np.float32)
    out, vjp = jax.vjp(jax.jit(precision.bf16_matmul), jnp.asarray(a), jnp.asarray(b))
    da, db = vjp(jnp.asarray(g))
    ra, rb, rg = rounded64(a), rounded64(b), rounded64(g)
    # float32 accumulation of 40 exact products: ~1e-6 relative, far below bf16's 4e-3
    assert_close(out, ra @ rb, 1e-5, "forward")
    assert_close(da, rg @ rb.T, 1e-5, "da")
    assert_close(db, ra.T @ rg, 1e-5, "db")
    # and it is not the float32 product: the inputs were rounded
    assert np.max(np.abs(np.asarray(out) - a.astype(np.float64) @ b)) > 1e-4
    assert_close(out, a.astype(np.float64) @ b, 2e-2, "forward vs float32")


@pytest.mark.parametrize("a_axis", [0, None])
def test_bf16_matmul_under_vmap(a_axis):
    """A sweep's layout: per-member weights b, and the data a shared (None) or per member, with
    extra leading axes on a."""
    rng = np.random.default_rng(1)
    a = rng.standard_normal((3, 5, 16, 40)).astype(np.float32)
    b = rng.standard_normal((3, 40, 8)).astype(np.float32)
    g = rng.standard_normal((3, 5, 16, 8)).astype(np.float32)
    a_in = a if a_axis == 0 else a[0]

    def vjp(a, b, g):
        out, pull = jax.vjp(precision.bf16_matmul, a, b)
        return (out, *pull(g))

    out, da, db = jax.jit(jax.vmap(vjp, (a_axis, 0, 0)))(a_in, b, g)
    for s in range(3):
        ra, rb, rg = rounded64(a_in if a_axis is None else a[s]), rounded64(b[s]), rounded64(g[s])
        assert_close(out[s], ra @ rb, 1e-5, "forward")
        assert_close(da[s], rg @ rb.T, 1e-5, "da")
        assert_close(db[s], np.einsum("xbn,xbm->nm", ra, rg), 1e-5, "db")


def test_bf16_matmul_returns_cotangents_in_its_inputs_dtypes():
    a, b = jnp.ones((4, 3), jnp.bfloat16), jnp.ones((3, 2), jnp.float32)
    _, pull = jax.vjp(precision.bf16_matmul, a, b)
    da, db = pull(jnp.ones((4, 2), jnp.float32))
    assert (da.dtype, db.dtype) == (jnp.bfloat16, jnp.float32)


@pytest.mark.parametrize("step", ["dense", "ffi"])
@pytest.mark.parametrize("arch,strategy", [("relu", "none"), ("topk", "none"), ("gated", "none"),
                                           ("relu", "ghost_scaled"), ("topk", "auxk")])
def test_bf16_step_stays_within_rounding_of_the_float32_step(arch, strategy, step):
    if step == "ffi" and not sparse_ffi.available():  # pragma: no cover
        pytest.skip("no C++ compiler")
    c32 = cfg(arch, dead_strategy=strategy, step=step)
    c16 = c32.replace(compute_dtype="bfloat16")
    state, x = start_state(c32)
    g32, g16 = grads(c32, state, x), grads(c16, state, x)
    # relative error in norm: bf16 rounding (4e-3 per input, 2e-3 on the pre-activations
    # here) also flips latents that sit at the threshold, a discrete change of their rows: at
    # the top-k boundary (the k-th and (k+1)-th values are close) about 1 token in 10 swaps one
    # latent in this test, which moves the weight gradients by ~6%
    tolerance = 0.1 if arch == "topk" else 3e-2
    for name in g32:
        diff = np.linalg.norm(np.asarray(g16[name]) - np.asarray(g32[name]))
        assert diff <= tolerance * np.linalg.norm(np.asarray(g32[name])), f"grad {name}"
        if name in ("W_enc", "W_dec"):  # bf16 moves them by ~1e-3 here; float32 noise ~1e-7
            assert diff > 1e-4 * np.linalg.norm(np.asarray(g32[name])), \
                f"grad {name}: bfloat16 changed nothing"


def test_fused_ffi_core_takes_the_encoder_product_in_bf16():
    c = cfg("relu", compute_dtype="bfloat16", step="ffi")
    if not common.fused_core(c):  # pragma: no cover
        pytest.skip("no fused core here")
    state, x = start_state(c)
    fused = common.fused_forward(state.params, x, c)
    dense = registry.get("relu").forward(state.params, x, c.replace(step="dense"))
    np.testing.assert_allclose(fused["f"], dense["f"], rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("arch", ["relu", "topk"])
def test_bf16_training_follows_the_float32_loss_curve(arch):
    h32, h16 = loss_curves(cfg(arch), compute_dtype="bfloat16")
    l32, l16 = np.asarray(h32["loss"]), np.asarray(h16["loss"])
    assert l32[-1] < 0.5 * l32[0]  # it trained
    np.testing.assert_allclose(l16, l32, rtol=2e-2)


def test_compute_dtype_is_validated_and_round_trips():
    with pytest.raises(ValueError, match="compute_dtype.*allowed: float32, bfloat16"):
        cfg(compute_dtype="float16")
    with pytest.raises(ValueError, match="compute_dtype.*step='sparse'"):
        cfg(compute_dtype="bfloat16", step="sparse")
    c = cfg(compute_dtype="bfloat16", step="auto")
    assert sae.SAEConfig.from_dict(c.to_dict()) == c
    with pytest.raises(ValueError, match="compute_dtype"):
        precision.matmul(jnp.ones((2, 2)), jnp.ones((2, 2)), "int8")
