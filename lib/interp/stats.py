"""Effects with honest uncertainty, and the named rules that turn them into claim verdicts.

A claim's measurement becomes an `Effect`: a mean with its standard error, a confidence interval
and the minimal detectable effect at its sample size, built from per-seed values (Student t) or
from per-item values (a seeded percentile bootstrap). A rule then reads the interval:

    gain = Effect.paired(ghost_per_seed, resample_per_seed)     # same seeds, A - B per seed
    verdict = directional(gain, expected_sign=-1)                  # "A lowers the loss"
    claims.record("G-2", "...", verdict, gain.to_record())

Rules (all return one of "reproduced", "not reproduced", "inconclusive"):

- `directional`: "A beats B": the 95% CI excludes 0 on the claimed side (or the other side).
- `equivalence`: "A changes nothing (within a margin)": two one-sided tests (TOST).
- `threshold`: "the value is above (below) t": the CI lies on one side of t.
- `all_parts`: several parts at once ("none of these helps", "all of these hold"), with
  Holm-Bonferroni where a verdict rests on *some* part being significant.

Every rule calls fewer than `min_n` (3) seeds or items inconclusive: with 2 seeds the standard
error rests on a single degree of freedom, and the old rule (now removed from `claims`)
(effect larger than the seed spread) called pure noise conclusive about 39% of the time at 2
seeds and always at 1. With 3 seeds only large effects can be seen: an effect of 4 standard
errors is found about 56% of the time (5 seeds: 84%, 10 seeds: 94%; see tests/test_stats.py).
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Mapping, Sequence

import numpy as np
from scipy import stats as sps

REPRODUCED, NOT_REPRODUCED, INCONCLUSIVE, NOT_TESTED = (
    "reproduced", "not reproduced", "inconclusive", "not tested")
VERDICTS = (REPRODUCED, NOT_REPRODUCED, INCONCLUSIVE, NOT_TESTED)
"""Every verdict the book shows; "not tested" marks a claim not measured (no rule returns it)."""

T_OVER_SEEDS, PAIRED_T, BOOTSTRAP_OVER_ITEMS = "t over seeds", "paired t", "bootstrap over items"
EXACT_BINOMIAL = "exact binomial over items"
PAIRED_PROPORTIONS = "Newcombe score interval, paired 0/1 items"
MIN_N = 3
POWER = 0.8
DEFAULT_N_BOOT = 10_000


# ------------------------------------------------------------------ vectorised statistics
# Each works along the last axis, so the simulations in tests/test_stats.py run the very code
# an Effect uses over thousands of draws at once.

def _t_quantile(q, n):
    """Student t quantile with n - 1 degrees of freedom (inf where n < 2: no noise estimate)."""
    n = np.asarray(n)
    return np.where(n >= 2, sps.t.ppf(q, np.maximum(n - 1, 1)), np.inf)


def _t_summary(samples: np.ndarray, level: float):
    """(mean, se, low, high) of the mean over the last axis: a Student t interval at `level`.
    With fewer than 2 samples the standard error and the interval are infinite."""
    n = samples.shape[-1]
    mean = samples.mean(axis=-1)
    if n < 2:
        se = np.full(mean.shape, np.inf)
    else:
        se = samples.std(axis=-1, ddof=1) / math.sqrt(n)
    low, high = _t_interval(mean, se, n, level)
    return mean, se, low, high


def _t_interval(mean, se, n, level):
    half = _t_quantile((1 + level) / 2, n) * se
    return mean - half, mean + half


def _t_p_value(mean, se, n, null=0.0):
    """Two-sided p-value of the one-sample t test of mean == null (1 where n < 2)."""
    mean, se = np.asarray(mean, float), np.asarray(se, float)
    diff = np.abs(mean - null)
    with np.errstate(divide="ignore", invalid="ignore"):
        t = np.where(diff == 0, 0.0, diff / se)
    p = 2 * sps.t.sf(t, np.maximum(np.asarray(n) - 1, 1))
    return np.where(np.asarray(n) >= 2, np.minimum(p, 1.0), 1.0)


def _bootstrap_means(samples: np.ndarray, n_boot: int, seed) -> np.ndarray:
    """[..., n_boot] means of resamples (with replacement) of the last axis. The resampling is
    drawn as multinomial counts so that many rows share one matrix product; the same seed gives
    the same resamples."""
    n = samples.shape[-1]
    counts = np.random.default_rng(seed).multinomial(n, np.full(n, 1.0 / n), size=n_boot)
    return samples @ counts.T.astype(np.float64) / n


def _expansion(n: int) -> float:
    """sqrt(n / (n - 1)): the plug-in variance of a resampled mean is (n - 1) / n of the
    unbiased one."""
    return math.sqrt(n / (n - 1))


def _expanded_level(level: float, n: int) -> float:
    """The level at which to read bootstrap quantiles so that a `level` interval has the width
    of a t interval: Phi^-1 of its upper quantile equals sqrt(n/(n-1)) * t_{(1+level)/2, n-1}
    (Hesterberg's expanded percentile interval). Plain percentile intervals are too narrow at
    small n: at 30 normal items they cover ~93.4%, not 95%."""
    z = _expansion(n) * sps.t.ppf((1 + level) / 2, n - 1)
    return float(2 * sps.norm.cdf(z) - 1)


def _percentile_interval(boot_means: np.ndarray, level: float, n: int):
    """Expanded percentile interval of the bootstrap means (see `_expanded_level`)."""
    wide = _expanded_level(level, n)
    low, high = np.quantile(boot_means, [(1 - wide) / 2, (1 + wide) / 2], axis=-1)
    return low, high


def _bootstrap_p_value(boot_means: np.ndarray, n: int, null=0.0):
    """Two-sided p-value that inverts the expanded percentile interval: the plain one is twice
    the smaller tail of the bootstrap distribution beyond `null` (+1 so it is never 0), mapped
    through the same expansion, so p < 1 - level exactly when the interval excludes `null`
    (up to quantile interpolation)."""
    b = boot_means.shape[-1]
    below = (boot_means <= null).sum(axis=-1)
    above = (boot_means >= null).sum(axis=-1)
    plain = np.minimum(1.0, 2 * (np.minimum(below, above) + 1) / (b + 1))
    return 2 * sps.t.sf(sps.norm.isf(plain / 2) / _expansion(n), n - 1)


def holm(p_values) -> np.ndarray:
    """Holm-Bonferroni adjusted p-values along the last axis: the k-th smallest of m is
    multiplied by (m - k + 1), made non-decreasing in that order, capped at 1. A part is
    significant at family-wise level alpha when its adjusted p-value is below alpha."""
    p = np.asarray(p_values, np.float64)
    m = p.shape[-1]
    order = np.argsort(p, axis=-1, kind="stable")
    ranked = np.take_along_axis(p, order, axis=-1) * (m - np.arange(m))
    ranked = np.minimum(np.maximum.accumulate(ranked, axis=-1), 1.0)
    out = np.empty_like(ranked)
    np.put_along_axis(out, order, ranked, axis=-1)
    return out


# ------------------------------------------------------------------ Effect
def _binomial_interval(k: int, n: int, level: float) -> tuple[float, float]:
    ci = sps.binomtest(k, n).proportion_ci(confidence_level=level, method="exact")
    return float(ci.low), float(ci.high)


def _wilson_interval(k: int, n: int, z: float) -> tuple[float, float]:
    p = k / n
    centre = (p + z * z / (2 * n)) / (1 + z * z / n)
    half = z * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n)) / (1 + z * z / n)
    return max(0.0, centre - half), min(1.0, centre + half)


def _newcombe_interval(counts, level: float) -> tuple[float, float]:
    """Newcombe's (1998) method-10 interval for p_a - p_b from paired counts (both, only a,
    only b, neither): the Wilson intervals of the two margins, combined with their correlation."""
    both, only_a, only_b, neither = counts
    n = both + only_a + only_b + neither
    z = float(sps.norm.ppf((1 + level) / 2))
    p1, p2 = (both + only_a) / n, (both + only_b) / n
    l1, u1 = _wilson_interval(both + only_a, n, z)
    l2, u2 = _wilson_interval(both + only_b, n, z)
    margins = (both + only_a) * (only_b + neither) * (both + only_b) * (only_a + neither)
    cross = both * neither - only_a * only_b  # Newcombe's phi: shrunk toward 0 by n/2 when > 0
    cross = cross - n / 2 if cross > n / 2 else (cross if cross < 0 else 0.0)
    phi = 0.0 if margins == 0 else cross / math.sqrt(margins)
    delta = math.sqrt(max(0.0, (p1 - l1) ** 2 - 2 * phi * (p1 - l1) * (u2 - p2) + (u2 - p2) ** 2))
    eps = math.sqrt(max(0.0, (u1 - p1) ** 2 - 2 * phi * (u1 - p1) * (p2 - l2) + (p2 - l2) ** 2))
    diff = p1 - p2
    return max(-1.0, diff - delta), min(1.0, diff + eps)


def _check_samples(samples, where: str) -> np.ndarray:
    x = np.asarray(samples, np.float64)
    if x.ndim != 1:
        raise ValueError(f"{where}: need a 1-D sequence of per-seed (or per-item) values, got "
                         f"shape {x.shape}; reduce each seed to one number first (e.g. "
                         f"np.nanmean(comparison.per_seed, axis=1))")
    if x.size == 0:
        raise ValueError(f"{where}: no samples; the comparison produced nothing to test")
    bad = np.flatnonzero(~np.isfinite(x))
    if bad.size:
        raise ValueError(f"{where}: sample(s) {bad.tolist()} of {x.size} are NaN or infinite "
                         f"({x[bad].tolist()}); drop or recompute them (a matched-L0 comparison "
                         f"outside the swept L0 range gives NaN)")
    return x


def _check_level(level: float) -> float:
    if not 0 < level < 1:
        raise ValueError(f"level must lie in (0, 1), e.g. 0.95, got {level}")
    return float(level)


def _mde_t(se, n, alpha):
    """(t_{1-alpha/2, n-1} + t_{power, n-1}) * se: the true effect a two-sided t test at alpha
    finds with probability `POWER` (the usual approximation to the noncentral t)."""
    return float((_t_quantile(1 - alpha / 2, n) + _t_quantile(POWER, n)) * se)


def _mde_normal(se, alpha):
    """(z_{1-alpha/2} + z_{power}) * se: the normal-approximation MDE, for bootstrap effects."""
    return float((sps.norm.ppf(1 - alpha / 2) + sps.norm.ppf(POWER)) * se)


def _jsonable(x: float):
    """A float, or its text ('inf', 'nan') where it is not finite, as claims.record stores it."""
    x = float(x)
    return x if math.isfinite(x) else str(x)


@dataclasses.dataclass(frozen=True)
class Effect:
    """A measured effect and its uncertainty. Build it with `from_seeds`, `paired`,
    `from_items`, `difference_of_items`, `from_proportion` or `paired_proportions`, not
    directly.

    `mde` is the minimal detectable effect: the true effect a two-sided test at alpha = 1 - level
    (0.05 by default) detects with power 0.8 at this n. For t effects it is
    (t_{1-alpha/2, n-1} + t_{0.8, n-1}) * se; for bootstrap effects (z_{1-alpha/2} + z_{0.8}) * se
    = 2.80 * se at alpha 0.05. A verdict of "inconclusive" with a large `mde` says "more seeds
    needed", not "no effect". With n < 2 the se, the CI and the mde are infinite.
    """

    mean: float
    se: float
    n: int
    ci: tuple[float, float]
    level: float
    method: str
    mde: float
    samples: tuple[float, ...] = dataclasses.field(repr=False)
    boot_means: np.ndarray | None = dataclasses.field(default=None, repr=False, compare=False)
    pair_counts: tuple[int, int, int, int] | None = dataclasses.field(default=None, repr=False)

    # -------------------------------------------------------------- constructors
    @classmethod
    def from_seeds(cls, samples: Sequence[float], level: float = 0.95, *,
                   method: str = T_OVER_SEEDS) -> Effect:
        """Mean over seeds with a Student t interval. For a paired comparison pass the per-seed
        differences (A_seed - B_seed), or use `paired`. Fewer than 2 seeds: CI (-inf, inf)."""
        x = _check_samples(samples, "Effect.from_seeds")
        level = _check_level(level)
        mean, se, low, high = _t_summary(x, level)
        return cls(float(mean), float(se), int(x.size), (float(low), float(high)), level,
                   method, _mde_t(se, x.size, 1 - level), tuple(float(v) for v in x))

    @classmethod
    def paired(cls, a: Sequence[float], b: Sequence[float], level: float = 0.95) -> Effect:
        """A - B from per-seed values of two arms trained on the same seeds (seed i of `a` pairs
        with seed i of `b`): a t interval over the per-seed differences."""
        xa = _check_samples(a, "Effect.paired (a)")
        xb = _check_samples(b, "Effect.paired (b)")
        if xa.shape != xb.shape:
            raise ValueError(f"Effect.paired: a has {xa.size} seeds and b has {xb.size}; pair "
                             f"the same seeds in the same order")
        return cls.from_seeds(xa - xb, level, method=PAIRED_T)

    @classmethod
    def from_items(cls, samples: Sequence[float], n_boot: int = DEFAULT_N_BOOT, seed: int = 0,
                   level: float = 0.95) -> Effect:
        """Mean over items with a percentile bootstrap interval, seeded (the same inputs give the
        same interval); se is the standard deviation of the bootstrap means.

        A bootstrap over items stands in for seeds only when the items are the claim's unit of
        replication (latents, prompts, programs), never the evaluation tokens of one trained
        SAE: those share one training run, so their spread says nothing about another seed's.
        The quantiles are read at a slightly wider level (`_expanded_level`) because the plain
        percentile interval is too narrow at small n (pure noise over 30 items was called
        conclusive ~6.6% of the time instead of 5%; expanded: ~5.2%)."""
        x = _check_samples(samples, "Effect.from_items")
        level = _check_level(level)
        if n_boot < 100:
            raise ValueError(f"Effect.from_items: n_boot must be >= 100, got {n_boot}")
        mean = float(x.mean())
        values = tuple(float(v) for v in x)
        if x.size < 2:
            return cls(mean, math.inf, 1, (-math.inf, math.inf), level, BOOTSTRAP_OVER_ITEMS,
                       math.inf, values)
        boot = _bootstrap_means(x, int(n_boot), int(seed))
        boot.setflags(write=False)
        se = float(boot.std(ddof=1))
        low, high = _percentile_interval(boot, level, x.size)
        return cls(mean, se, int(x.size), (float(low), float(high)), level,
                   BOOTSTRAP_OVER_ITEMS, _mde_normal(se, 1 - level), values, boot)

    @classmethod
    def difference_of_items(cls, a: Sequence[float], b: Sequence[float],
                            n_boot: int = DEFAULT_N_BOOT, seed: int = 0,
                            level: float = 0.95) -> Effect:
        """mean(a) - mean(b) for two *independent* samples of items (latents of two different
        SAEs, say), with a bootstrap that resamples each sample on its own. The interval is read
        at the expanded level of the smaller sample, and n is that size: the rules' min_n then
        asks for 3 items on each side. For the same items measured twice use `from_items` on the
        differences (pairing removes the items' own spread)."""
        xa = _check_samples(a, "Effect.difference_of_items (a)")
        xb = _check_samples(b, "Effect.difference_of_items (b)")
        level = _check_level(level)
        if n_boot < 100:
            raise ValueError(f"Effect.difference_of_items: n_boot must be >= 100, got {n_boot}")
        mean = float(xa.mean() - xb.mean())
        n = int(min(xa.size, xb.size))
        values = tuple(float(v) for v in xa) + tuple(float(-v) for v in xb)
        if n < 2:
            return cls(mean, math.inf, 1, (-math.inf, math.inf), level, BOOTSTRAP_OVER_ITEMS,
                       math.inf, values)
        # Two seeds derived from one, so `a` and `b` never share resampling counts.
        boot = (_bootstrap_means(xa, int(n_boot), [int(seed), 0])
                - _bootstrap_means(xb, int(n_boot), [int(seed), 1]))
        boot.setflags(write=False)
        se = float(boot.std(ddof=1))
        low, high = _percentile_interval(boot, level, n)
        return cls(mean, se, n, (float(low), float(high)), level, BOOTSTRAP_OVER_ITEMS,
                   _mde_normal(se, 1 - level), values, boot)

    @classmethod
    def from_proportion(cls, indicators: Sequence[float], level: float = 0.95) -> Effect:
        """The share of items with a property (a feature recovered or not, a latent rescued or
        not), from 0/1 indicators over items: a Clopper-Pearson interval, which stays honest
        where a bootstrap collapses (0 of 10 gives a zero-width bootstrap interval; the exact
        95% upper bound is 0.31). The mde is for the worst case p = 1/2. Not for paired
        differences of two arms (those are -1/0/+1: use `from_items`)."""
        x = _check_samples(indicators, "Effect.from_proportion")
        level = _check_level(level)
        if not np.isin(x, (0.0, 1.0)).all():
            raise ValueError("Effect.from_proportion: indicators must be 0 or 1, got "
                             f"{sorted(set(x.tolist()) - {0.0, 1.0})[:5]}")
        n, k = int(x.size), int(x.sum())
        mean = k / n
        low, high = _binomial_interval(k, n, level)
        se = math.sqrt(mean * (1 - mean) / n)
        return cls(mean, se, n, (low, high), level, EXACT_BINOMIAL,
                   _mde_normal(math.sqrt(0.25 / n), 1 - level), tuple(float(v) for v in x))

    @classmethod
    def paired_proportions(cls, a: Sequence[float], b: Sequence[float],
                           level: float = 0.95) -> Effect:
        """share(a) - share(b) for 0/1 indicators of the *same* items under two conditions (a
        feature recovered by SAE variant A and by variant B): Newcombe's score interval for
        paired proportions (Newcombe 1998, method 10). A bootstrap of the -1/0/+1 differences
        collapses to [0, 0] when no item differs, which claims equivalence from 40 items as
        firmly as from 40 million; this interval stays about +-z^2/(n + z^2) wide there (0.09
        at n = 40), as a binomial interval on the share of items that differ does. The p-value
        is McNemar's exact test on the discordant items."""
        xa = _check_samples(a, "Effect.paired_proportions (a)")
        xb = _check_samples(b, "Effect.paired_proportions (b)")
        level = _check_level(level)
        if xa.shape != xb.shape:
            raise ValueError(f"Effect.paired_proportions: a has {xa.size} items and b has "
                             f"{xb.size}; pair the same items in the same order")
        if not (np.isin(xa, (0.0, 1.0)).all() and np.isin(xb, (0.0, 1.0)).all()):
            raise ValueError("Effect.paired_proportions: indicators must be 0 or 1")
        both, only_a = int((xa * xb).sum()), int((xa * (1 - xb)).sum())
        only_b, neither = int(((1 - xa) * xb).sum()), int(((1 - xa) * (1 - xb)).sum())
        counts = (both, only_a, only_b, neither)
        n = int(xa.size)
        mean = (only_a - only_b) / n
        diffs = xa - xb
        se = float(diffs.std(ddof=1) / math.sqrt(n)) if n > 1 else math.inf
        se_worst = math.sqrt(max(only_a + only_b, 1) / n) / math.sqrt(n)  # mde at >= 1 discordant
        low, high = _newcombe_interval(counts, level)
        return cls(float(mean), se, n, (low, high), level, PAIRED_PROPORTIONS,
                   _mde_normal(se_worst, 1 - level), tuple(float(v) for v in diffs),
                   pair_counts=counts)

    # -------------------------------------------------------------- derived quantities
    @property
    def is_bootstrap(self) -> bool:
        return self.method == BOOTSTRAP_OVER_ITEMS

    def interval(self, level: float | None = None) -> tuple[float, float]:
        """The confidence interval at another level, recomputed from the t quantities or the
        stored bootstrap means (e.g. the 90% interval of a TOST)."""
        level = self.level if level is None else _check_level(level)
        if self.n < 2:
            return (-math.inf, math.inf)
        if self.is_bootstrap:
            low, high = _percentile_interval(self.boot_means, level, self.n)
        elif self.method == EXACT_BINOMIAL:
            low, high = _binomial_interval(int(round(self.mean * self.n)), self.n, level)
        elif self.method == PAIRED_PROPORTIONS:
            low, high = _newcombe_interval(self.pair_counts, level)
        else:
            low, high = _t_interval(self.mean, self.se, self.n, level)
        return (float(low), float(high))

    def to_record(self) -> dict:
        """Plain, JSON-able numbers for a claim record (non-finite values as 'inf' / 'nan')."""
        return {"mean": _jsonable(self.mean), "se": _jsonable(self.se), "n": int(self.n),
                "ci": [_jsonable(self.ci[0]), _jsonable(self.ci[1])], "level": self.level,
                "method": self.method, "mde": _jsonable(self.mde)}

    as_dict = to_record


def p_value(effect: Effect, null: float = 0.0) -> float:
    """Two-sided p-value of 'the true mean equals `null`': from the t distribution for seed
    effects, from the bootstrap distribution (inverting the percentile interval) for item
    effects. 1 when n < 2."""
    if effect.n < 2:
        return 1.0
    if effect.is_bootstrap:
        return float(_bootstrap_p_value(effect.boot_means, effect.n, null))
    if effect.method == EXACT_BINOMIAL:
        k = int(round(effect.mean * effect.n))
        if not 0.0 <= null <= 1.0:
            return 0.0
        return float(sps.binomtest(k, effect.n, null).pvalue)
    if effect.method == PAIRED_PROPORTIONS:
        if null != 0.0:
            raise ValueError("p_value of paired proportions tests a difference of 0 only")
        _, only_a, only_b, _ = effect.pair_counts
        if only_a + only_b == 0:
            return 1.0
        return float(sps.binomtest(only_a, only_a + only_b, 0.5).pvalue)
    return float(_t_p_value(effect.mean, effect.se, effect.n, null))


# ------------------------------------------------------------------ rules
def _check_sign(expected_sign: int) -> int:
    if expected_sign not in (1, -1):
        raise ValueError(f"expected_sign must be +1 or -1, got {expected_sign!r}")
    return int(expected_sign)


def _toward(low, high, sign: int):
    """An interval expressed on the claimed side: (low, high) of sign * effect."""
    return (low, high) if sign > 0 else (-np.asarray(high), -np.asarray(low))


def _directional_verdicts(low, high, n, expected_sign: int, min_n: int):
    lo, hi = _toward(low, high, expected_sign)
    v = np.where(lo > 0, REPRODUCED, np.where(hi < 0, NOT_REPRODUCED, INCONCLUSIVE))
    return np.where(np.asarray(n) >= min_n, v, INCONCLUSIVE)


def directional(effect: Effect, expected_sign: int = 1, min_n: int = MIN_N,
                level: float = 0.95) -> str:
    """'The effect has sign `expected_sign`': reproduced when the `level` CI excludes 0 on the
    claimed side, not reproduced when it excludes 0 on the other side, else inconclusive.
    Fewer than `min_n` samples is always inconclusive (no honest noise estimate); for a
    bootstrap over items, min_n counts items. Pure noise is called conclusive 1 - level of the
    time (5%), half of that 'reproduced'."""
    sign = _check_sign(expected_sign)
    low, high = effect.interval(level)
    return str(_directional_verdicts(low, high, effect.n, sign, min_n))


def _equivalence_verdicts(low90, high90, low95, high95, n, margin: float, min_n: int):
    inside = (low90 > -margin) & (high90 < margin)
    outside = (low95 > margin) | (high95 < -margin)
    v = np.where(inside, REPRODUCED, np.where(outside, NOT_REPRODUCED, INCONCLUSIVE))
    return np.where(np.asarray(n) >= min_n, v, INCONCLUSIVE)


def _check_margin(margin) -> float:
    if margin is None or not (math.isfinite(margin) and margin > 0):
        raise ValueError(f"margin must be a finite number > 0 (the largest effect the claim "
                         f"counts as 'no effect', in the metric's units), got {margin!r}")
    return float(margin)


def equivalence(effect: Effect, margin: float, min_n: int = MIN_N, alpha: float = 0.05) -> str:
    """'No effect' / 'no reliable improvement', within +-margin. Reproduced when the whole
    (1 - 2 alpha) = 90% CI lies inside (-margin, margin): two one-sided tests at alpha (TOST),
    so a true effect exactly at the margin is called equivalent at most alpha of the time. Not
    reproduced when the (1 - alpha) = 95% CI lies entirely beyond +margin or -margin (a clear
    effect larger than the margin). Otherwise, and below `min_n` samples, inconclusive: an
    effect too noisy to place is not evidence of no effect."""
    margin = _check_margin(margin)
    low90, high90 = effect.interval(1 - 2 * alpha)
    low95, high95 = effect.interval(1 - alpha)
    return str(_equivalence_verdicts(low90, high90, low95, high95, effect.n, margin, min_n))


def threshold(effect: Effect, threshold: float, higher_is_reproduced: bool = True,
              min_n: int = MIN_N, level: float = 0.95) -> str:
    """'The value is above (or, with higher_is_reproduced=False, below) `threshold`': reproduced
    when the `level` CI lies entirely on the claimed side, not reproduced when entirely on the
    other side, else (and below `min_n` samples) inconclusive."""
    if not math.isfinite(threshold):
        raise ValueError(f"threshold must be finite, got {threshold}")
    low, high = effect.interval(level)
    sign = 1 if higher_is_reproduced else -1
    return str(_directional_verdicts(low - threshold, high - threshold, effect.n, sign, min_n))


# ------------------------------------------------------------------ several parts
NONE_HELPS, ALL_HOLD = "none helps", "all hold"
PART_RULES = (NONE_HELPS, ALL_HOLD)


def _none_helps_verdicts(toward_mean, p_holm, upper_toward, n, margin, alpha, min_n):
    """Arrays [..., parts] on the 'helps' side -> verdicts [...]: see `all_parts`."""
    helps = (p_holm < alpha) & (toward_mean > 0)
    shown_small = upper_toward < margin
    v = np.where(helps.any(axis=-1), NOT_REPRODUCED,
                 np.where(shown_small.all(axis=-1), REPRODUCED, INCONCLUSIVE))
    return np.where((np.asarray(n) >= min_n).all(axis=-1), v, INCONCLUSIVE)


def _all_hold_verdicts(low_toward, toward_mean, p_holm, n, alpha, min_n):
    """Arrays [..., parts] on the claimed side -> verdicts [...]: see `all_parts`."""
    fails = (p_holm < alpha) & (toward_mean < 0)
    holds = low_toward > 0
    v = np.where(fails.any(axis=-1), NOT_REPRODUCED,
                 np.where(holds.all(axis=-1), REPRODUCED, INCONCLUSIVE))
    return np.where((np.asarray(n) >= min_n).all(axis=-1), v, INCONCLUSIVE)


def all_parts_details(effects_by_name: Mapping[str, Effect], rule: str = NONE_HELPS, *,
                      margin: float | None = None, expected_sign: int = 1, alpha: float = 0.05,
                      min_n: int = MIN_N) -> dict:
    """`all_parts`' verdict with, per part, the numbers behind it (JSON-able, for the record):
    {"verdict", "rule", "alpha", "margin", "parts": {name: {**effect.to_record(), "p",
    "p_holm"}}}."""
    if rule not in PART_RULES:
        raise ValueError(f"rule must be one of {PART_RULES}, got {rule!r}")
    if not effects_by_name:
        raise ValueError("all_parts: no parts given")
    sign = _check_sign(expected_sign)
    if rule == NONE_HELPS:
        margin = _check_margin(margin)
    elif margin is not None:
        raise ValueError(f"rule {ALL_HOLD!r} takes no margin (got {margin}); each part must "
                         f"hold on its own")
    names = list(effects_by_name)
    effects = [effects_by_name[k] for k in names]
    p = np.array([p_value(e) for e in effects])
    p_adj = holm(p)
    n = np.array([e.n for e in effects])
    toward_mean = sign * np.array([e.mean for e in effects])
    if rule == NONE_HELPS:
        upper = np.array([_toward(*e.interval(1 - 2 * alpha), sign)[1] for e in effects])
        verdict = _none_helps_verdicts(toward_mean, p_adj, upper, n, margin, alpha, min_n)
    else:
        low = np.array([_toward(*e.interval(1 - alpha), sign)[0] for e in effects])
        verdict = _all_hold_verdicts(low, toward_mean, p_adj, n, alpha, min_n)
    parts = {k: {**e.to_record(), "p": float(pk), "p_holm": float(ak)}
             for k, e, pk, ak in zip(names, effects, p, p_adj)}
    return {"verdict": str(verdict), "rule": rule, "alpha": alpha, "margin": margin,
            "expected_sign": sign, "parts": parts}


def all_parts(effects_by_name: Mapping[str, Effect], rule: str = NONE_HELPS, *,
              margin: float | None = None, expected_sign: int = 1, alpha: float = 0.05,
              min_n: int = MIN_N) -> str:
    """Verdict for a claim about several parts at once. `expected_sign` gives the side that
    'helps' (NONE_HELPS) or that the claim asserts (ALL_HOLD); p-values are two-sided
    (`p_value`) and Holm-adjusted across the parts (`holm`).

    rule "none helps" (e.g. "none of the other four items helps"), `margin` required:
      - not reproduced when at least one part helps reliably: Holm-adjusted p < alpha with its
        mean on the helping side. A reliable help, however small, refutes 'does not help';
        Holm keeps the chance that any of the null parts is called helpful below alpha/2.
      - reproduced otherwise when every part is shown to help by less than `margin`: the upper
        end (on the helping side) of its (1 - 2 alpha) = 90% CI is below margin, the helping
        half of a TOST. Parts that clearly hurt pass (they do not help). This is an
        intersection-union test: every part must pass at alpha, so no correction is needed.
      - inconclusive otherwise.
    rule "all hold" (e.g. "each of these items helps"), no margin:
      - not reproduced when at least one part goes the other way reliably (Holm-adjusted
        p < alpha, mean on the wrong side);
      - reproduced when every part's (1 - alpha) = 95% CI excludes 0 on the claimed side (each
        part's `directional` verdict; intersection-union, no correction needed);
      - inconclusive otherwise.
    Any part with fewer than `min_n` samples makes the whole claim inconclusive."""
    return all_parts_details(effects_by_name, rule, margin=margin, expected_sign=expected_sign,
                             alpha=alpha, min_n=min_n)["verdict"]
