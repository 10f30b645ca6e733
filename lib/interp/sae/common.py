"""Pieces shared by every architecture: initialisation of the dictionary, the decoder, the
reconstruction error and the decoder-norm constraint (Bricken et al. 2023; Gated SAE paper, App. D)."""

from __future__ import annotations

import jax
import jax.numpy as jnp

from . import precision, sparse, sparse_ffi
from .config import SAEConfig


def init_dictionary(key, cfg: SAEConfig) -> dict:
    """W_dec rows (the dictionary directions d_i) random on the sphere, scaled to
    `decoder_init_norm` unless the norm is pinned to 1; W_enc = W_dec^T or an independent draw
    of the same scale; zero biases."""
    k_dec, k_enc = jax.random.split(key)
    W_dec = jax.random.normal(k_dec, (cfg.d_sae, cfg.d_in), jnp.float32)
    W_dec = W_dec / jnp.linalg.norm(W_dec, axis=-1, keepdims=True)
    if cfg.decoder_norm != "unit":
        W_dec = W_dec * cfg.decoder_init_norm
    if cfg.encoder_init_transpose:
        W_enc = W_dec.T
    else:
        W_enc = jax.random.normal(k_enc, (cfg.d_in, cfg.d_sae), jnp.float32)
        W_enc = W_enc / jnp.linalg.norm(W_enc, axis=0, keepdims=True) * jnp.linalg.norm(
            W_dec, axis=-1)
    return {
        "W_enc": W_enc,
        "W_dec": W_dec,
        "b_dec": jnp.zeros((cfg.d_in,), jnp.float32),
    }


def encoder_matmul(params: dict, x, cfg: SAEConfig):
    """W_enc^T (x - b_dec), computed as x W_enc - b_dec W_enc: the same number, but then the
    gradient with respect to b_dec is a vector-matrix product instead of a sixth
    (batch x d_sae x d_in) matmul, which autodiff of (x - b_dec) W_enc would spend.
    Under step="sparse"/"ffi" the forward stays dense but the weight gradient is computed
    from the (sparse) cotangent's non-zeros only ("auto" compiles a dense and an "ffi" step).
    The dense products take `cfg.compute_dtype`."""
    mode = sparse.use_sparse(cfg.step)
    if mode is None:
        h = precision.matmul(x, params["W_enc"], cfg.compute_dtype)
    elif mode == "ffi":
        h = sparse_ffi.sparse_grad_matmul(x, params["W_enc"], cfg.compute_dtype)
    else:
        h = sparse.sparse_grad_matmul(x, params["W_enc"], mode)
    if cfg.pre_encoder_bias:
        h = h - params["b_dec"] @ params["W_enc"]
    return h


def decode(params: dict, f, cfg: SAEConfig | None = None):
    """x_hat = W_dec f + b_dec (same for every architecture); with a config whose step is
    "sparse"/"ffi", from f's non-zeros only (`sparse.sparse_decode`, `sparse_ffi`); the dense
    product takes the config's compute_dtype."""
    mode = None if cfg is None else sparse.use_sparse(cfg.step)
    if mode is None:
        dtype = "float32" if cfg is None else cfg.compute_dtype
        return precision.matmul(f, params["W_dec"], dtype) + params["b_dec"]
    if mode == "ffi":
        return sparse_ffi.sparse_decode(f, params["W_dec"]) + params["b_dec"]
    return sparse.sparse_decode(f, params["W_dec"], mode) + params["b_dec"]


# Dead-latent strategies whose loss reads the pre-activations z, which the fused core
# (`sparse_ffi.sae_core`) does not return: those keep the per-product kernels.
NEEDS_PRE_ACTIVATIONS = ("ghost", "ghost_scaled", "ghost_all", "auxk")


def fused_core(cfg: SAEConfig) -> bool:
    """Whether a ReLU / top-k forward runs as one fused kernel (step="ffi" on CPU, and a loss
    that needs only the codes, the reconstruction and the sparsity sum)."""
    return (cfg.architecture in ("relu", "topk") and cfg.dead_strategy not in NEEDS_PRE_ACTIVATIONS
            and sparse.use_sparse(cfg.step) == "ffi")


def fused_forward(params: dict, x, cfg: SAEConfig) -> dict:
    """The forward of a ReLU (or top-k) SAE through `sparse_ffi.sae_core`: the same numbers as
    the architecture's own forward, plus each latent's firing count over the batch."""
    c = params["b_enc"]
    if cfg.pre_encoder_bias:
        c = c - params["b_dec"] @ params["W_enc"]
    topk = cfg.architecture == "topk"
    w = jnp.zeros((cfg.d_sae,), jnp.float32) if topk else jnp.broadcast_to(
        jnp.asarray(sparsity_weights(params, cfg), jnp.float32), c.shape)
    f, x_hat, sparsity, fire_count = sparse_ffi.sae_core(
        x, params["W_enc"], c, params["W_dec"], w, cfg.k if topk else 0, cfg.compute_dtype)
    return {"f": f, "x_hat": x_hat + params["b_dec"], "sparsity": sparsity,
            "fire_count": fire_count}


# Below this a decoder row counts as zero: it has no direction to project onto or rescale.
NORM_EPS = 1e-12


def row_norms(a, keepdims: bool = False):
    """||a_i|| over the last axis, with a zero (not NaN) gradient at a zero row: the
    "double where" keeps sqrt away from 0, whose derivative is infinite."""
    sq = jnp.sum(a * a, axis=-1, keepdims=keepdims)
    nonzero = sq > 0
    return jnp.where(nonzero, jnp.sqrt(jnp.where(nonzero, sq, 1.0)), 0.0)


def decoder_norms(params: dict):
    return row_norms(params["W_dec"])


def squared_error(x, x_hat, cfg: SAEConfig, input_sq_norm=1.0):
    """Per-example reconstruction loss: ||x - x_hat||^2, divided by d_in for
    mse_reduction='mean' (GDM) and by E||x||^2 if mse_normalise_by_input_norm."""
    err = jnp.sum((x - x_hat) ** 2, axis=-1)
    if cfg.mse_reduction == "mean":
        err = err / cfg.d_in
    if cfg.mse_normalise_by_input_norm:
        err = err / input_sq_norm
    return err


def project_decoder_grad(grad_W_dec, W_dec, cfg: SAEConfig):
    """Remove the gradient component parallel to each unit-norm d_i, g_i <- g_i - (g_i.d_i) d_i,
    so Adam does not waste its step on a change the renormalisation would undo."""
    if cfg.decoder_norm != "unit":
        return grad_W_dec
    # a zero row has no direction: its unit vector is 0 and its gradient passes unprojected
    unit = W_dec / jnp.maximum(row_norms(W_dec, keepdims=True), NORM_EPS)
    return grad_W_dec - jnp.sum(grad_W_dec * unit, axis=-1, keepdims=True) * unit


def constrain_decoder(W_dec, cfg: SAEConfig):
    """After each step: ||d_i|| = 1 ("unit"), ||d_i|| <= 1 ("at_most_one"), or nothing."""
    if cfg.decoder_norm == "free":
        return W_dec
    norms = row_norms(W_dec, keepdims=True)
    if cfg.decoder_norm == "unit":
        return W_dec / jnp.maximum(norms, NORM_EPS)
    return W_dec / jnp.maximum(norms, 1.0)


def sparsity_weights(params: dict, cfg: SAEConfig):
    """Per-latent weight of the L1 penalty: ||d_i|| when weighted by decoder norm, else 1."""
    if cfg.l1_weighted_by_decoder_norm:
        return decoder_norms(params)
    return 1.0
