"""`SAEConfig.compute_dtype`: the dense products of a training step with bfloat16 inputs and
float32 accumulation, parameters, optimiser state and everything else (mixed precision as
PyTorch autocast or JAX's `preferred_element_type` give it).

bfloat16 keeps float32's exponent range and 8 bits of mantissa, so each input of a product
is rounded to a relative error <= 2^-9; the sums stay float32. `matmul` applies it to the
forward product and to both gradient products, so the whole step sees the same rounding.
On an accelerator (and on CPUs whose XLA kernels take bfloat16, e.g. YNNPACK with
AVX512-BF16) the products run at the bf16 rate; where XLA's CPU backend has no bf16 kernel for
a layout (the weight gradient, which contracts the batch axis) the float32 product of the
rounded values is taken instead: the same sums up to their order, at the float32 rate.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp

COMPUTE_DTYPES = ("float32", "bfloat16")


def _round(a):
    return a.astype(jnp.bfloat16)


def _contract_last(a, b, b_axis: int):
    """a's last axis against b's axis `b_axis` (0: a @ b, 1: a @ b^T), float32 result."""
    return jax.lax.dot_general(a, b, (((a.ndim - 1,), (b_axis,)), ((), ())),
                               preferred_element_type=jnp.float32)


@jax.custom_vjp
def bf16_matmul(a, b):
    """a @ b from bfloat16-rounded inputs, accumulated in float32; the gradients likewise
    (da = g b^T, db = a^T g, with g and the saved inputs rounded). a (..., n), b (n, m)."""
    return _contract_last(_round(a), _round(b), 0)


def _fwd(a, b):
    return bf16_matmul(a, b), (a, b)


def _bwd(res, g):
    a_in, b_in = res
    a, b, g = _round(a_in), _round(b_in), _round(g)
    da = _contract_last(g, b, 1)
    a2, g2 = a.reshape(-1, a.shape[-1]), g.reshape(-1, g.shape[-1])
    if jax.default_backend() == "cpu":  # the default backend is where the step runs here
        # a^T g contracts the batch axis of both: XLA's CPU backend has no bfloat16 kernel for
        # that layout (it converts, then runs at about half the float32 rate), so take the
        # float32 product of the rounded values; a product of two bfloat16 numbers is exact in
        # float32, so the sums are the same up to their order
        db = a2.astype(jnp.float32).T @ g2.astype(jnp.float32)
    else:
        db = jax.lax.dot_general(a2, g2, (((0,), (0,)), ((), ())),
                                 preferred_element_type=jnp.float32)
    # cotangents in the primals' dtypes (float32 in training; bf16 inputs get bf16 back)
    return da.astype(a_in.dtype), db.astype(b_in.dtype)


bf16_matmul.defvjp(_fwd, _bwd)


def matmul(a, b, compute_dtype: str = "float32"):
    """a @ b in the given compute dtype ("float32": XLA's own product and gradient)."""
    if compute_dtype == "float32":
        return a @ b
    if compute_dtype == "bfloat16":
        return bf16_matmul(a, b)
    raise ValueError(f"compute_dtype={compute_dtype!r}: unknown; allowed: "
                     f"{', '.join(COMPUTE_DTYPES)}")
