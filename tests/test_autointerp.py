"""interp.autointerp: records, prompts, parsers and scorers (no LLM; see test_autointerp_backends).

Synthetic latents fire on one word of random text, so the right explanation is known: an oracle
explanation / simulator / judge must score perfectly, and random ones at chance.
"""

import json
import re

import numpy as np
import pytest
from sklearn.metrics import balanced_accuracy_score, roc_auc_score

from interp import autointerp as A
from interp.autointerp.backend import Completion, Sampling, TokenLogprob

WORDS = [" the", " a", " cat", " dog", " sat", " ran", " on", " mat", " house", " red", " blue",
         " big", " small", " tree", " car", " and", " of", " to", " in", " is"]


def corpus(n=200, t=32, seed=0):
    rng = np.random.default_rng(seed)
    return [[WORDS[i] for i in rng.integers(0, len(WORDS), t)] for _ in range(n)]


def word_latent(tokens, word, *, graded=False, seed=0):
    """Activation 3.0 (or graded, in [1, 5]) on `word`, 0 elsewhere."""
    rng = np.random.default_rng(seed)
    acts = np.array([[1.0 if t == word else 0.0 for t in row] for row in tokens])
    return acts * (rng.uniform(1, 5, acts.shape) if graded else 3.0)


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


# -- records -----------------------------------------------------------------------------------

def test_discretise_follows_bills_normalisation():
    a = np.array([-1.0, 0.0, 0.99, 1.0, 5.0, 9.99, 10.0])
    assert A.discretise(a, 10.0).tolist() == [0, 0, 0, 1, 5, 9, 10]
    assert A.discretise(a, 10.0, scale=9).tolist() == [0, 0, 0, 0, 4, 8, 9]
    assert A.discretise(a, 0.0).tolist() == [0] * 7


def test_record_validates():
    with pytest.raises(ValueError, match="2 tokens"):
        A.Record(("a", "b"), [1.0])
    with pytest.raises(ValueError, match="NaN"):
        A.Record(("a",), [np.nan])
    with pytest.raises(ValueError, match="source"):
        A.Record(("a",), [1.0], source="best")


def test_select_examples_groups_are_disjoint_sorted_and_seeded():
    toks = corpus()
    acts = word_latent(toks, " cat", graded=True)
    ex = A.select_examples(acts, toks, latent=3, n_top=20, n_quantiles=4, per_quantile=2,
                           n_random=10, seed=1)
    peaks = [r.max_act for r in ex.top]
    assert len(ex.top) == 20 and peaks == sorted(peaks, reverse=True)
    assert peaks[0] == pytest.approx(acts.max()) and ex.max_act == pytest.approx(acts.max())
    assert 4 <= len(ex.quantile) <= 8 and len(ex.random) == 10
    q = sorted(r.max_act for r in ex.quantile)
    assert q[-1] <= peaks[-1] and q[0] < q[-1] - 1.0  # spread over the intervals, below the top
    texts = [r.text for r in (*ex.top, *ex.quantile, *ex.random)]
    assert len(set(texts)) == len(texts)  # disjoint (random texts are distinct with p ~ 1)
    assert ex.frequency == pytest.approx(np.mean(acts > 0))
    again = A.select_examples(acts, toks, latent=3, n_top=20, n_quantiles=4, per_quantile=2,
                              n_random=10, seed=1)
    assert [r.text for r in again.random] == [r.text for r in ex.random]
    other = A.select_examples(acts, toks, latent=3, n_top=20, seed=2)
    assert [r.text for r in other.random] != [r.text for r in ex.random]
    with pytest.raises(ValueError, match="one string per activation"):
        A.select_examples(acts[:, :5], toks)


def test_split_holds_out_the_explained_records():
    toks = corpus()
    ex = A.select_examples(word_latent(toks, " cat"), toks, n_top=12, n_random=6)
    s = A.split(ex, n_explain=5, n_score_top=5, n_score_random=4, seed=0)
    assert len(s.explain) == 5 and all(r.source == "top" for r in s.explain)
    shown = {id(r) for r in s.explain}
    assert not any(id(r) in shown for r in s.score)
    assert len(s.by_source("top")) == 5 and len(s.by_source("random")) == 4
    few = A.select_examples(word_latent(toks, " cat"), toks, n_top=3)
    with pytest.raises(ValueError, match="need at least 6"):
        A.split(few, n_explain=5)


# -- prompts and parsers -----------------------------------------------------------------------

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


# -- scorers -----------------------------------------------------------------------------------

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


@pytest.fixture(scope="module")
def cat_split():
    toks = corpus(seed=1)
    ex = A.select_examples(word_latent(toks, " cat"), toks, latent=0, n_top=20, n_random=10)
    return toks, ex, A.split(ex, n_explain=5, n_score_top=10, n_score_random=10)


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


def test_rule_based_pair_explains_a_lexical_latent_perfectly(cat_split):
    _, ex, s = cat_split
    expl = A.TopTokensExplainer(k=1).explain(s.explain)
    assert expl == 'the tokens "cat"'
    row = A.score_explanation(expl, s.score, A.LexicalSimulator(), A.LexicalJudge())
    assert row["sim_top_and_random"] == pytest.approx(1.0)
    assert row["detection_balanced_accuracy"] == 1.0 and row["fuzzing_auroc"] == 1.0


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


def test_other_latent_baseline_is_a_derangement():
    ex = [f"e{i}" for i in range(7)]
    for seed in range(5):
        out = A.other_latent_explanations(ex, seed)
        assert sorted(out) == sorted(ex) and all(a != b for a, b in zip(out, ex))
    with pytest.raises(ValueError):
        A.other_latent_explanations(["one"])


def test_score_latents_rows_and_baseline_floor():
    toks = corpus(t=16, seed=2)  # short contexts: some random ones lack the word
    words = [" cat", " tree", " car"]
    examples = [A.select_examples(word_latent(toks, w), toks, latent=i, n_top=15, n_random=10)
                for i, w in enumerate(words)]
    rows = A.score_latents(examples, A.TopTokensExplainer(k=1), A.LexicalSimulator(),
                           A.LexicalJudge(), progress=False)
    assert len(rows) == 9 and {r["kind"] for r in rows} == {"explanation", "random", "other_latent"}
    for r in rows:
        if r["kind"] == "explanation":
            assert r["sim_top_and_random"] == pytest.approx(1.0)
            assert r["detection_balanced_accuracy"] == 1.0
        elif f'"{words[r["latent"]].strip()}"' not in r["explanation"]:  # baselines: ~chance
            assert np.nan_to_num(r["sim_top_and_random"]) < 0.2
            assert r["detection_balanced_accuracy"] < 0.8


# -- LLM roles, driven by a deterministic oracle "LLM" -----------------------------------------

class OracleLLM:
    """A backend that behaves like a perfect simulator/judge for word-latents: it reads the
    quoted word from the explanation in the prompt. Exercises the LLM roles' plumbing."""

    kind, model = "oracle", "oracle-1"

    def __init__(self):
        self.calls = 0

    @staticmethod
    def _word(messages):
        return re.findall(r'"([^"]+)"', messages[-1].content)[0]

    def chat(self, messages, sampling):
        self.calls += 1
        word, text = self._word(messages), messages[-1].content
        if "JSON list" in text:
            toks = [ln.split("\t", 1)[1] for ln in text.splitlines() if "\t" in ln]
            return Completion(json.dumps([10 if t.strip() == word else 0 for t in toks]))
        if "marked <<like this>>" in text:
            shown = text.split("marked <<like this>>:", 1)[1]
            marked = [m.strip() for m in re.findall(r"<<(.*?)>>", shown)]
            yes = bool(marked) and all(m == word for m in marked)
        else:
            yes = f" {word}" in text.split("Text:", 1)[1]
        tok = "yes" if yes else "no"
        lp = TokenLogprob(tok, -0.1, {tok: -0.1, ("no" if yes else "yes"): -2.5})
        return Completion(tok, logprobs=(lp,) if sampling.top_logprobs else None)

    def slot_logprobs(self, messages, segments, choices):
        word = self._word(messages)
        out = np.full((len(segments), len(choices)), -20.0)
        for i, seg in enumerate(segments):
            tok = seg.split("\n")[-1].rstrip("\t").strip()
            out[i, -1 if tok == word else 0] = 0.0
        return out


@pytest.mark.parametrize("method", ["logprobs", "text"])
def test_llm_simulator_with_an_oracle_llm_scores_perfectly(cat_split, method):
    _, _, s = cat_split
    sim = A.LLMSimulator(OracleLLM(), method=method)
    scores = A.simulation_scores(sim.simulate('the word "cat"', s.score), s.score)
    assert scores["top_and_random"] == pytest.approx(1.0, abs=1e-6)
    assert sim.parse_failures == 0


@pytest.mark.parametrize("use_logprobs", [True, False])
def test_llm_judge_with_an_oracle_llm_scores_perfectly(cat_split, use_logprobs):
    _, _, s = cat_split
    judge = A.LLMJudge(OracleLLM(), use_logprobs=use_logprobs)
    for items in (A.detection_items(s.score), A.fuzzing_items(s.score)):
        got = A.score_items(judge, 'the word "cat"', items)
        assert got["balanced_accuracy"] == 1.0 and got["auroc"] == 1.0
    assert judge.unparsed == 0


def test_llm_explainer_parses_the_reply(cat_split):
    class Fixed:
        kind, model = "fixed", "f"

        def chat(self, messages, sampling):
            assert messages[-1].content.count("<start>") >= 5
            return Completion('the main thing this feature does is find the word "cat".\nBye')

    _, ex, s = cat_split
    assert A.LLMExplainer(Fixed()).explain(s.explain, ex.max_act) == 'the word "cat"'


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


def test_pipeline_over_http_replays_from_transcripts_without_the_backend(tmp_path):
    """Record a full run against a loopback server, stop the server, replay offline: same rows."""
    toks = corpus(t=16, seed=4)
    examples = [A.select_examples(word_latent(toks, w), toks, latent=i, n_top=10, n_random=6)
                for i, w in enumerate([" cat", " tree"])]

    def run(backend):
        return A.score_latents(examples, A.TopTokensExplainer(k=1), A.LLMSimulator(backend),
                               A.LLMJudge(backend), n_score_top=3, n_score_random=3,
                               baselines=False, progress=False)

    oracle = OracleLLM()
    with A.ChatServer(oracle) as srv:
        online = A.make_backend("openai", model=oracle.model, base_url=srv.base_url,
                                api_key_env=None, cache_dir=tmp_path)
        first = run(online)
    assert online.misses == oracle.calls > 0
    assert all(r["sim_top_and_random"] == pytest.approx(1.0) for r in first)
    replay = A.make_backend("openai", model=oracle.model, base_url=srv.base_url,
                            api_key_env=None, cache_dir=tmp_path, offline=True, max_retries=0)
    assert run(replay) == first
    assert replay.misses == 0 and replay.hits == online.misses


def test_make_backend_validates_and_replays_local_without_loading(tmp_path):
    with pytest.raises(ValueError, match="unknown backend kind 'gpt'"):
        A.make_backend("gpt")
    with pytest.raises(ValueError, match="base_url"):
        A.make_backend("openai", model="m")
    b = A.make_backend("local", cache_dir=tmp_path, offline=True)  # does not load SmolLM2
    assert "not loaded" in repr(b) and A.LLMSimulator(b).method == "logprobs"
    with pytest.raises(A.TranscriptMiss):
        A.complete(b, [A.Message("user", "hi")])
