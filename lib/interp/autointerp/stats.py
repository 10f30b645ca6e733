"""Summaries of per-latent scores: paired differences and rank correlations, each with a seeded
bootstrap interval over latents (shown in tables and plots), and the per-latent reductions the
claims are decided on (`finite_pairs`, `rank_products`; the verdicts themselves are in
`interp.experiments.autointerp`, through `interp.stats.Effect.from_items`).

Why a bootstrap over latents: the unit that is sampled is the latent (a seeded random sample of
the SAE's alive latents), so the spread that matters is how much a mean difference or a
correlation would move with another sample of latents. Scores can be NaN (a correlation is
undefined when the true or simulated activations are constant on the held-out records); pairs
with a NaN are dropped, and the count kept is reported.
"""

from __future__ import annotations

import numpy as np
from scipy.stats import rankdata


def finite_pairs(a, b) -> tuple[np.ndarray, np.ndarray]:
    """The pairs (a_i, b_i) where both values are finite (a NaN score is undefined, not 0)."""
    a = np.asarray(a, dtype=np.float64).ravel()
    b = np.asarray(b, dtype=np.float64).ravel()
    if a.shape != b.shape:
        raise ValueError(f"paired values need equal lengths, got {a.shape} and {b.shape}")
    ok = np.isfinite(a) & np.isfinite(b)
    return a[ok], b[ok]


def paired_difference(a, b, *, n_boot: int = 2000, seed: int = 0, level: float = 0.95) -> dict:
    """Mean of `a - b` over latents with a percentile bootstrap interval.

    Returns `{mean_diff, lo, hi, half_width, n}` (descriptive: claims use
    `interp.stats.Effect.from_items` on the same differences). NaN everywhere when n < 2.
    """
    a, b = finite_pairs(a, b)
    d = a - b
    if len(d) < 2:
        return {"mean_diff": float(np.mean(d)) if len(d) else float("nan"), "lo": float("nan"),
                "hi": float("nan"), "half_width": float("nan"), "n": int(len(d))}
    rng = np.random.default_rng(seed)
    means = d[rng.integers(0, len(d), (n_boot, len(d)))].mean(axis=1)
    lo, hi = np.quantile(means, [(1 - level) / 2, (1 + level) / 2])
    return {"mean_diff": float(d.mean()), "lo": float(lo), "hi": float(hi),
            "half_width": float((hi - lo) / 2), "n": int(len(d))}


def spearman(x, y) -> float:
    """Spearman's rank correlation (ties get average ranks); NaN pairs dropped."""
    x, y = finite_pairs(x, y)
    if len(x) < 3:
        return float("nan")
    rx, ry = rankdata(x), rankdata(y)
    rx, ry = rx - rx.mean(), ry - ry.mean()
    denom = np.sqrt((rx @ rx) * (ry @ ry))
    return float(rx @ ry / denom) if denom > 0 else float("nan")


def rank_products(x, y) -> np.ndarray:
    """Per-pair products of standardised ranks, z(rank x_i) * z(rank y_i) (average ranks for ties,
    population standard deviation), over the finite pairs. Their mean is exactly Spearman's rho,
    so a bootstrap of their mean over items (`Effect.from_items`) gives rho an interval with the
    item as the unit; the ranks are held fixed, a linearisation whose spread matches rho's
    (1 / sqrt(n)) under independence, the null the claim is tested against. All zeros when
    either variable is constant (no ranking: rho undefined, counted as no correlation)."""
    x, y = finite_pairs(x, y)
    rx, ry = rankdata(x), rankdata(y)
    sx, sy = rx.std(), ry.std()
    if len(x) == 0 or sx == 0 or sy == 0:
        return np.zeros(len(x))
    return (rx - rx.mean()) / sx * ((ry - ry.mean()) / sy)


def spearman_interval(x, y, *, n_boot: int = 1000, seed: int = 0, level: float = 0.95) -> dict:
    """Spearman correlation with a percentile bootstrap interval over pairs:
    `{rho, lo, hi, half_width, n}`."""
    x, y = finite_pairs(x, y)
    rho = spearman(x, y)
    if len(x) < 4:
        return {"rho": rho, "lo": float("nan"), "hi": float("nan"), "half_width": float("nan"),
                "n": int(len(x))}
    rng = np.random.default_rng(seed)
    boots = []
    for _ in range(n_boot):
        i = rng.integers(0, len(x), len(x))
        boots.append(spearman(x[i], y[i]))
    boots = np.asarray(boots)
    boots = boots[np.isfinite(boots)]
    lo, hi = np.quantile(boots, [(1 - level) / 2, (1 + level) / 2])
    return {"rho": rho, "lo": float(lo), "hi": float(hi), "half_width": float((hi - lo) / 2),
            "n": int(len(x))}


def fill_constant_predictions(columns: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    """Per-latent scores of several explanations scored on the *same* held-out records, with a
    NaN replaced by 0 wherever another explanation's score for that latent is finite.

    Why: the true activations are shared, so if any explanation gets a finite correlation the
    truth is not constant, and a NaN can only come from a constant *prediction* (e.g. a random
    explanation naming tokens that never occur): a prediction with no information, whose fair
    score is 0. Dropping those latents instead would compare baselines only where they happen to
    hit, which flatters them. Latents where every score is NaN (constant truth) stay NaN.
    """
    arrays = {k: np.asarray(v, dtype=np.float64) for k, v in columns.items()}
    lengths = {len(v) for v in arrays.values()}
    if len(lengths) > 1:
        sizes = {k: len(v) for k, v in arrays.items()}
        raise ValueError(f"score columns differ in length: {sizes}")
    if not arrays:
        return {}
    any_finite = np.any([np.isfinite(v) for v in arrays.values()], axis=0)
    return {k: np.where(~np.isfinite(v) & any_finite, 0.0, v) for k, v in arrays.items()}
