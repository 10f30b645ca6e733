"""Shrinkage control for the encoder-vs-ITO comparison (the ITO page's experiment E5; Gated SAE
paper's "rescale & shift" baseline): keep an SAE's encoder and decoder frozen and fit, per
latent i, a rescale a_i and shift b_i of its *active* outputs,

    f'_i(x) = (a_i f_i(x) + b_i) * 1[f_i(x) > 0],

by least squares on the reconstruction ||x - (f' W_dec + b_dec)||^2. The model is linear in
(a, b), so the fit is one solve of the 2n x 2n normal equations, accumulated over batches.
If ITO still beats f', the encoder's deficit is not just shrinkage (claim I3).
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

import jax
import jax.numpy as jnp
import numpy as np
import scipy.linalg
from tqdm import tqdm


@jax.tree_util.register_pytree_node_class
@dataclass(frozen=True)
class RescaleShift:
    """Per-latent affine correction of active encoder outputs (see `fit_rescale_shift`)."""

    scale: jax.Array  # [n_latents]
    shift: jax.Array  # [n_latents]

    def tree_flatten(self):
        return (self.scale, self.shift), None

    @classmethod
    def tree_unflatten(cls, aux, children):
        return cls(*children)

    def __call__(self, f):
        return apply_rescale_shift(self, f)


def apply_rescale_shift(rs: RescaleShift, f):
    """f' = (scale * f + shift) on active latents, 0 elsewhere (no new active latents; not
    clipped at 0, so the least-squares optimum is kept)."""
    return jnp.where(f > 0, rs.scale * f + rs.shift, 0.0).astype(f.dtype)


@jax.jit
def _normal_equation_terms(f, x, W_dec, b_dec):
    f = f.astype(jnp.float32)
    m = (f > 0).astype(jnp.float32)
    G = W_dec @ W_dec.T
    proj = (x.astype(jnp.float32) - b_dec) @ W_dec.T  # <x - b_dec, d_i>
    return (
        (f.T @ f) * G, (f.T @ m) * G, (m.T @ m) * G,
        jnp.sum(f * proj, axis=0), jnp.sum(m * proj, axis=0),
    )


def fit_rescale_shift(batches: Iterable[tuple], W_dec, b_dec, *, ridge: float = 1e-6,
                      progress: bool = True) -> RescaleShift:
    """Least-squares per-latent rescale and shift of frozen encoder outputs.

    Args:
      batches: iterable of (f, x): encoder outputs [B, n] and the inputs [B, d] they encode.
      W_dec, b_dec: the frozen decoder ([n, d] rows = atoms, and [d]).
      ridge: relative Tikhonov weight pulling (a, b) towards (1, 0); keeps latents that never
        fire (no data) at the identity.
    """
    W_dec = jnp.asarray(W_dec, jnp.float32)
    b_dec = jnp.asarray(b_dec, jnp.float32)
    n = W_dec.shape[0]
    acc = None
    seen = 0
    for f, x in tqdm(batches, desc="rescale-shift fit", disable=not progress):
        f, x = jnp.asarray(f), jnp.asarray(x)
        if f.ndim != 2 or f.shape[1] != n or x.shape != (f.shape[0], W_dec.shape[1]):
            raise ValueError(f"batch shapes f {f.shape}, x {x.shape} do not match "
                             f"W_dec {W_dec.shape}")
        terms = [np.asarray(t, np.float64) for t in _normal_equation_terms(f, x, W_dec, b_dec)]
        acc = terms if acc is None else [a + t for a, t in zip(acc, terms)]
        seen += f.shape[0]
    if acc is None:
        raise ValueError("fit_rescale_shift got no batches")
    faa, fab, fbb, ra, rb = acc
    A = np.block([[faa, fab], [fab.T, fbb]])
    rhs = np.concatenate([ra, rb])
    lam = ridge * max(float(np.mean(np.diag(A))), 1e-12)
    A[np.diag_indices_from(A)] += lam
    rhs[:n] += lam  # pulls the scale towards 1
    sol = scipy.linalg.solve(A, rhs, assume_a="sym")
    if not np.all(np.isfinite(sol)):
        raise FloatingPointError("rescale-shift solve produced NaN/inf (degenerate data?)")
    return RescaleShift(jnp.asarray(sol[:n], jnp.float32), jnp.asarray(sol[n:], jnp.float32))


@jax.tree_util.register_pytree_node_class
@dataclass(frozen=True)
class ShrinkageControlled:
    """An SAE (anything with encode/decode) whose encoder outputs pass through a fitted
    `RescaleShift`; same interface, so it splices like the SAE itself."""

    base: object
    rescale: RescaleShift

    def tree_flatten(self):
        return (self.base, self.rescale), None

    @classmethod
    def tree_unflatten(cls, aux, children):
        return cls(*children)

    def encode(self, x):
        return apply_rescale_shift(self.rescale, self.base.encode(x))

    def decode(self, f):
        return self.base.decode(f)

    def __call__(self, x):
        return self.decode(self.encode(x))
