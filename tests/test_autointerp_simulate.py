"""interp.autointerp.simulate: the LLM simulator's methods and its option checks."""

import pytest

from autointerp_helpers import OracleLLM
from interp import autointerp as A
from interp.autointerp.backend import Completion, Sampling


@pytest.mark.parametrize("method", ["logprobs", "text"])
def test_llm_simulator_with_an_oracle_llm_scores_perfectly(cat_split, method):
    _, _, s = cat_split
    sim = A.LLMSimulator(OracleLLM(), method=method)
    scores = A.simulation_scores(sim.simulate('the word "cat"', s.score), s.score)
    assert scores["top_and_random"] == pytest.approx(1.0, abs=1e-6)
    assert sim.parse_failures == 0


def test_simulator_rejects_bad_options():
    class TextOnly:
        kind, model = "t", "t"

        def chat(self, messages, sampling):
            return Completion("")

    with pytest.raises(ValueError, match="slot_logprobs"):
        A.LLMSimulator(TextOnly(), method="logprobs")
    with pytest.raises(ValueError, match="method"):
        A.LLMSimulator(TextOnly(), method="psychic")
    assert A.LLMSimulator(TextOnly()).method == "text"
    with pytest.raises(ValueError, match="max_tokens"):
        Sampling(max_tokens=0)
