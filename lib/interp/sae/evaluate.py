"""Streaming evaluation of an SAE over many batches with the definitions of `interp.metrics`
(sums are accumulated so that the result equals the metric on the concatenated tokens)."""

from __future__ import annotations

from typing import Iterable

import jax
import jax.numpy as jnp
import numpy as np

from .. import metrics
from .model import SAE


@jax.jit
def _batch_sums(sae: SAE, x):
    x = x.astype(jnp.float32)
    f = sae.encode(x)
    x_hat = sae.decode(f)
    return {
        "tokens": jnp.float32(x.shape[0]),
        "err": jnp.sum((x - x_hat) ** 2),
        "x_sq": jnp.sum(x**2),
        "x_sum": jnp.sum(x, axis=0),
        "xhat_sq": jnp.sum(x_hat**2),
        "xhat_dot_x": jnp.sum(x_hat * x),
        "active": jnp.sum((f != 0).astype(jnp.float32)),
        "fire_count": jnp.sum((f != 0).astype(jnp.float32), axis=0),
    }


def reconstruction_metrics(sae: SAE, batches: Iterable, max_batches: int | None = None,
             dense_threshold: float = 0.1) -> dict:
    """L0, MSE, normalised MSE, FVU, explained variance, shrinkage, dead and dense fractions
    and the per-latent density over all tokens of `batches` (raw activations)."""
    total = None
    for i, x in enumerate(batches):
        if max_batches is not None and i >= max_batches:
            break
        sums = jax.device_get(_batch_sums(sae, jnp.asarray(x)))
        total = sums if total is None else {k: total[k] + sums[k] for k in sums}
    if total is None:
        raise ValueError("evaluate: batches yielded nothing")
    n = total["tokens"]
    mean_x = total["x_sum"] / n
    variance = total["x_sq"] / n - float(np.sum(mean_x**2))
    density = total["fire_count"] / n
    mse = float(total["err"] / n)
    fvu = mse / float(variance)
    return {
        "tokens": int(n), "l0": float(total["active"] / n), "mse": mse,
        "normalized_mse": mse / float(total["x_sq"] / n), "fvu": fvu,
        "explained_variance": 1.0 - fvu,
        "shrinkage": float(total["xhat_sq"] / total["xhat_dot_x"]),
        "dead_fraction": float(metrics.dead_fraction(density)),
        "dense_fraction": float(metrics.dense_fraction(density, dense_threshold)),
        "density": density,
    }
