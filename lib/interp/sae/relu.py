"""The baseline ReLU SAE of the post (Bricken et al. 2023, Gated-SAE App. D):

    f = ReLU(W_enc (x - b_dec) + b_enc),  x_hat = W_dec f + b_dec,  L = recon + lambda ||f||_1
"""

from __future__ import annotations

import jax
import jax.numpy as jnp

from . import common
from .config import SAEConfig

# Which axis of each parameter runs over the latents (for resampling, pruning and sharding).
FEATURE_AXES = {"W_enc": 1, "b_enc": 0, "W_dec": 0}
SAELENS_NAME = "standard"


def init(key, cfg: SAEConfig) -> dict:
    params = common.init_dictionary(key, cfg)
    params["b_enc"] = jnp.zeros((cfg.d_sae,), jnp.float32)
    return params


def pre_activations(params, x, cfg: SAEConfig):
    return common.encoder_matmul(params, x, cfg) + params["b_enc"]


def encode(params, x, cfg: SAEConfig):
    return jax.nn.relu(pre_activations(params, x, cfg))


def forward(params, x, cfg: SAEConfig) -> dict:
    """Everything the loss needs, per example."""
    if common.fused_core(cfg):
        return common.fused_forward(params, x, cfg)
    z = pre_activations(params, x, cfg)
    f = jax.nn.relu(z)
    x_hat = common.decode(params, f, cfg)
    sparsity = jnp.sum(f * common.sparsity_weights(params, cfg), axis=-1)
    return {"z": z, "f": f, "x_hat": x_hat, "sparsity": sparsity}
