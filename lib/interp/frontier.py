"""Comparing SAE training recipes along their sparsity frontier.

An L1 sweep traces a curve (L0, metric) per recipe; two recipes are compared at *matched L0*
by interpolating each curve (linearly in log L0, the way frontiers are plotted) at common
target L0s inside the range both sweeps cover. Seeds are paired (same initialisation and data
order in both recipes), so each seed gives one difference B - A averaged over the targets
(`MatchedComparison.seed_means`); `MatchedComparison.effect` turns those into a paired
`interp.stats.Effect` (a t interval over seeds) for a named rule to read. The standard
deviation over seeds (`spread`) is descriptive only: no verdict compares an effect with it.
"""

from __future__ import annotations

import dataclasses
import warnings
from collections.abc import Sequence

import numpy as np

from interp import stats


def interpolate_at_l0(l0, values, targets) -> np.ndarray:
    """`values` at each L0 in `targets`, linear in log L0 between sweep points; NaN outside the
    swept range (no extrapolation). Sweep points may come in any order."""
    l0 = np.asarray(l0, np.float64)
    values = np.asarray(values, np.float64)
    targets = np.atleast_1d(np.asarray(targets, np.float64))
    if l0.shape != values.shape or l0.ndim != 1 or len(l0) < 2:
        raise ValueError(f"need >= 2 matching sweep points, got l0 {l0.shape}, values "
                         f"{values.shape}")
    ok = np.isfinite(l0) & np.isfinite(values) & (l0 > 0)
    if ok.sum() < 2:
        return np.full(targets.shape, np.nan)
    order = np.argsort(l0[ok])
    x, y = np.log(l0[ok][order]), values[ok][order]
    out = np.interp(np.log(np.maximum(targets, 1e-12)), x, y)
    out[(targets < np.exp(x[0])) | (targets > np.exp(x[-1]))] = np.nan
    return out


def common_targets(curves: Sequence[Sequence], n: int = 5) -> np.ndarray:
    """`n` log-spaced L0 targets inside the L0 range every curve covers (empty if none)."""
    lo = max(float(np.nanmin(np.asarray(c, float))) for c in curves)
    hi = min(float(np.nanmax(np.asarray(c, float))) for c in curves)
    if not (np.isfinite(lo) and np.isfinite(hi)) or lo <= 0 or hi <= lo:
        return np.zeros(0)
    return np.exp(np.linspace(np.log(lo), np.log(hi), n))


@dataclasses.dataclass(frozen=True)
class MatchedComparison:
    """B minus A at matched L0: per target, averaged over seeds, and its seed spread."""

    targets: np.ndarray           # L0 values compared at
    per_seed: np.ndarray          # [n_seeds, n_targets] B - A
    mean: float                   # mean difference over seeds and targets
    spread: float                 # std over seeds of the per-seed mean difference (0 with 1 seed)

    @property
    def seed_means(self) -> np.ndarray:
        """[n_seeds] B - A of each seed averaged over the targets (NaN without an overlap)."""
        if self.per_seed.size == 0:
            return np.full(self.per_seed.shape[0], np.nan)
        with warnings.catch_warnings():  # a seed with no finite target is NaN, said here
            warnings.simplefilter("ignore", RuntimeWarning)
            return np.nanmean(self.per_seed, axis=1)

    def effect(self, sign: float = 1.0, level: float = 0.95) -> stats.Effect | None:
        """sign * (B - A) as a paired effect over seeds, or None when there is nothing to test
        (no common L0 range, or a seed without a finite difference)."""
        return seed_effect(sign * self.seed_means, level)

    def as_numbers(self) -> dict:
        return {"diff": self.mean, "seed_spread": self.spread,
                "l0_range": [float(self.targets[0]), float(self.targets[-1])]
                if len(self.targets) else [], "n_seeds": int(self.per_seed.shape[0])}


def compare_at_matched_l0(a: Sequence[tuple], b: Sequence[tuple], *, n_targets: int = 5,
                          targets=None) -> MatchedComparison:
    """Compare two recipes given, per seed, a curve (l0s, values) each: `a[i]` and `b[i]` are
    seed i's sweeps. The difference is B - A. Seeds are paired (same data order and init)."""
    if len(a) != len(b) or not a:
        raise ValueError(f"need the same number (>= 1) of seeds per arm, got {len(a)}, {len(b)}")
    if targets is None:
        targets = common_targets([c[0] for c in list(a) + list(b)], n_targets)
    targets = np.asarray(targets, float)
    if targets.size == 0:
        nan = np.full((len(a), 0), np.nan)
        return MatchedComparison(targets, nan, float("nan"), float("nan"))
    per_seed = np.stack([interpolate_at_l0(*cb, targets) - interpolate_at_l0(*ca, targets)
                         for ca, cb in zip(a, b)])
    seed_means = np.nanmean(per_seed, axis=1)
    spread = float(np.std(seed_means, ddof=1)) if len(seed_means) > 1 else 0.0
    return MatchedComparison(targets, per_seed, float(np.nanmean(seed_means)), spread)


def seed_effect(per_seed, level: float = 0.95) -> stats.Effect | None:
    """A paired effect (t over seeds) from per-seed differences A_seed - B_seed; None when
    there are none or one is not finite (e.g. a comparison without an L0 overlap), so that a
    claim reports the missing ingredient instead of testing something else."""
    x = np.asarray(per_seed, np.float64).ravel()
    if x.size == 0 or not np.all(np.isfinite(x)):
        return None
    return stats.Effect.from_seeds(x, level, method=stats.PAIRED_T)
