"""Gated SAE (Rajamanoharan et al. 2024, "Improving dictionary learning with gated sparse
autoencoders", eqs. 5-9): a gate path decides which latents fire, a magnitude path (sharing
W_enc up to a per-latent rescale exp(r_mag)) decides how much.

    pi_gate = W_enc (x - b_dec) + b_gate          f_gate = 1[pi_gate > 0]
    f_mag   = ReLU(exp(r_mag) * W_enc (x - b_dec) + b_mag)
    f       = f_gate * f_mag
    L = ||x - x_hat(f)||^2 + lambda ||ReLU(pi_gate)||_1 + ||x - x_hat_frozen(ReLU(pi_gate))||^2

x_hat_frozen uses a stop-gradient copy of the decoder, so the auxiliary term trains only the gate.
Parameter names follow SAELens' gated layout.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp

from . import common
from .config import SAEConfig

FEATURE_AXES = {"W_enc": 1, "b_gate": 0, "r_mag": 0, "b_mag": 0, "W_dec": 0}
SAELENS_NAME = "gated"


def init(key, cfg: SAEConfig) -> dict:
    params = common.init_dictionary(key, cfg)
    for name in ("b_gate", "r_mag", "b_mag"):
        params[name] = jnp.zeros((cfg.d_sae,), jnp.float32)
    return params


def _paths(params, x, cfg):
    h = common.encoder_matmul(params, x, cfg)
    pi_gate = h + params["b_gate"]
    mag = jax.nn.relu(h * jnp.exp(params["r_mag"]) + params["b_mag"])
    return pi_gate, mag


def pre_activations(params, x, cfg: SAEConfig):
    """The gate pre-activation: what decides firing (used by ghost grads)."""
    return common.encoder_matmul(params, x, cfg) + params["b_gate"]


def encode(params, x, cfg: SAEConfig):
    pi_gate, mag = _paths(params, x, cfg)
    return jnp.where(pi_gate > 0, mag, 0.0)


def forward(params, x, cfg: SAEConfig) -> dict:
    pi_gate, mag = _paths(params, x, cfg)
    f = jnp.where(pi_gate > 0, mag, 0.0)
    x_hat = common.decode(params, f, cfg)
    gate_act = jax.nn.relu(pi_gate)
    sparsity = jnp.sum(gate_act * common.sparsity_weights(params, cfg), axis=-1)
    frozen = jax.lax.stop_gradient({"W_dec": params["W_dec"], "b_dec": params["b_dec"]})
    aux_recon = common.decode(frozen, gate_act, cfg)
    return {"z": pi_gate, "f": f, "x_hat": x_hat, "sparsity": sparsity, "aux_recon": aux_recon}
