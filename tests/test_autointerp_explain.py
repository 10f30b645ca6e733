"""interp.autointerp.explain: the rule-based and LLM explainers and the baseline explanations."""

import pytest

from interp import autointerp as A
from interp.autointerp.backend import Completion


def test_rule_based_pair_explains_a_lexical_latent_perfectly(cat_split):
    _, ex, s = cat_split
    expl = A.TopTokensExplainer(k=1).explain(s.explain)
    assert expl == 'the tokens "cat"'
    row = A.score_explanation(expl, s.score, A.LexicalSimulator(), A.LexicalJudge())
    assert row["sim_top_and_random"] == pytest.approx(1.0)
    assert row["detection_balanced_accuracy"] == 1.0 and row["fuzzing_auroc"] == 1.0


def test_other_latent_baseline_is_a_derangement():
    ex = [f"e{i}" for i in range(7)]
    for seed in range(5):
        out = A.other_latent_explanations(ex, seed)
        assert sorted(out) == sorted(ex) and all(a != b for a, b in zip(out, ex))
    with pytest.raises(ValueError):
        A.other_latent_explanations(["one"])


def test_llm_explainer_parses_the_reply(cat_split):
    class Fixed:
        kind, model = "fixed", "f"

        def chat(self, messages, sampling):
            assert messages[-1].content.count("<start>") >= 5
            return Completion('the main thing this feature does is find the word "cat".\nBye')

    _, ex, s = cat_split
    assert A.LLMExplainer(Fixed()).explain(s.explain, ex.max_act) == 'the word "cat"'
