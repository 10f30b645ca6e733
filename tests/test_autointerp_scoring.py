"""interp.autointerp.scoring: metrics, simulation scores, detection/fuzzing items and judges."""

import numpy as np
import pytest
from sklearn.metrics import balanced_accuracy_score, roc_auc_score

from autointerp_helpers import OracleLLM
from interp import autointerp as A


class OracleSimulator:
    """Knows the true activations (through the record itself): the ceiling of every score."""

    def simulate(self, explanation, records):
        return [r.acts.copy() for r in records]


class OracleJudge:
    def judge(self, explanation, items):
        return np.array([float(i.label) for i in items])


class CoinJudge:
    def __init__(self, seed):
        self.rng = np.random.default_rng(seed)

    def judge(self, explanation, items):
        return self.rng.uniform(size=len(items))


def test_classification_metrics_match_sklearn():
    rng = np.random.default_rng(0)
    y = rng.uniform(size=200) < 0.3
    p = np.round(rng.uniform(size=200), 1)  # with ties
    assert A.auroc(y, p) == pytest.approx(roc_auc_score(y, p))
    assert A.balanced_accuracy(y, p > 0.5) == pytest.approx(balanced_accuracy_score(y, p > 0.5))
    assert A.pearson([1, 2, 3], [2, 4, 7]) == pytest.approx(np.corrcoef([1, 2, 3], [2, 4, 7])[0, 1])
    assert np.isnan(A.pearson([1, 1, 1], [1, 2, 3]))
    with pytest.raises(ValueError, match="both"):
        A.balanced_accuracy([True, True], [True, False])


def test_oracle_scores_perfectly(cat_split):
    _, _, s = cat_split
    sims = OracleSimulator().simulate("anything", s.score)
    assert A.simulation_scores(sims, s.score) == pytest.approx(
        {"top_and_random": 1.0, "top": 1.0, "random": 1.0})
    det, fuzz = A.detection_items(s.score), A.fuzzing_items(s.score)
    assert {i.label for i in det} == {True, False} and {i.label for i in fuzz} == {True, False}
    for items in (det, fuzz):
        assert A.score_items(OracleJudge(), "x", items) == pytest.approx(
            {"balanced_accuracy": 1.0, "auroc": 1.0, "n": len(items)})


def test_random_explanations_and_judges_score_at_chance(cat_split):
    toks, ex, s = cat_split
    pool = [A.Record(t, np.zeros(len(t)), "random") for t in toks]
    sims, dets, fuzzes = [], [], []
    for seed in range(40):
        expl = A.random_explanation(pool, k=2, seed=seed)
        row = A.score_explanation(expl, s.score, A.LexicalSimulator(), A.LexicalJudge(), seed=seed)
        if "cat" not in expl:
            sims.append(row["sim_top_and_random"])
            dets.append(row["detection_balanced_accuracy"])
            fuzzes.append(row["fuzzing_balanced_accuracy"])
        coin = A.score_items(CoinJudge(seed), "x", A.detection_items(s.score))
        dets.append(coin["auroc"])
    sims = np.nan_to_num(sims)  # a random explanation naming no token of the text is constant
    assert abs(np.mean(sims)) < 0.1
    assert np.mean(dets) == pytest.approx(0.5, abs=0.06)
    assert np.mean(fuzzes) == pytest.approx(0.5, abs=0.06)


def test_fuzzing_items_mark_as_many_wrong_tokens(cat_split):
    _, _, s = cat_split
    items = A.fuzzing_items(s.score, seed=3)
    for good, bad in zip(items[::2], items[1::2]):
        assert good.label and not bad.label and good.record is bad.record
        assert sum(good.marked) == sum(bad.marked)
        assert not any(b and a > 0 for b, a in zip(bad.marked, bad.record.acts))


@pytest.mark.parametrize("use_logprobs", [True, False])
def test_llm_judge_with_an_oracle_llm_scores_perfectly(cat_split, use_logprobs):
    _, _, s = cat_split
    judge = A.LLMJudge(OracleLLM(), use_logprobs=use_logprobs)
    for items in (A.detection_items(s.score), A.fuzzing_items(s.score)):
        got = A.score_items(judge, 'the word "cat"', items)
        assert got["balanced_accuracy"] == 1.0 and got["auroc"] == 1.0
    assert judge.unparsed == 0
