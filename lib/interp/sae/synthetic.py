"""Synthetic activations from a known sparse dictionary, for testing that training recovers the
true features (Sharkey et al. 2022, "Taking features out of superposition").

x = b + sum_i a_i g_i with unit directions g_i in R^d_in, each feature firing independently with
a Zipf-like probability and a magnitude uniform in [0.5, 1.5] when it fires, and b a fixed
offset of norm `offset_norm` (0 by default). Residual streams have a large mean; an SAE whose
b_dec has not yet learned it sees every input shifted along one direction, which is what kills
latents early in training (so the offset is what makes dead latents appear in synthetic data)."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np


@dataclass
class SparseDictionaryData:
    """An endless, seekable iterator of (batch_size, d_in) float32 batches; batch i depends only
    on (seed, i), so a resumed run sees exactly the batches the original run would have."""

    d_in: int
    n_features: int
    batch_size: int
    mean_active: float = 4.0   # expected number of active features per example
    zipf_exponent: float = 0.5  # firing probability ~ rank^-zipf_exponent (0 = uniform)
    seed: int = 0
    stream: int = 0            # independent batch streams over the same dictionary (0: train)
    position: int = 0
    offset_norm: float = 0.0   # norm of the constant offset b added to every example

    def __post_init__(self):
        rng = np.random.default_rng([self.seed, 2**31 - 1])
        g = rng.standard_normal((self.n_features, self.d_in))
        self.dictionary = (g / np.linalg.norm(g, axis=-1, keepdims=True)).astype(np.float32)
        p = np.arange(1, self.n_features + 1, dtype=np.float64) ** -self.zipf_exponent
        self.probabilities = np.minimum(p / p.sum() * self.mean_active, 1.0)
        b = np.random.default_rng([self.seed, 2**31 - 2]).standard_normal(self.d_in)
        self.offset = (self.offset_norm * b / np.linalg.norm(b)).astype(np.float32)

    def batch(self, index: int) -> np.ndarray:
        rng = np.random.default_rng([self.seed, self.stream, index])
        fires = rng.random((self.batch_size, self.n_features)) < self.probabilities
        mags = rng.uniform(0.5, 1.5, (self.batch_size, self.n_features))
        codes = (fires * mags).astype(np.float32)
        # einsum without BLAS: tiny matmuls through a threaded BLAS stall on a busy machine
        x = np.einsum("bf,fd->bd", codes, self.dictionary, optimize=False)
        return x + self.offset if self.offset_norm else x

    def held_out(self, stream: int = 1) -> "SparseDictionaryData":
        """Fresh batches of the same dictionary (for evaluation)."""
        return SparseDictionaryData(self.d_in, self.n_features, self.batch_size,
                                    self.mean_active, self.zipf_exponent, self.seed, stream,
                                    offset_norm=self.offset_norm)

    def seek(self, position: int):
        self.position = position

    def __iter__(self):
        return self

    def __next__(self) -> np.ndarray:
        x = self.batch(self.position)
        self.position += 1
        return x
