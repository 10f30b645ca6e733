"""The recipe page's verdicts on synthetic gains with known answers, and its reductions."""

import numpy as np
import pytest

from interp import claims, frontier
from interp.experiments import recipe

CE_MARGIN, DEAD_MARGIN = 0.02, 0.01
FEB = ["||d|| <= 1 + prune", "no pre-encoder bias", "raw inputs", "LR decay"]


def _gain(per_seed):
    return {"effect": frontier.seed_effect(per_seed), "l0_range": [10.0, 40.0],
            "per_seed": list(per_seed)}


def _stack(excess):
    """A stacking grid whose excess (both minus the better single fix) is `excess` per seed."""
    n = len(excess)
    ref = np.full(n, 0.5)
    grid = {(16, 0.9): ref, (16, 0.0): ref - 0.10, (4, 0.9): ref - 0.05,
            (4, 0.0): ref - 0.10 - np.asarray(excess)}
    return recipe.stacking(grid, [16, 4])


def _verdicts(beta_gain, item_gains, reductions, excess):
    gains = {"beta1 = 0.9": {"delta_ce": _gain(beta_gain)}}
    gains.update({n: {"delta_ce": _gain(g)} for n, g in zip(FEB, item_gains)})
    out = recipe.verdicts(gains, FEB, np.asarray(reductions), _stack(excess),
                          delta_ce_margin=CE_MARGIN, dead_fraction_margin=DEAD_MARGIN,
                          widths_d_sae=[576, 1728], stacking_windows=[16, 4])
    return {c.claim_id: c for c in out}


SMALL = [0.001, -0.001, 0.0005]
HURTS = [-0.2, -0.21, -0.19]


def test_planted_effects_reproduce_every_claim():
    v = _verdicts(beta_gain=[0.05, 0.052, 0.049],               # beta1 = 0 slightly better
                  item_gains=[SMALL, HURTS, SMALL, HURTS],     # no item helps
                  reductions=[[0.01, 0.012, 0.011], [0.10, 0.11, 0.105]],
                  excess=[-0.01, -0.012, -0.011])              # no stacking
    assert {k: c.verdict for k, c in v.items()} == {k: "reproduced" for k in v}
    assert [v[k].source for k in ("F-1", "F-2", "F-3", "F-4")] == [
        "replicated", "post", "post", "replicated"]
    assert v["F-3"].effect["rule"] == "none helps" and len(v["F-3"].effect["parts"]) == 4


def test_opposite_effects_refute_every_claim():
    v = _verdicts(beta_gain=[-0.2, -0.21, -0.19],              # beta1 = 0 clearly worse
                  item_gains=[SMALL, SMALL, [0.1, 0.102, 0.098], SMALL],  # one item helps
                  reductions=[[0.10, 0.11, 0.105], [0.01, 0.012, 0.011]],  # shrinks with width
                  excess=[0.05, 0.052, 0.049])                # stacks
    assert {k: c.verdict for k, c in v.items()} == {k: "not reproduced" for k in v}


def test_noise_is_inconclusive():
    noise = [0.05, -0.06, 0.02]
    v = _verdicts(noise, [noise] * 4, [noise, [0.04, -0.05, 0.03]], [0.05, -0.06, 0.02])
    assert {k: c.verdict for k, c in v.items()} == {k: "inconclusive" for k in v}


def test_two_seeds_are_always_inconclusive():
    v = _verdicts([0.05, 0.0501], [HURTS[:2]] * 4, [[0.01, 0.0101], [0.1, 0.1001]],
                  [-0.5, -0.5001])
    assert {c.verdict for c in v.values()} == {"inconclusive"}


def test_a_slight_loss_within_the_margin_is_neutral_for_f2():
    assert _verdicts([-0.005, -0.006, -0.0055], [SMALL] * 4, [[0.0] * 3, [0.1] * 3],
                     [0.0] * 3)["F-2"].verdict == "reproduced"


def test_f3_corrects_for_four_items():
    # one item with unadjusted p ~ 0.03 (a "help" of the old spread rule), Holm across 4: not
    # a reliable help; its CI is too wide to show "no help" either -> inconclusive
    marginal = [0.021, 0.030, 0.0425]
    assert frontier.seed_effect(marginal).ci[0] > 0  # unadjusted it would count as helping
    v = _verdicts(SMALL, [SMALL, SMALL, marginal, SMALL], [[0.0] * 3, [0.1] * 3], [0.0] * 3)
    assert v["F-3"].verdict == "inconclusive"


def test_missing_ingredients_are_named():
    gains = {n: {"delta_ce": _gain([np.nan, 0.1, 0.1])} for n in ["beta1 = 0.9", *FEB]}
    out = recipe.verdicts(gains, FEB, np.array([[0.1, 0.1, 0.1]]), None,
                          delta_ce_margin=CE_MARGIN, dead_fraction_margin=DEAD_MARGIN,
                          widths_d_sae=[576], stacking_windows=[16, 4])
    v = {c.claim_id: c for c in out}
    assert v["F-1"].verdict == "inconclusive" and "one width" in v["F-1"].reason
    assert v["F-2"].verdict == "inconclusive" and "L0 range" in v["F-2"].reason
    assert v["F-3"].verdict == "inconclusive" and "raw inputs" in v["F-3"].reason
    assert v["F-4"].verdict == "not tested" and "stacking_check" in v["F-4"].reason


def test_stacking_excess_uses_the_fix_better_on_average():
    grid = {(16, 0.9): np.array([0.5, 0.5]), (16, 0.0): np.array([0.3, 0.45]),   # beta: .2,.05
            (4, 0.9): np.array([0.4, 0.38]), (4, 0.0): np.array([0.25, 0.3])}    # win: .1,.12
    s = recipe.stacking(grid, [16, 4])
    assert s["better_single_fix"] == "beta1 = 0"       # mean 0.125 vs 0.11
    np.testing.assert_allclose(s["stacking_excess"], [0.25 - 0.2, 0.2 - 0.05])


def test_reductions():
    assert recipe.l1_middle([0.002, 0.008]) == pytest.approx(0.004)
    assert recipe.l1_middle([0.002, 0.004, 0.008]) == pytest.approx(0.004)
    np.testing.assert_array_equal(recipe.paired_columns([1, 2, 3, 4], 2), [[1, 2], [3, 4]])
    assert recipe.effect_text(None) == "no L0 overlap"
    text = recipe.effect_text(frontier.seed_effect([1.0, 2.0, 3.0]))
    # se 1/sqrt(3); MDE = (t_{0.975, 2} + t_{0.8, 2}) se = (4.303 + 1.061) / sqrt(3) = 3.1
    assert text.startswith("+2 [") and text.endswith(", MDE 3.1")


@pytest.fixture(autouse=True)
def _no_claims_file(monkeypatch):
    monkeypatch.delenv(claims.CLAIMS_FILE_ENV, raising=False)


def test_dead_fraction_is_counted_at_one_window_for_every_run():
    since = np.array([[0, 3, 5, 20], [4, 4, 30, 1]])
    np.testing.assert_allclose(recipe.dead_fraction_at(since, 4), [0.5, 0.75])
    np.testing.assert_allclose(recipe.dead_fraction_at(since, 16), [0.25, 0.25])


def test_f4_with_nothing_to_stack_is_inconclusive_not_vacuously_reproduced():
    n = 3
    ref = np.full(n, 0.004)  # below the 0.01 margin: no excess could ever reach it
    grid = {(16, 0.9): ref, (16, 0.0): ref - 0.002, (4, 0.9): ref - 0.001, (4, 0.0): ref - 0.002}
    claim = recipe.verdict_f4(recipe.stacking(grid, [16, 4]), DEAD_MARGIN, [16, 4])
    assert claim.verdict == "inconclusive" and "nothing to stack" in claim.reason
