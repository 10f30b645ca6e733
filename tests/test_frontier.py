import numpy as np
import pytest

from interp import frontier


def test_interpolation_is_linear_in_log_l0_and_refuses_to_extrapolate():
    l0 = [10.0, 100.0, 1.0]
    v = [0.5, 0.0, 1.0]  # v = 1 - 0.5 log10(l0)
    out = frontier.interpolate_at_l0(l0, v, [np.sqrt(10), 30.0, 0.5, 200.0])
    np.testing.assert_allclose(out[:2], [1 - 0.25, 1 - 0.5 * np.log10(30)], rtol=1e-12)
    assert np.isnan(out[2]) and np.isnan(out[3])


def test_matched_comparison_recovers_a_known_offset_and_its_seed_spread():
    l0 = np.array([5.0, 20.0, 80.0])
    base = 1.0 / np.log(l0 + 1)
    offsets = [0.10, 0.12, 0.08]
    a = [(l0 * s, base) for s in (1.0, 1.1, 0.9)]
    b = [(l0 * s, base + off) for s, off in zip((1.0, 1.1, 0.9), offsets)]
    cmp = frontier.compare_at_matched_l0(a, b)
    assert cmp.mean == pytest.approx(0.10, abs=1e-12)
    assert cmp.spread == pytest.approx(np.std(offsets, ddof=1), rel=1e-9)
    assert cmp.targets[0] >= 5.5 - 1e-9 and cmp.targets[-1] <= 72.0 + 1e-9


def test_disjoint_sweeps_give_nan_not_a_made_up_number():
    a = [([1.0, 2.0], [0.1, 0.2])]
    b = [([10.0, 20.0], [0.1, 0.2])]
    cmp = frontier.compare_at_matched_l0(a, b)
    assert np.isnan(cmp.mean)


def test_mismatched_seed_counts_are_named():
    with pytest.raises(ValueError, match="same number"):
        frontier.compare_at_matched_l0([([1, 2], [1, 2])], [])


def test_effect_is_paired_over_seeds_and_none_without_overlap():
    l0 = np.array([5.0, 20.0, 80.0])
    base = 1.0 / np.log(l0 + 1)
    offsets = [0.10, 0.12, 0.08]
    cmp = frontier.compare_at_matched_l0([(l0, base)] * 3,
                                         [(l0, base + off) for off in offsets])
    np.testing.assert_allclose(cmp.seed_means, offsets, atol=1e-12)
    eff = cmp.effect()
    assert eff.method == "paired t" and eff.n == 3
    assert eff.mean == pytest.approx(0.10)
    assert eff.se == pytest.approx(np.std(offsets, ddof=1) / np.sqrt(3))
    assert cmp.effect(sign=-1).mean == pytest.approx(-0.10)
    disjoint = frontier.compare_at_matched_l0([([1.0, 2.0], [0.1, 0.2])] * 3,
                                              [([10.0, 20.0], [0.1, 0.2])] * 3)
    assert np.isnan(disjoint.seed_means).all() and disjoint.effect() is None
    assert frontier.seed_effect([0.1, np.nan, 0.2]) is None
    assert frontier.seed_effect([]) is None
