"""interp.experiments.steering: the layer rule, per-prompt reductions and the S1..S7 rules (with
the S7 gate) on synthetic results."""

import dataclasses
import types

import numpy as np
import pytest

from interp import claims
from interp.experiments import steering as exp
from interp.steering import sweep, teacher_forced

COEFFS = (1.0, 2.0, 4.0)


def result(variant, coeff, effect, cost=None):
    """A teacher-forced point whose wedding and anger effects are both `effect` per prompt."""
    effect = np.asarray(effect, float)
    cost = coeff / 10 if cost is None else cost
    return teacher_forced.Measured(variant, coeff, cost, 0.0, np.stack([effect, effect], 1),
                                   ("wedding", "anger"))


def curve_results(offsets: dict, n_prompts: int, noise=0.0, seed=0):
    """An unsteered point and, per variant, effect = coeff + offset (+ per-prompt noise) on each
    prompt, all at cost coeff / 10 (so matched comparisons pair equal coefficients)."""
    rng = np.random.default_rng(seed)
    base = rng.normal(size=n_prompts)  # prompt difficulty, shared by every variant (paired)
    out = [result("unsteered", 0.0, base)]
    for v, off in offsets.items():
        for c in COEFFS:
            noisy = noise * rng.normal(size=n_prompts)
            out.append(result(v, c, base + c + np.asarray(off) + noisy))
    return out


def steering_results(n_prompts=6, recon=0.0, single=0.0, handpicked=-1.0, pruned=0.0,
                     concept=None, anger_feature=7, drops=None, is_wedding=(True, False)):
    offsets = {"orig": 0.0, "recon": recon, "handpicked": handpicked, "pruned": pruned}
    wedding = curve_results(offsets, n_prompts, seed=1)
    anger = curve_results({"orig": 0.0, "recon": 0.0, "single": single}, n_prompts, seed=2)
    drops = np.zeros((len(is_wedding), n_prompts)) if drops is None else np.asarray(drops)
    base = result("orig", 4.0, np.full(n_prompts, 5.0))
    ablated = [result("ablate", 4.0, 5.0 - d) for d in drops]
    feats = list(range(100, 100 + len(is_wedding)))
    concept = concept if concept is not None else {
        "anger": [7], "wedding": [f for f, w in zip(feats, is_wedding) if w]}
    return exp.SteeringResults(
        layer=6, tops={"anger": [7, 8, 9, 10], "wedding": [100, 101, 102, 103]}, concept=concept,
        anger=anger, wedding=wedding, importance_features=feats, importance_base=base,
        importance_ablated=ablated, importance_is_wedding=list(is_wedding),
        anger_feature=anger_feature, handpicked=concept["wedding"],
        irrelevant=[f for f in [100, 101, 102, 103] if f not in concept["wedding"]],
        error_fraction={"wedding": 0.3})


def by_id(records):
    return {r.claim_id: r for r in records}


def test_planted_effects_are_reproduced():
    r = steering_results(recon=-1.0, single=1.0, pruned=1.0,
                         drops=[[0.0] * 6, [2.0, 2.1, 1.9, 2.2, 1.8, 2.0]])
    got = by_id(exp.verdicts(r, min_concept_share=0.1))
    for cid in ("S2", "S3", "S4", "S5", "S6", "S7"):
        assert got[cid].verdict == "reproduced", (cid, got[cid])
    assert got["S3"].effect["mean"] == pytest.approx(-1.0, abs=1e-9)
    assert got["S3"].effect["method"] == "bootstrap over items" and got["S3"].effect["n"] == 6
    assert {got[c].source for c in ("S1", "S2", "S3")} == {"post"}
    assert {got[c].source for c in ("S4", "S5", "S6", "S7")} == {"exploratory"}


def test_opposite_effects_are_not_reproduced():
    r = steering_results(recon=1.0, single=-1.0, handpicked=1.0, pruned=-1.0,
                         drops=[[2.0, 2.1, 1.9, 2.2, 1.8, 2.0], [0.0] * 6])
    got = by_id(exp.verdicts(r, min_concept_share=0.9))
    for cid in ("S1", "S2", "S3", "S4", "S5", "S6"):
        assert got[cid].verdict == "not reproduced", (cid, got[cid])


def test_null_effects_are_inconclusive():
    n = 8
    flip = np.array([1.0, -1.0] * (n // 2))  # per-prompt differences of mean exactly 0
    r = steering_results(n_prompts=n, recon=0.5 * flip, single=0.5 * flip, handpicked=0.5 * flip,
                         pruned=0.5 * flip, drops=[[0.0] * n, 0.5 * flip])
    got = by_id(exp.verdicts(r, min_concept_share=0.5))  # share of concept items: exactly 0.5
    for cid in ("S2", "S3", "S4", "S5", "S6"):
        assert got[cid].verdict == "inconclusive", (cid, got[cid])
        assert got[cid].effect["mean"] == pytest.approx(0.0, abs=1e-9)


def test_fewer_than_three_prompts_is_inconclusive():
    r = steering_results(n_prompts=2, recon=-5.0, single=5.0, pruned=5.0,
                         drops=[[0.0, 0.0], [3.0, 3.0]])
    got = by_id(exp.verdicts(r, min_concept_share=0.1))
    for cid in ("S2", "S3", "S5", "S6", "S7"):
        assert got[cid].verdict == "inconclusive", (cid, got[cid])
        assert got[cid].effect["n"] == 2


def test_no_concept_feature_means_not_tested_not_a_fallback():
    r = steering_results(concept={"anger": [], "wedding": []}, anger_feature=None,
                         is_wedding=(False, False))
    got = by_id(exp.verdicts(r, min_concept_share=0.25))
    for cid in ("S2", "S4", "S5", "S6"):
        assert got[cid].verdict == "not tested" and got[cid].reason, cid
    assert "anger-labelled" in got["S2"].reason
    assert got["S1"].verdict == "inconclusive"  # 0 of 8: the exact upper bound 0.37 > 25%
    assert got["S3"].verdict != "not tested" and got["S7"].verdict == "reproduced"


def test_no_matched_cost_means_not_tested():
    r = steering_results(recon=-1.0)
    r.wedding = [dataclasses.replace(x, delta_ce=x.delta_ce + 10.0) if x.variant == "recon" else x
                 for x in r.wedding]  # recon's costs all beyond the orig curve's range
    got = by_id(exp.verdicts(r, min_concept_share=0.25))
    assert got["S3"].verdict == "not tested" and "delta-CE range" in got["S3"].reason
    assert got["S3"].numbers["matched points"] == 0


def test_s1_share_of_concept_labelled_top_features():
    r = steering_results(concept={"anger": [7, 8, 9, 10], "wedding": [100, 101, 102, 103]})
    np.testing.assert_array_equal(exp.concept_share_items(r.tops, r.concept), np.ones(8))
    got = exp.verdicts(r, min_concept_share=0.5)[0]
    assert got.claim_id == "S1" and got.verdict == "reproduced" and got.rule == "threshold"
    assert got.effect["threshold"] == 0.5


def test_matched_comparison_pairs_prompts():
    ref = {"cost": np.array([0.0, 1.0, 2.0]), "effect": np.array([[0.0, 1.0], [1.0, 2.0],
                                                                  [2.0, 3.0]])}
    a = {"cost": np.array([0.5, 1.5, 3.0]), "effect": np.array([[1.5, 1.5], [2.5, 2.5],
                                                                [9.0, 9.0]])}
    out = sweep.matched_comparison(a, ref)
    assert out["n_matched"] == 2  # cost 3.0 is outside the reference's range
    # prompt 0: ref at 0.5, 1.5 = 0.5, 1.5 -> +1; prompt 1: 1.5, 2.5 -> 0
    np.testing.assert_allclose(out["per_prompt"], [1.0, 0.0], atol=1e-12)
    with pytest.raises(ValueError, match="same prompts"):
        sweep.matched_comparison({**a, "effect": a["effect"][:, :1]}, ref)


def test_gain_over_unsteered_averages_the_sweep_per_prompt():
    rs = [result("unsteered", 0.0, [1.0, 0.0, 2.0]), result("orig", 1.0, [2.0, 0.0, 2.0]),
          result("orig", 2.0, [4.0, 2.0, 2.0])]
    np.testing.assert_allclose(exp.gain_over_unsteered(rs, "wedding"), [2.0, 1.0, 0.0], atol=1e-12)
    with pytest.raises(ValueError, match="unsteered"):
        exp.gain_over_unsteered(rs[1:], "wedding")


def test_ablation_drops_and_group_gap():
    base = result("orig", 4.0, [3.0, 3.0, 3.0])
    abl = [result("a", 4.0, [2.0, 3.0, 1.0]), result("b", 4.0, [3.0, 0.0, 3.0]),
           result("c", 4.0, [1.0, 3.0, 3.0])]
    drops = exp.ablation_drops(base, abl, "wedding")
    np.testing.assert_allclose(drops, [[1, 0, 2], [0, 3, 0], [2, 0, 0]], atol=1e-12)
    np.testing.assert_allclose(exp.top_group_gap(drops, [True, False, False]), [1, 3, -2])
    assert exp.top_group_gap(drops, [False] * 3) is None
    rows = exp.ranking_rows([5, 6, 7], drops, [True, False, False], {5: "wed"})
    assert [r["feature"] for r in rows] == [5, 6, 7]  # mean drops 1, 1, 2/3 (stable order)
    assert rows[0]["label"] == "wed" and rows[0]["drop se"] > 0


def test_concept_labels_and_feature_choices():
    card = {1: types.SimpleNamespace(lens=[" bride"], top_tokens=["x"]),
            2: types.SimpleNamespace(lens=["the"], top_tokens=[" of"]),
            3: types.SimpleNamespace(lens=["a"], top_tokens=[" Wedding "])}
    concept = exp.concept_features([2, 3, 1], card, "wedding")
    assert concept == [3, 1]
    assert exp.single_feature([2, 1, 3], concept) == 1
    assert exp.single_feature([2], concept) is None
    assert exp.irrelevant_features([2, 3, 1], concept) == [2]


def test_verdicts_are_recorded(tmp_path, monkeypatch):
    path = tmp_path / "claims.jsonl"
    monkeypatch.setenv(claims.CLAIMS_FILE_ENV, str(path))
    exp.verdicts(steering_results(), min_concept_share=0.25)
    ids = [line.split('"claim_id": "')[1].split('"')[0] for line in path.read_text().splitlines()]
    assert ids == ["S1", "S2", "S3", "S4", "S5", "S6", "S7"]


def test_a_vector_that_does_not_steer_makes_every_other_claim_inconclusive():
    r = steering_results(recon=-1.0, single=1.0, pruned=1.0,
                         drops=[[0.0] * 6, [2.0, 2.1, 1.9, 2.2, 1.8, 2.0]])
    flat = [result(x.variant, x.coeff, x.of("wedding") - (x.coeff if x.variant == "orig" else 0.0))
            for x in r.wedding]  # orig's gain is 0 on every prompt
    r.wedding = flat
    got = by_id(exp.verdicts(r, min_concept_share=0.1))
    assert got["S7"].verdict == "inconclusive"
    for cid in ("S1", "S2", "S3", "S5", "S6"):
        assert got[cid].verdict == "inconclusive", (cid, got[cid])
        assert got[cid].reason.startswith("by rule: the wedding vector does not raise"), cid
        assert got[cid].effect is not None  # the measured effect is still shown
    assert got["S4"].verdict == "inconclusive"


def test_s2_needs_the_anger_vector_itself_to_steer():
    r = steering_results(single=1.0)
    r.anger = [result(x.variant, x.coeff, x.of("anger") - (x.coeff if x.variant == "orig" else 0.0))
               for x in r.anger]
    got = by_id(exp.verdicts(r, min_concept_share=0.1))
    assert got["S2"].verdict == "inconclusive" and "anger vector itself" in got["S2"].reason
    assert got["S7"].verdict == "reproduced"  # the wedding gate is open; only S2 is held
    assert "by rule" not in (got["S3"].reason or "")


def test_choose_layer_takes_the_best_gain_within_the_cost_budget():
    coeffs = [1.0, 2.0, 4.0]
    gains = {3: np.array([[1.0, 1.2], [2.0, 2.2], [9.0, 9.0]]),   # 9 is over budget
             6: np.array([[0.5, 0.5], [2.5, 2.7], [3.0, 3.0]]),
             9: np.array([[5.0, 5.0], [6.0, 6.0], [7.0, 7.0]])}   # nothing within budget
    costs = {3: [0.1, 0.3, 0.9], 6: [0.1, 0.4, 0.5], 9: [0.6, 0.7, 0.8]}
    layer, rows = exp.choose_layer(gains, costs, coeffs, max_delta_ce=0.5)
    assert layer == 6
    by_layer = {r["layer"]: r for r in rows}
    assert by_layer[6]["coeff"] == 4.0 and by_layer[6]["gain"] == pytest.approx(3.0)
    assert by_layer[3]["coeff"] == 2.0 and by_layer[3]["gain"] == pytest.approx(2.1)
    assert np.isnan(by_layer[9]["gain"])
    tie, _ = exp.choose_layer({4: gains[6], 2: gains[6]}, {4: costs[6], 2: costs[6]}, coeffs, 0.5)
    assert tie == 2
    with pytest.raises(ValueError, match="max_delta_ce"):
        exp.choose_layer(gains, costs, coeffs, max_delta_ce=0.05)
    with pytest.raises(ValueError, match="coefficients"):
        exp.choose_layer({3: gains[3]}, {3: costs[3][:2]}, coeffs, 0.5)
