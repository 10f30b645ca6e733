"""interp.autointerp.prompts: the explainer, simulation and fuzzing prompts and their parsers."""

import pytest

from interp import autointerp as A


def test_explainer_prompt_lists_tokens_with_levels():
    r1 = A.Record(("Hello", " cat", "\n", "\tx"), [0.0, 4.0, 2.0, 0.0])
    r2 = A.Record((" the", " cat"), [0.0, 2.0])
    msgs = A.explainer_messages([r1, r2], max_act=4.0)
    assert [m.role for m in msgs] == ["system", "user", "assistant", "user"]
    assert "0 to 10" in msgs[0].content
    last = msgs[-1].content
    assert "Hello\t0\n cat\t10\n\\n\t5\n\\tx\t0" in last  # one line per token, escaped
    assert " the\t0\n cat\t5" in last
    assert 'Most active tokens: "cat" (10)\n' in last  # blank tokens are not listed
    assert last.rstrip().endswith(A.prompts.EXPLANATION_PREFIX + " ...")
    # 3/6 tokens active: no zero-filtered repeat; with 1 active in 10 tokens there is one
    assert "zeros left out" not in last
    sparse = A.Record(tuple("abcdefghij"), [0] * 9 + [1.0])
    assert "zeros left out:\n<start>\nj\t10\n<end>" in A.explainer_messages([sparse])[-1].content
    bare = A.explainer_messages([r1], few_shot=False, list_top_tokens=False)
    assert len(bare) == 2 and "Most active" not in bare[-1].content
    with pytest.raises(ValueError):
        A.explainer_messages([])


@pytest.mark.parametrize("reply, expected", [
    ("the word \"cat\".", "the word \"cat\""),
    ("  the main thing this feature does is find mentions of animals.\nMore text",
     "mentions of animals"),
    ("Explanation: numbers in dates", "numbers in dates"),
    ("**Explanation:** \"French words\"", "French words"),
    ("... the main thing this feature does is find ... commas", "commas"),
    ("\n\n", ""),
])
def test_parse_explanation(reply, expected):
    assert A.parse_explanation(reply) == expected


def test_parse_simulation():
    v, ok = A.parse_simulation("Sure: [0, 3, 10, 12, -1]", 5)
    assert ok and v.tolist() == [0, 3, 10, 10, 0]
    v, ok = A.parse_simulation("0 1\n2", 3)  # no list: numbers in order, flagged
    assert not ok and v.tolist() == [0, 1, 2]
    v, ok = A.parse_simulation("[1, 2]", 4)
    assert not ok and v.tolist() == [1, 2, 0, 0]
    v, ok = A.parse_simulation("I cannot", 2)
    assert not ok and v.tolist() == [0, 0]


def test_simulation_transcript_has_one_slot_per_token():
    r = A.Record(("a", " b\n", " c"), [0, 1, 0])
    msgs, segs = A.simulation_transcript("letters", r)
    assert len(segs) == 3 and segs[0] == "a\t" and segs[1] == "0\n b\\n\t"
    assert "".join(segs).count("\t") == 3
    assert "letters" in msgs[-1].content and msgs[-2].role == "assistant"


@pytest.mark.parametrize("reply, expected", [("Yes.", True), (" no, because", False),
                                             ("NO", False), ("maybe", None), ("yesterday", None)])
def test_parse_yes_no(reply, expected):
    assert A.parse_yes_no(reply) == expected


def test_fuzzing_prompt_marks_tokens():
    msgs = A.fuzzing_messages("cats", ["a", " cat", " sat"], [False, True, False])
    assert "a<< cat>> sat" in msgs[-1].content
