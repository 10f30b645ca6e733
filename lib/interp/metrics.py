"""SAE quality metrics, each defined once (the names of the book's reference-SAE page). Inputs are arrays with the
token axis first: x, x_hat of shape (tokens, d_in), f of shape (tokens, d_sae). Work on numpy or
jax arrays; return scalars (or per-latent arrays) of the same library.

Loss recovered / delta CE / KL by splicing an SAE into a model live with the model code.
"""

from __future__ import annotations

import numpy as np


def _xp(a):
    """numpy for numpy inputs, jax.numpy for jax arrays (keeps jit/vmap working)."""
    if isinstance(a, np.ndarray) or np.isscalar(a):
        return np
    import jax.numpy as jnp
    return jnp


def l0(f):
    """Mean number of active latents per token, E_x ||f(x)||_0."""
    xp = _xp(f)
    return xp.mean(xp.sum(f != 0, axis=-1).astype(xp.float32))


def mse(x, x_hat):
    """E||x - x_hat||^2 (squared error summed over d_in, averaged over tokens)."""
    xp = _xp(x)
    return xp.mean(xp.sum((x - x_hat) ** 2, axis=-1))


def normalized_mse(x, x_hat):
    """E||x - x_hat||^2 / E||x||^2."""
    xp = _xp(x)
    return mse(x, x_hat) / xp.mean(xp.sum(x**2, axis=-1))


def fvu(x, x_hat):
    """Fraction of variance unexplained, E||x - x_hat||^2 / E||x - E[x]||^2 (variance about the
    mean, so a constant offset in x does not inflate the denominator)."""
    xp = _xp(x)
    centred = x - xp.mean(x, axis=0)
    return mse(x, x_hat) / xp.mean(xp.sum(centred**2, axis=-1))


def explained_variance(x, x_hat):
    """1 - FVU."""
    return 1.0 - fvu(x, x_hat)


def shrinkage(x, x_hat):
    """Relative reconstruction bias gamma = argmin_g E||x_hat / g - x||^2 = E||x_hat||^2 /
    E[x_hat . x] (Gated SAE paper, section 4.2). gamma < 1 means the SAE shrinks its outputs."""
    xp = _xp(x)
    return xp.mean(xp.sum(x_hat**2, axis=-1)) / xp.mean(xp.sum(x_hat * x, axis=-1))


relative_reconstruction_bias = shrinkage


def feature_density(f):
    """Per-latent firing frequency: fraction of tokens on which each latent is non-zero."""
    xp = _xp(f)
    return xp.mean((f != 0).astype(xp.float32), axis=0)


def dead_fraction(density):
    """Fraction of latents that never fired over the window the density was measured on."""
    xp = _xp(density)
    return xp.mean((density <= 0).astype(xp.float32))


def dense_fraction(density, threshold: float = 0.1):
    """Fraction of latents firing on more than `threshold` of tokens (Anthropic Feb-2024)."""
    xp = _xp(density)
    return xp.mean((density > threshold).astype(xp.float32))


def density_histogram(density, bins: int = 50, log10_min: float = -7.0):
    """Histogram data of log10 feature density for alive latents. Returns
    (counts, bin_edges, n_dead); dead latents (density 0) are counted separately."""
    density = np.asarray(density, np.float64)
    alive = density[density > 0]
    edges = np.linspace(log10_min, 0.0, bins + 1)
    counts, edges = np.histogram(np.clip(np.log10(alive), log10_min, 0.0), bins=edges)
    return counts, edges, int(np.sum(density <= 0))


def max_cosine_similarity(learned, true):
    """For each true direction (rows of `true`), the largest cosine similarity with any learned
    direction (rows of `learned`): the feature-recovery score on data with a known dictionary
    (Sharkey et al. 2022 "mean max cosine similarity" = the mean of this)."""
    learned = np.asarray(learned, np.float64)
    true = np.asarray(true, np.float64)
    learned = learned / np.maximum(np.linalg.norm(learned, axis=-1, keepdims=True), 1e-12)
    true = true / np.maximum(np.linalg.norm(true, axis=-1, keepdims=True), 1e-12)
    return np.max(true @ learned.T, axis=-1)
