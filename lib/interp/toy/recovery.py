"""Ground-truth feature recovery: how well a learned dictionary matches known features.

Why: in toy models (TMS, compiled Tracr) the true feature directions are known, so an
SAE can be scored directly instead of through proxies such as reconstruction loss.

Conventions: directions are rows. `true` is [F, d] (one true feature per row, in the
space the SAE was trained on), `learned` is [M, d] (one decoder direction per latent,
i.e. the SAE's W_dec with latents as rows). Cosines are *signed*: an SAE latent is
non-negative, so a decoder direction pointing at -f does not represent f.

Metrics (Sharkey, Braun & Millidge 2022, "Taking features out of superposition with
sparse autoencoders", interim report; used by later toy-model SAE work):
- max cosine per true feature: max_j cos(f_i, d_j)
- mean max cosine similarity (MMCS): the mean of the above over true features
- fraction recovered: fraction of true features whose max cosine exceeds a threshold
For Tracr, the reverse view asks whether each *latent* points along one compiled basis
direction: `latent_alignment`.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

__all__ = [
    "cosine_matrix", "max_cosine_per_feature", "mean_max_cosine", "fraction_recovered",
    "LatentAlignment", "latent_alignment", "nonzero_rows", "code_correlation", "summary",
    "random_baseline",
]


def _as_rows(name: str, a) -> np.ndarray:
    a = np.asarray(a, dtype=np.float64)
    if a.ndim != 2:
        raise ValueError(f"{name} must be a 2-D array [rows, dim], got shape {a.shape}")
    if not np.all(np.isfinite(a)):
        raise ValueError(f"{name} contains NaN or inf")
    return a


def _unit_rows(name: str, a: np.ndarray, eps: float) -> np.ndarray:
    norms = np.linalg.norm(a, axis=1, keepdims=True)
    if np.any(norms <= eps):
        bad = np.flatnonzero(norms[:, 0] <= eps).tolist()
        raise ValueError(f"{name} has zero-norm rows {bad[:10]}: a zero direction has no "
                         "cosine; drop it first (see `nonzero_rows`)")
    return a / norms


def cosine_matrix(true, learned, eps: float = 1e-12) -> np.ndarray:
    """cos(true_i, learned_j) as an [F, M] array."""
    true, learned = _as_rows("true", true), _as_rows("learned", learned)
    if true.shape[1] != learned.shape[1]:
        raise ValueError(f"true directions have dim {true.shape[1]} but learned have "
                         f"{learned.shape[1]}")
    return _unit_rows("true", true, eps) @ _unit_rows("learned", learned, eps).T


def max_cosine_per_feature(true, learned) -> np.ndarray:
    """For each true feature, the best cosine with any learned direction [F]."""
    return cosine_matrix(true, learned).max(axis=1)


def mean_max_cosine(true, learned) -> float:
    """MMCS: mean over true features of the best cosine with any learned direction."""
    return float(max_cosine_per_feature(true, learned).mean())


def fraction_recovered(true, learned, threshold: float = 0.9) -> float:
    """Fraction of true features with some learned direction at cosine > threshold."""
    if not -1.0 <= threshold <= 1.0:
        raise ValueError(f"threshold is a cosine, must be in [-1, 1], got {threshold}")
    return float((max_cosine_per_feature(true, learned) > threshold).mean())


def nonzero_rows(a, min_norm: float = 1e-6) -> np.ndarray:
    """Boolean mask of rows with norm above min_norm (e.g. features a TMS model represents)."""
    return np.linalg.norm(np.asarray(a, dtype=np.float64), axis=1) > min_norm


@dataclass(frozen=True)
class LatentAlignment:
    """For each latent: the compiled basis direction it is closest to, and how close."""

    best_cosine: np.ndarray        # [M]
    best_index: np.ndarray         # [M] row of `basis` with the best cosine
    best_label: tuple[str, ...]    # [M] that row's label

    def fraction_aligned(self, threshold: float = 0.9) -> float:
        """Fraction of latents that point along one basis direction (cosine > threshold)."""
        return float((self.best_cosine > threshold).mean())

    def labels_covered(self, threshold: float = 0.9) -> set[str]:
        """Basis labels that at least one latent aligns with."""
        return {lab for lab, c in zip(self.best_label, self.best_cosine) if c > threshold}


def latent_alignment(learned, basis, labels) -> LatentAlignment:
    """Whether each SAE latent aligns with a compiled (labelled) basis direction.

    `basis` [F, d] are the ground-truth directions in the SAE's input space (for a
    compressed Tracr model, the compressed images of the residual basis vectors) and
    `labels` their names, e.g. "tokens:a", "frac_prevs".
    """
    labels = tuple(str(x) for x in labels)
    cos = cosine_matrix(learned, basis)  # [M, F]
    if len(labels) != cos.shape[1]:
        raise ValueError(f"got {len(labels)} labels for {cos.shape[1]} basis directions")
    idx = cos.argmax(axis=1)
    return LatentAlignment(cos.max(axis=1), idx, tuple(labels[i] for i in idx))


def code_correlation(true_codes, learned_codes) -> np.ndarray:
    """For each true feature, the best Pearson correlation between its value and any
    latent's activation over the same samples: [F]. (Recovering the *code*, not just
    the direction.) Constant columns get correlation 0."""
    x = _as_rows("true_codes", true_codes)
    f = _as_rows("learned_codes", learned_codes)
    if x.shape[0] != f.shape[0]:
        raise ValueError(f"true_codes has {x.shape[0]} samples but learned_codes has "
                         f"{f.shape[0]}")
    xc, fc = x - x.mean(0), f - f.mean(0)
    xs, fs = np.linalg.norm(xc, axis=0), np.linalg.norm(fc, axis=0)
    corr = (xc.T @ fc) / np.maximum(np.outer(xs, fs), 1e-12)
    corr[xs < 1e-12, :] = 0.0
    corr[:, fs < 1e-12] = 0.0
    return corr.max(axis=1)


def summary(true, learned, threshold: float = 0.9) -> dict[str, float]:
    """MMCS, fraction recovered, and the worst feature's best cosine, as one record."""
    per = max_cosine_per_feature(true, learned)
    return {"mmcs": float(per.mean()), "fraction_recovered": float((per > threshold).mean()),
            "min_max_cosine": float(per.min()), "n_true": int(per.size)}


def random_baseline(true, n_latents: int, seed: int = 0, trials: int = 20) -> float:
    """Mean MMCS of `n_latents` random Gaussian directions: the score that means nothing.

    In low dimensions it is high (10 random directions in 2-D score ~0.96), so a recovery
    number is only evidence when it clearly exceeds this baseline.
    """
    true = _as_rows("true", true)
    rng = np.random.default_rng(seed)
    return float(np.mean([mean_max_cosine(true, rng.normal(size=(n_latents, true.shape[1])))
                          for _ in range(trials)]))
