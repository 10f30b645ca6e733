"""Top-k SAE (Gao et al. 2024, "Scaling and evaluating sparse autoencoders"): keep the k largest
pre-activations per token (then ReLU), so sparsity is set directly and no L1 term is needed."""

from __future__ import annotations

import jax
import jax.numpy as jnp

from . import common, relu, sparse, sparse_ffi
from .config import SAEConfig

FEATURE_AXES = relu.FEATURE_AXES
SAELENS_NAME = "topk"
init = relu.init
pre_activations = relu.pre_activations


def keep_top_k(z, k: int, step: str = "dense"):
    """Zero all but the k largest entries of each row (ties at the k-th value are kept).
    Under step="sparse"/"ffi" on CPU the k-th value comes from a partition kernel
    (`sparse.kth_largest`, `sparse_ffi.kth_largest`) instead of XLA's top_k."""
    mode = sparse.use_sparse(step)
    if mode is None:
        kth = jax.lax.top_k(z, k)[0][..., -1:]
    elif mode == "ffi":
        kth = sparse_ffi.kth_largest(z, k)
    else:
        kth = sparse.kth_largest(z, k)
    return jnp.where(z >= kth, jax.nn.relu(z), 0.0)


def encode(params, x, cfg: SAEConfig):
    return keep_top_k(pre_activations(params, x, cfg), cfg.k, cfg.step)


def forward(params, x, cfg: SAEConfig) -> dict:
    if common.fused_core(cfg):
        out = common.fused_forward(params, x, cfg)
        return {**out, "sparsity": jnp.zeros(x.shape[:-1], x.dtype)}
    z = pre_activations(params, x, cfg)
    f = keep_top_k(z, cfg.k, cfg.step)
    x_hat = common.decode(params, f, cfg)
    return {"z": z, "f": f, "x_hat": x_hat, "sparsity": jnp.zeros(x.shape[:-1], x.dtype)}
