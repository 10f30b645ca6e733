"""Decomposing an ActAdd vector into SAE features (GDM Progress Update #1, Conmy & Nanda).

Why encode both prompts instead of the vector: the SAE has biases and a ReLU, so f(h_A) of a
*difference* is meaningless. The vector is a difference of two residual streams, so its feature
decomposition is the difference of the two prompts' codes, position by position:

    delta_f[t] = f(h(p+)[t]) - f(h(p-)[t])                      (signed, [P, M])
    recon[t]   = W_dec^T delta_f[t]   (b_dec cancels)           ([P, d])
    error[t]   = h_A[t] - recon[t]  = e(p+)[t] - e(p-)[t]        (the SAE errors' difference)

so `recon + error == h_A` exactly, and every feature's contribution delta_f[t, i] * d_i is a
piece of the vector that can be kept, dropped or scaled (the variants of `variants.py`).
"""

from __future__ import annotations

import dataclasses

import jax.numpy as jnp
import numpy as np

from interp.steering.actadd import PromptPair, residuals


@dataclasses.dataclass(frozen=True)
class Decomposition:
    vector: np.ndarray    # [P, d] h_A
    delta_f: np.ndarray   # [P, M] signed feature differences
    recon: np.ndarray     # [P, d] W_dec^T delta_f
    error: np.ndarray     # [P, d] vector - recon
    w_dec: np.ndarray     # [M, d] decoder rows (the directions the features write)

    def feature_vector(self, features, positions=None) -> np.ndarray:
        """sum_{i in features} delta_f[t, i] d_i at each position t (or only `positions`):
        [P, d]."""
        mask = np.zeros_like(self.delta_f)
        rows = slice(None) if positions is None else list(positions)
        mask[rows, list(features)] = 1.0
        return (self.delta_f * mask) @ self.w_dec

    def cosine(self) -> np.ndarray:
        """cos(h_A[t], recon[t]) per position (nan where the vector is zero, e.g. BOS)."""
        num = np.sum(self.vector * self.recon, -1)
        den = np.linalg.norm(self.vector, axis=-1) * np.linalg.norm(self.recon, axis=-1)
        with np.errstate(invalid="ignore", divide="ignore"):
            return np.where(den > 0, num / np.where(den > 0, den, 1), np.nan)

    def error_fraction(self) -> float:
        """||error||^2 / ||h_A||^2 over all positions: how much of the vector the SAE misses."""
        return float(np.sum(self.error ** 2) / max(np.sum(self.vector ** 2), 1e-30))

    def top_features(self, k: int = 10, position: int | None = None, sign: int = 0):
        """Feature ids by |delta_f| summed over positions (or at one `position`); `sign=+1`
        ranks by positive delta_f only (features the plus prompt adds), -1 by negative."""
        d = self.delta_f if position is None else self.delta_f[position:position + 1]
        score = d.sum(0) * sign if sign else np.abs(d).sum(0)
        order = np.argsort(-score, kind="stable")
        return [int(i) for i in order[:k] if score[i] > 0]

    def contribution_norms(self, features) -> np.ndarray:
        """||delta_f[:, i] d_i|| over all positions for each feature (size of its piece)."""
        norms = np.linalg.norm(self.w_dec[list(features)], axis=-1)
        return np.sqrt(np.sum(self.delta_f[:, list(features)] ** 2, 0)) * norms


def decompose(model, site: str, sae, pair: PromptPair, drop_positions=()) -> Decomposition:
    """Encode both prompts of `pair` with `sae` at `site` and split h_A into features + error.
    Rows at `drop_positions` (e.g. `actadd.sink_positions`) are zero in every part."""
    h = residuals(model, site, [pair.plus_ids, pair.minus_ids])  # [2, P, d]
    return decompose_residuals(np.asarray(h[0]), np.asarray(h[1]), sae, drop_positions)


def decompose_residuals(h_plus, h_minus, sae, drop_positions=()) -> Decomposition:
    """The decomposition from the two prompts' residuals [P, d] (see the module docstring)."""
    h_plus, h_minus = jnp.asarray(h_plus, jnp.float32), jnp.asarray(h_minus, jnp.float32)
    if h_plus.shape != h_minus.shape or h_plus.ndim != 2:
        raise ValueError(f"need two [P, d] residuals of equal shape, got {h_plus.shape}, "
                         f"{h_minus.shape}")
    delta_f = sae.encode(h_plus) - sae.encode(h_minus)
    w_dec = jnp.asarray(sae.params["W_dec"], jnp.float32)
    recon = delta_f @ w_dec
    vector = h_plus - h_minus
    keep = np.ones((vector.shape[0], 1), np.float32)
    keep[list(drop_positions)] = 0.0
    vector, delta_f, recon = (np.asarray(a) * keep for a in (vector, delta_f, recon))
    return Decomposition(vector, delta_f, recon, vector - recon, np.asarray(w_dec))
