"""interp.autointerp.pipeline: score_latents rows and baselines, and replay over HTTP."""

import numpy as np
import pytest

from autointerp_helpers import OracleLLM, corpus, word_latent
from interp import autointerp as A


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
