"""interp.stats: effects with confidence intervals, and the verdict rules' error rates.

The simulations run the module's own vectorised internals (the functions every Effect and rule
calls) over 2,000 seeded draws at once, and check them against the public path on some draws.
Rates from 2,000 draws have a standard error of about 0.5 percentage point at 5%, so the
bounds of 6% (t rules) sit two standard errors above the nominal 5%.
"""

import dataclasses
import json
import math

import numpy as np
import pytest
from scipy import stats as sps

from interp import stats
from interp.stats import (INCONCLUSIVE, NOT_REPRODUCED, REPRODUCED, Effect, all_parts,
                          all_parts_details, directional, equivalence, holm, p_value, threshold)

DRAWS = 2000
CONCLUSIVE = (REPRODUCED, NOT_REPRODUCED)


def _t_effect(mean, se, n):
    """An Effect with given t quantities (rules recompute intervals from mean, se and n)."""
    low, high = stats._t_interval(mean, se, n, 0.95)
    return Effect(mean, se, n, (low, high), 0.95, stats.T_OVER_SEEDS,
                  stats._mde_t(se, n, 0.05), ())


def _noise(seed, *shape):
    return np.random.default_rng(seed).standard_normal(shape)


# ------------------------------------------------------------------ known values
def test_from_seeds_known_values():
    e = Effect.from_seeds([1, 2, 3])
    se = 1 / math.sqrt(3)
    assert e.mean == pytest.approx(2.0)
    assert e.se == pytest.approx(se)
    assert e.n == 3 and e.level == 0.95 and e.method == "t over seeds"
    assert e.ci == pytest.approx(sps.t.interval(0.95, 2, loc=2.0, scale=se))
    assert e.mde == pytest.approx((sps.t.ppf(0.975, 2) + sps.t.ppf(0.8, 2)) * se)
    assert e.interval() == pytest.approx(e.ci)
    assert e.interval(0.9) == pytest.approx(sps.t.interval(0.9, 2, loc=2.0, scale=se))
    assert p_value(e) == pytest.approx(sps.ttest_1samp([1, 2, 3], 0.0).pvalue)
    assert p_value(e, null=2.0) == pytest.approx(1.0)
    with pytest.raises(dataclasses.FrozenInstanceError):
        e.mean = 0.0


def test_paired_is_t_over_per_seed_differences():
    a, b = [1.0, 2.5, 3.0, 4.2], [0.5, 2.0, 2.9, 3.1]
    e = Effect.paired(a, b)
    d = Effect.from_seeds(np.subtract(a, b))
    assert e.method == "paired t"
    assert (e.mean, e.se, *e.ci) == pytest.approx((d.mean, d.se, *d.ci))
    assert p_value(e) == pytest.approx(sps.ttest_rel(a, b).pvalue)
    with pytest.raises(ValueError, match="same seeds"):
        Effect.paired([1, 2, 3], [1, 2])


def test_record_is_plain_json():
    rec = Effect.from_seeds([0.1, 0.3, 0.2]).to_record()
    assert set(rec) == {"mean", "se", "n", "ci", "level", "method", "mde"}
    assert json.loads(json.dumps(rec, allow_nan=False)) == rec
    one = Effect.from_seeds([0.5]).as_dict()      # no noise estimate: infinite, written as text
    assert one["ci"] == ["-inf", "inf"] and one["se"] == "inf" and one["mde"] == "inf"
    json.dumps(one, allow_nan=False)


def test_one_and_two_seeds_are_inconclusive_whatever_the_effect():
    one = Effect.from_seeds([10.0])
    assert one.ci == (-math.inf, math.inf) and math.isinf(one.mde) and p_value(one) == 1.0
    two = Effect.from_seeds([10.0, 10.1])                      # 100 standard errors from 0
    for e in (one, two):
        assert directional(e) == INCONCLUSIVE
        assert directional(e, expected_sign=-1) == INCONCLUSIVE
        assert threshold(e, 0.0) == INCONCLUSIVE
        assert equivalence(e, margin=0.01) == INCONCLUSIVE
        assert equivalence(e, margin=100.0) == INCONCLUSIVE
    assert directional(two, min_n=2) == REPRODUCED             # min_n is the only thing in the way
    items = Effect.from_items([3.0, 3.1], n_boot=200)          # min_n counts items too
    assert directional(items) == INCONCLUSIVE
    assert Effect.from_items([3.0], n_boot=200).ci == (-math.inf, math.inf)


@pytest.mark.parametrize("make", [Effect.from_seeds, Effect.from_items])
def test_bad_samples_raise_naming_the_problem(make):
    with pytest.raises(ValueError, match=r"sample\(s\) \[1\] of 3 are NaN"):
        make([0.1, float("nan"), 0.2])
    with pytest.raises(ValueError, match="NaN or infinite"):
        make([0.1, float("inf"), 0.2])
    with pytest.raises(ValueError, match="no samples"):
        make([])
    with pytest.raises(ValueError, match="1-D"):
        make(np.zeros((3, 2)))
    with pytest.raises(ValueError, match="level"):
        make([1.0, 2.0, 3.0], level=95)


def test_bootstrap_is_seeded_and_close_to_t_at_many_items():
    x = 0.3 + _noise(1, 200)
    a, b = Effect.from_items(x, seed=7), Effect.from_items(x, seed=7)
    assert a.ci == b.ci and a.se == b.se                      # deterministic given the seed
    assert Effect.from_items(x, seed=8).ci != a.ci            # and the seed is used
    t = Effect.from_seeds(x)
    assert a.method == "bootstrap over items" and a.n == 200 and a.mean == pytest.approx(t.mean)
    assert a.se == pytest.approx(t.se, rel=0.05)
    assert a.ci == pytest.approx(t.ci, abs=0.2 * t.se)
    assert a.mde == pytest.approx((sps.norm.ppf(0.975) + sps.norm.ppf(0.8)) * a.se)
    lo90, hi90 = a.interval(0.9)
    assert a.ci[0] < lo90 < a.mean < hi90 < a.ci[1]
    assert p_value(a) == pytest.approx(p_value(t), abs=0.01)
    with pytest.raises(ValueError, match="n_boot"):
        Effect.from_items(x, n_boot=10)


def test_difference_of_items_matches_welch_at_many_items():
    """Two independent samples: the mean is the difference of means, the se and interval those of
    Welch's t at this size; seeded; n is the smaller sample (min_n asks for 3 on each side)."""
    a, b = 0.5 + _noise(2, 300), 2.0 * _noise(3, 200)
    d = Effect.difference_of_items(a, b, seed=4)
    assert d == Effect.difference_of_items(a, b, seed=4) and d.ci == \
        Effect.difference_of_items(a, b, seed=4).ci
    assert d.ci != Effect.difference_of_items(a, b, seed=5).ci
    welch_se = math.sqrt(a.var(ddof=1) / a.size + b.var(ddof=1) / b.size)
    assert d.mean == pytest.approx(a.mean() - b.mean())
    assert d.n == 200 and d.is_bootstrap
    assert d.se == pytest.approx(welch_se, rel=0.05)
    assert d.ci == pytest.approx((d.mean - 1.97 * welch_se, d.mean + 1.97 * welch_se),
                                 abs=0.2 * welch_se)
    assert directional(Effect.difference_of_items([1.0, 2.0], [0.0, 0.1, 0.2], n_boot=200)) \
        == INCONCLUSIVE                                         # 2 items on one side
    with pytest.raises(ValueError, match=r"difference_of_items \(b\).*NaN"):
        Effect.difference_of_items(a, [1.0, float("nan")])


def test_difference_of_items_null_rate_and_power():
    """Pure noise in two samples of 30 and 50 items is called conclusive <= 7% of the time (the
    bound of the one-sample bootstrap test below); a shift of 4 standard errors is found >= 80%."""
    na, nb, n_boot = 30, 50, 1000
    a, b = _noise(600, DRAWS, na), 3.0 * _noise(601, DRAWS, nb)
    boot = stats._bootstrap_means(a, n_boot, [9, 0]) - stats._bootstrap_means(b, n_boot, [9, 1])
    low, high = stats._percentile_interval(boot, 0.95, na)
    null = stats._directional_verdicts(low, high, na, 1, stats.MIN_N)
    for i in range(10):                                         # the public path agrees
        assert directional(Effect.difference_of_items(a[i], b[i], n_boot=n_boot, seed=9)) \
            == null[i]
    shift = 4 * math.sqrt(1 / na + 9 / nb)
    planted = stats._directional_verdicts(low + shift, high + shift, na, 1, stats.MIN_N)
    rate, power = np.isin(null, CONCLUSIVE).mean(), (planted == REPRODUCED).mean()
    print(f"difference of items (30 vs 50), noise: false-conclusive {rate:.2%}; 4 SE shift "
          f"found {power:.2%}")
    assert rate <= 0.07
    assert power >= 0.8


def test_paired_proportions_known_values_and_no_collapse_at_zero_discordance():
    """Newcombe's interval: the point estimate is (only a - only b) / n; with no discordant item
    it is +-z^2 / (n + z^2) (from the Wilson bound at a share of 1), not [0, 0]; the p-value is
    McNemar's exact test (two-sided binomial over the discordant items)."""
    a = np.array([1] * 12 + [1] * 9 + [0] * 2 + [0] * 21, float)
    b = np.array([1] * 12 + [0] * 9 + [1] * 2 + [0] * 21, float)
    e = Effect.paired_proportions(a, b)
    assert e.mean == pytest.approx(7 / 44) and e.n == 44
    assert e.ci[0] > 0 and e.ci[1] < 0.35
    assert p_value(e) == pytest.approx(sps.binomtest(9, 11, 0.5).pvalue)
    assert e.interval(0.9)[0] > e.ci[0]
    same = Effect.paired_proportions(np.ones(40), np.ones(40))
    z2 = sps.norm.ppf(0.975) ** 2
    assert same.ci == pytest.approx((-z2 / (40 + z2), z2 / (40 + z2)))
    assert p_value(same) == 1.0 and same.mde > 0
    with pytest.raises(ValueError, match="0 or 1"):
        Effect.paired_proportions([0.5, 1.0], [1.0, 1.0])
    with pytest.raises(ValueError, match="same items"):
        Effect.paired_proportions([1.0, 1.0], [1.0])


@pytest.mark.parametrize("p_a,p_b,rho", [(0.9, 0.9, 0.5), (0.7, 0.5, 0.3), (0.95, 0.95, 0.0)])
def test_paired_proportions_cover_the_true_difference(p_a, p_b, rho):
    """Coverage of the 95% interval over 2,000 draws of 40 correlated pairs is >= 93% (Newcombe
    1998 reports near-nominal coverage for his method 10), including near-saturated shares
    where many draws have no discordant item."""
    rng = np.random.default_rng(int(100 * p_a + 10 * p_b + rho * 7))
    n = 40
    z = rng.standard_normal((DRAWS, n, 2))
    z[..., 1] = rho * z[..., 0] + math.sqrt(1 - rho ** 2) * z[..., 1]
    a = (z[..., 0] < sps.norm.ppf(p_a)).astype(float)
    b = (z[..., 1] < sps.norm.ppf(p_b)).astype(float)
    covered = [lo <= p_a - p_b <= hi for lo, hi in
               (Effect.paired_proportions(x, y).ci for x, y in zip(a, b))]
    print(f"paired proportions p_a {p_a}, p_b {p_b}, rho {rho}: coverage {np.mean(covered):.2%}")
    assert np.mean(covered) >= 0.93


def test_bootstrap_p_value_agrees_with_its_interval():
    for seed in range(20):
        e = Effect.from_items(0.15 + _noise(seed, 40), n_boot=2000, seed=seed)
        excludes_zero = e.ci[0] > 0 or e.ci[1] < 0
        p = p_value(e)
        if abs(p - 0.05) > 0.005:                             # away from the Monte Carlo edge
            assert (p < 0.05) == excludes_zero, (seed, p, e.ci)


def test_holm_known_values():
    assert holm([0.01, 0.04, 0.03, 0.2]) == pytest.approx([0.04, 0.09, 0.09, 0.2])
    assert holm([0.5, 0.6]) == pytest.approx([1.0, 1.0])
    rows = holm(np.array([[0.01, 0.02], [0.2, 0.001]]))       # along the last axis
    assert rows == pytest.approx(np.array([[0.02, 0.02], [0.2, 0.002]]))


# ------------------------------------------------------------------ rules on clear cases
def test_directional_clear_cases():
    up = Effect.from_seeds([1.0, 1.2, 0.9, 1.1, 1.05])
    assert directional(up) == REPRODUCED
    assert directional(up, expected_sign=-1) == NOT_REPRODUCED
    assert directional(Effect.from_seeds([1.0, -1.1, 0.2])) == INCONCLUSIVE
    with pytest.raises(ValueError, match="expected_sign"):
        directional(up, expected_sign=0)


def test_equivalence_clear_cases():
    tiny = Effect.from_seeds([0.01, -0.02, 0.0, 0.015, -0.005])
    big = Effect.from_seeds([1.0, 1.2, 0.9, 1.1, 1.05])
    noisy = Effect.from_seeds([0.5, -0.6, 0.1])
    assert equivalence(tiny, margin=0.1) == REPRODUCED
    assert equivalence(big, margin=0.1) == NOT_REPRODUCED
    assert equivalence(Effect.from_seeds(-np.array(big.samples)), margin=0.1) == NOT_REPRODUCED
    assert equivalence(noisy, margin=0.1) == INCONCLUSIVE
    # significantly non-zero but well inside the margin: equivalent, not an effect
    assert equivalence(Effect.from_seeds([0.05, 0.051, 0.049, 0.05]), margin=0.1) == REPRODUCED
    for bad in (0.0, -1.0, None, math.nan):
        with pytest.raises(ValueError, match="margin"):
            equivalence(tiny, margin=bad)


def test_equivalence_uses_the_90_percent_interval():
    # 90% CI inside the margin, 95% CI not: TOST at alpha 0.05 says equivalent
    e = _t_effect(0.0, 1.0, 10)
    lo90, hi90 = e.interval(0.9)
    lo95, hi95 = e.interval(0.95)
    margin = (hi90 + hi95) / 2
    assert hi90 < margin < hi95
    assert equivalence(e, margin) == REPRODUCED


def test_threshold_clear_cases():
    e = Effect.from_seeds([0.95, 0.96, 0.94, 0.955])
    assert threshold(e, 0.9) == REPRODUCED
    assert threshold(e, 0.99) == NOT_REPRODUCED
    assert threshold(e, 0.9, higher_is_reproduced=False) == NOT_REPRODUCED
    assert threshold(e, 0.99, higher_is_reproduced=False) == REPRODUCED
    assert threshold(e, 0.95) == INCONCLUSIVE


def test_all_parts_none_helps():
    tiny = {k: Effect.from_seeds(np.array([0.01, -0.02, 0.0, 0.015, -0.005]) + i * 1e-3)
            for i, k in enumerate("abcd")}
    helps = Effect.from_seeds([1.0, 1.2, 0.9, 1.1, 1.05])
    hurts = Effect.from_seeds(-np.array(helps.samples))
    noisy = Effect.from_seeds([0.5, -0.6, 0.1, 0.3])
    assert all_parts(tiny, margin=0.1) == REPRODUCED
    assert all_parts({**tiny, "d": helps}, margin=0.1) == NOT_REPRODUCED
    assert all_parts({**tiny, "d": hurts}, margin=0.1) == REPRODUCED     # hurting is not helping
    assert all_parts({**tiny, "d": hurts}, margin=0.1, expected_sign=-1) == NOT_REPRODUCED
    assert all_parts({**tiny, "d": noisy}, margin=0.1) == INCONCLUSIVE
    assert all_parts({**tiny, "d": Effect.from_seeds([0.0, 0.01])}, margin=0.1) == INCONCLUSIVE
    items = {k: Effect.from_items(0.01 * _noise(i, 40), n_boot=2000, seed=i)
             for i, k in enumerate("abc")}                         # bootstrap parts work alike
    assert all_parts(items, margin=0.1) == REPRODUCED
    shifted = Effect.from_items(1.0 + 0.01 * _noise(9, 40), n_boot=2000)
    assert all_parts({**items, "c": shifted}, margin=0.1) == NOT_REPRODUCED
    with pytest.raises(ValueError, match="margin"):
        all_parts(tiny)
    with pytest.raises(ValueError, match="no parts"):
        all_parts({}, margin=0.1)
    with pytest.raises(ValueError, match="rule"):
        all_parts(tiny, rule="some help", margin=0.1)


def test_all_parts_adjusts_with_holm():
    # one part at raw p = 0.03 among four: significant alone, not after Holm (0.12)
    df, se = 9, 1.0
    borderline = _t_effect(sps.t.isf(0.015, df) * se, se, df + 1)
    assert p_value(borderline) == pytest.approx(0.03)
    assert directional(borderline) == REPRODUCED
    nulls = {k: _t_effect(0.0, se, df + 1) for k in "abc"}
    details = all_parts_details({**nulls, "d": borderline}, margin=100.0)
    assert details["parts"]["d"]["p_holm"] == pytest.approx(0.12)
    assert details["verdict"] == REPRODUCED                    # no Holm-significant help
    json.dumps(details, allow_nan=False)
    strong = _t_effect(sps.t.isf(0.004, df) * se, se, df + 1)  # p = 0.008 -> Holm 0.032
    assert all_parts({**nulls, "d": strong}, margin=100.0) == NOT_REPRODUCED


def test_all_parts_all_hold():
    ups = {k: Effect.from_seeds(np.array([1.0, 1.2, 0.9, 1.1, 1.05]) * (i + 1))
           for i, k in enumerate("abc")}
    assert all_parts(ups, rule="all hold") == REPRODUCED
    assert all_parts(ups, rule="all hold", expected_sign=-1) == NOT_REPRODUCED
    noisy = Effect.from_seeds([0.5, -0.6, 0.1, 0.3])
    assert all_parts({**ups, "c": noisy}, rule="all hold") == INCONCLUSIVE
    down = Effect.from_seeds(-np.array(ups["a"].samples))
    assert all_parts({**ups, "c": down}, rule="all hold") == NOT_REPRODUCED
    with pytest.raises(ValueError, match="no margin"):
        all_parts(ups, rule="all hold", margin=0.1)


# ------------------------------------------------------------------ simulated error rates
def _directional_sim(x, expected_sign=1):
    """Verdicts of `directional` on each row of x (draws x seeds), vectorised."""
    _, _, low, high = stats._t_summary(x, 0.95)
    return stats._directional_verdicts(low, high, x.shape[-1], expected_sign, stats.MIN_N)


@pytest.mark.parametrize("n", [3, 5, 10])
def test_directional_false_conclusive_rate_on_noise(n):
    x = _noise(100 + n, DRAWS, n)
    verdicts = _directional_sim(x)
    for row, v in zip(x[:50], verdicts[:50]):                 # the public path agrees
        assert directional(Effect.from_seeds(row)) == v
    rate = np.isin(verdicts, CONCLUSIVE).mean()
    print(f"directional, pure noise, n={n}: false-conclusive rate {rate:.2%}")
    assert rate <= 0.06


def test_two_seeds_never_conclusive_unlike_the_old_rule():
    x = _noise(3, DRAWS, 2)
    assert not np.isin(_directional_sim(x), CONCLUSIVE).any()
    # the old rule (removed): conclusive when |mean| > seed std
    old_rate = (np.abs(x.mean(axis=1)) > x.std(axis=1, ddof=1)).mean()
    assert 0.3 < old_rate < 0.5                                 # ~39%: why this module exists


@pytest.mark.parametrize("n", [3, 5, 10])
def test_equivalence_false_reproduced_rate_at_the_margin(n):
    sigma = 1.0
    margin = 5 * sigma / math.sqrt(n)                          # wide enough for TOST to pass
    for true in (margin, -margin):
        x = true + sigma * _noise(200 + n + (true > 0), DRAWS, n)
        m, se, _, _ = stats._t_summary(x, 0.95)
        lo90, hi90 = stats._t_interval(m, se, n, 0.90)
        lo95, hi95 = stats._t_interval(m, se, n, 0.95)
        verdicts = stats._equivalence_verdicts(lo90, hi90, lo95, hi95, n, margin, stats.MIN_N)
        for row, v in zip(x[:50], verdicts[:50]):
            assert equivalence(Effect.from_seeds(row), margin) == v
        rate = (verdicts == REPRODUCED).mean()
        print(f"equivalence, true effect {true:+.2f} = margin, n={n}: false-reproduced {rate:.2%}")
        assert rate <= 0.06


def _parts_sim(x, rule, margin=None):
    """all_parts verdicts on x [draws, parts, seeds], vectorised as the public path does."""
    n = x.shape[-1]
    m, se, _, _ = stats._t_summary(x, 0.95)
    p_adj = holm(stats._t_p_value(m, se, n))
    n_parts = np.full(m.shape, n)
    if rule == stats.NONE_HELPS:
        _, hi90 = stats._t_interval(m, se, n, 0.90)
        return stats._none_helps_verdicts(m, p_adj, hi90, n_parts, margin, 0.05, stats.MIN_N)
    lo95, _ = stats._t_interval(m, se, n, 0.95)
    return stats._all_hold_verdicts(lo95, m, p_adj, n_parts, 0.05, stats.MIN_N)


@pytest.mark.parametrize("n", [3, 5, 10])
def test_all_parts_four_null_parts(n):
    x = _noise(300 + n, DRAWS, 4, n)
    margin = 1.0
    none_helps = _parts_sim(x, stats.NONE_HELPS, margin)
    all_hold = _parts_sim(x, stats.ALL_HOLD)
    for draw in range(30):
        effects = {f"item {i}": Effect.from_seeds(x[draw, i]) for i in range(4)}
        assert all_parts(effects, margin=margin) == none_helps[draw]
        assert all_parts(effects, rule="all hold") == all_hold[draw]
    some_helps = (none_helps == NOT_REPRODUCED).mean()
    some_fails = (all_hold == NOT_REPRODUCED).mean()
    all_hold_falsely = (all_hold == REPRODUCED).mean()
    print(f"all_parts, 4 null parts, n={n}: 'none helps' refuted {some_helps:.2%}, "
          f"'all hold' refuted {some_fails:.2%}, reproduced {all_hold_falsely:.2%}")
    assert some_helps <= 0.06
    assert some_fails <= 0.06
    assert all_hold_falsely <= 0.01                            # needs all four to be significant


def test_bootstrap_over_items_false_conclusive_rate():
    """The bound is 7%, not 6%: a bootstrap interval is only approximately right at 30 items
    (its quantiles come from 1,000 resamples, and the resampled means' spread is itself noisy).
    The plain percentile interval is measurably liberal here (~6.6% averaged over seeds); the
    expanded one the module uses brings it to ~5.2%."""
    n_items, n_boot, seed = 30, 1000, 11
    x = _noise(400, DRAWS, n_items)
    boot = stats._bootstrap_means(x, n_boot, seed)
    low, high = stats._percentile_interval(boot, 0.95, n_items)
    verdicts = stats._directional_verdicts(low, high, n_items, 1, stats.MIN_N)
    for row, v in zip(x[:20], verdicts[:20]):                 # same seed, same resamples
        assert directional(Effect.from_items(row, n_boot=n_boot, seed=seed)) == v
    rate = np.isin(verdicts, CONCLUSIVE).mean()
    plain_low, plain_high = np.quantile(boot, [0.025, 0.975], axis=-1)
    plain = ((plain_low > 0) | (plain_high < 0)).mean()
    print(f"directional, bootstrap over {n_items} items, pure noise: false-conclusive {rate:.2%}"
          f" (plain percentile interval: {plain:.2%})")
    assert rate <= 0.07
    assert rate < plain                                       # the expansion widens the interval


@pytest.mark.parametrize("n,low,high", [(3, 0.45, 0.70), (5, 0.80, 1.0), (10, 0.80, 1.0)])
def test_power_for_an_effect_of_four_standard_errors(n, low, high):
    """A true effect of 4 sigma/sqrt(n) is found 84% of the time at 5 seeds and 94% at 10
    (noncentral t). With 3 seeds only large effects can be seen: measured power 55.5% (theory
    56.5%), since the t quantile with 2 degrees of freedom is 4.30."""
    x = 4 / math.sqrt(n) + _noise(500 + n, DRAWS, n)
    verdicts = _directional_sim(x)
    for row, v in zip(x[:50], verdicts[:50]):
        assert directional(Effect.from_seeds(row)) == v
    power = (verdicts == REPRODUCED).mean()
    theory = sps.nct.sf(sps.t.ppf(0.975, n - 1), n - 1, 4)
    print(f"power at 4 standard errors, n={n}: {power:.1%} (noncentral t: {theory:.1%})")
    assert power == pytest.approx(theory, abs=0.03)
    assert low <= power <= high


def test_proportions_get_an_exact_binomial_interval():
    """0 of 10 features recovered: a bootstrap interval collapses to [0, 0]; the exact one
    reaches 0.31, so 'the share is above 0.25' is not refuted by 10 items."""
    none = stats.Effect.from_proportion([0.0] * 10)
    assert none.method == stats.EXACT_BINOMIAL
    assert none.ci[0] == 0.0 and none.ci[1] == pytest.approx(0.3085, abs=1e-3)
    assert stats.threshold(none, 0.25) == "inconclusive"
    assert stats.threshold(stats.Effect.from_proportion([0.0] * 40), 0.25) == "not reproduced"
    most = stats.Effect.from_proportion([1.0] * 38 + [0.0] * 2)
    assert stats.threshold(most, 0.8) == "reproduced"
    low90, high90 = most.interval(0.90)
    assert most.ci[0] < low90 < most.mean < high90 <= most.ci[1]
    assert stats.p_value(stats.Effect.from_proportion([1.0, 0.0, 1.0, 1.0]), 0.0) == 0.0
    with pytest.raises(ValueError, match="must be 0 or 1"):
        stats.Effect.from_proportion([1.0, -1.0, 0.0])
