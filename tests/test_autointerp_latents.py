"""interp.autointerp additions for the notebook: latent activations from an SAE, excerpts, the
latent sample, per-source correlations, batched all-at-once simulation, precomputed and extra
explanations in `score_latents`, and the bootstrap statistics claims are decided on."""

import jax.numpy as jnp
import numpy as np
import pytest
from scipy.stats import spearmanr

from autointerp_helpers import OracleLLM, corpus, word_latent
from interp import autointerp as A


# -- latent activations -------------------------------------------------------------------------

def relu_encoder(w, b):
    return lambda x: jnp.maximum(x @ w + b, 0.0)


def test_latent_activations_match_a_direct_encoding_and_count_density():
    rng = np.random.default_rng(0)
    x = rng.normal(size=(10, 9, 4)).astype(np.float32)  # 10 contexts of 9 tokens (BOS first)
    w, b = rng.normal(size=(4, 6)).astype(np.float32), np.float32(-0.5)
    enc = relu_encoder(w, b)
    keep = [5, 0, 3]
    la = A.latent_activations(enc, lambda a, z: x[a:z], 10, latents=keep, chunk=3,
                              progress=False)
    full = np.maximum(x[:, 1:] @ w + b, 0)  # BOS dropped
    np.testing.assert_allclose(la.acts, full[..., keep], rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(la.density, (full > 0).mean((0, 1)), rtol=1e-6)
    assert la.l0 == pytest.approx((full > 0).sum(-1).mean())
    assert la.n_tokens == 80
    on = full > 0
    mean_act = np.where(on.sum((0, 1)) > 0, full.sum((0, 1)) / np.maximum(on.sum((0, 1)), 1), 0)
    np.testing.assert_allclose(la.mean_act, mean_act, rtol=1e-5)
    # float32: the jitted encoder and numpy's matmul sum in another order
    np.testing.assert_allclose(la.column(3), full[..., 3], rtol=1e-5, atol=1e-6)
    np.testing.assert_array_equal(la.column(3), la.acts[..., 2])  # exact: the kept column itself
    with pytest.raises(KeyError, match="latent 1 was not kept"):
        la.column(1)


def test_latent_activations_reject_bad_input():
    x = np.zeros((4, 5, 2), np.float32)
    enc = relu_encoder(np.ones((2, 3), np.float32), np.float32(0))
    with pytest.raises(IndexError, match="latents must lie in 0..2"):
        A.latent_activations(enc, lambda a, z: x[a:z], 4, latents=[3], progress=False)
    with pytest.raises(ValueError, match=r"\[contexts, T, d\]"):
        A.latent_activations(enc, lambda a, z: x[a:z, 0], 4, progress=False)
    with pytest.raises(ValueError, match="NaN"):
        A.latent_activations(lambda v: v @ jnp.ones((2, 3)) * jnp.nan, lambda a, z: x[a:z], 4,
                             progress=False)
    with pytest.raises(ValueError, match="n_contexts"):
        A.latent_activations(enc, lambda a, z: x[a:z], 0, progress=False)


def test_sample_latents_is_seeded_uniform_over_alive_ones():
    density = np.array([0.0, 0.1, 0.0, 0.5, 0.01, 0.2, 0.0, 0.3])
    alive = {1, 3, 4, 5, 7}
    a = A.sample_latents(density, 3, seed=1)
    assert set(a) <= alive and len(a) == 3 and list(a) == sorted(a)
    np.testing.assert_array_equal(a, A.sample_latents(density, 3, seed=1))  # exact: same seed
    assert set(A.sample_latents(density, 99, seed=0)) == alive  # capped at what qualifies
    assert set(A.sample_latents(density, 9, seed=0, max_density=0.2)) == {1, 4, 5}
    counts = np.zeros(8)  # uniform: each alive latent drawn about equally often
    for s in range(400):
        counts[A.sample_latents(density, 1, seed=s)] += 1
    assert counts[[0, 2, 6]].sum() == 0 and counts[list(alive)].min() > 50
    with pytest.raises(ValueError, match="no latent"):
        A.sample_latents(density, 2, seed=0, min_density=0.9)


def test_excerpts_are_non_overlapping_aligned_windows():
    ids = np.arange(2 * 10).reshape(2, 10)
    acts = np.stack([ids * 1.0, -ids * 1.0], axis=-1)  # [2, 10, 2]
    a, t = A.excerpts(acts, ids, 4)
    assert t.tolist() == [[0, 1, 2, 3], [4, 5, 6, 7], [10, 11, 12, 13], [14, 15, 16, 17]]
    np.testing.assert_array_equal(a[..., 0], t)  # exact: windows are copies of exact integers
    np.testing.assert_array_equal(a[..., 1], -t)
    np.testing.assert_array_equal(A.context_frequency(np.maximum(a, 0) * (t[..., None] > 13)),
                                  [0.25, 0.0])
    with pytest.raises(ValueError, match="width"):
        A.excerpts(acts, ids, 11)
    with pytest.raises(ValueError, match="share"):
        A.excerpts(acts[:, :9], ids, 3)


# -- scoring by source and the pipeline's additions ---------------------------------------------

def test_correlation_by_source_groups_records():
    recs = [A.Record(("a", "b", "c"), [0, 1, 2], "top"),
            A.Record(("a", "b", "c"), [2, 1, 0], "top"),
            A.Record(("d", "e"), [0, 1], "quantile"), A.Record(("f", "g"), [0, 0], "random")]
    sims = [np.array([0, 1, 2]), np.array([2, 1, 0]), np.array([1, 0]), np.array([0, 1])]
    got = A.correlation_by_source(sims, recs)
    assert got["top_only"] == pytest.approx(1.0)
    assert got["quantile"] == pytest.approx(-1.0)
    below = A.pearson([1, 0, 0, 1], [0, 1, 0, 0])
    assert got["below_top"] == pytest.approx(below)
    assert np.isnan(A.correlation_by_source(sims[:2], recs[:2])["quantile"])  # empty group
    with pytest.raises(ValueError, match="simulations for"):
        A.correlation_by_source(sims[:3], recs)


def test_score_latents_with_given_and_extra_explanations_and_chosen_baselines():
    toks = corpus(t=16, seed=2)
    words = [" cat", " tree", " car"]
    examples = [A.select_examples(word_latent(toks, w), toks, latent=i, n_top=15, n_random=10)
                for i, w in enumerate(words)]
    right = [f'the tokens "{w.strip()}"' for w in words]
    wrong = [right[1], right[2], right[0]]
    rows = A.score_latents(examples, None, A.LexicalSimulator(), explanations=wrong,
                           extra_explanations={"oracle": right}, baseline_kinds=["random"],
                           progress=False)
    assert [r["kind"] for r in rows] == ["explanation", "oracle", "random"] * 3
    for r in rows:
        assert {"sim_top_only", "sim_quantile", "sim_below_top"} <= set(r)
        if r["kind"] == "oracle":
            assert r["sim_top_and_random"] == pytest.approx(1.0)
            assert r["sim_top_only"] == pytest.approx(1.0)
        if r["kind"] == "explanation":
            assert np.nan_to_num(r["sim_top_and_random"]) < 0.2
    with pytest.raises(ValueError, match="unknown baseline kinds"):
        A.score_latents(examples, None, A.LexicalSimulator(), explanations=right,
                        baseline_kinds=["shuffled"], progress=False)
    with pytest.raises(ValueError, match="2 explanations for 3 latents"):
        A.score_latents(examples, None, A.LexicalSimulator(), explanations=right[:2],
                        progress=False)


# -- batched all-at-once simulation ----------------------------------------------------------------

def test_batch_transcript_has_one_slot_per_token_of_every_record():
    recs = [A.Record((" the", " cat"), [0, 1]), A.Record(("\tx", " y", " z"), [0, 0, 2], "random")]
    msgs, segs = A.simulation_transcript_batch("cats", recs)
    assert len(segs) == 5
    assert segs[0] == "Text 1:\n the\t" and segs[1] == "0\n cat\t"
    assert segs[2] == "0\n\nText 2:\n\\tx\t"  # tokens escaped, records numbered
    assert "Text 1: ' the cat'" in msgs[-1].content and "Text 2: '\\tx y z'" in msgs[-1].content
    assert msgs[-1].content.startswith("Feature: the main thing this feature does is find cats.")
    with pytest.raises(ValueError, match="at least one record"):
        A.simulation_transcript_batch("cats", [])


def test_batched_simulator_with_an_oracle_llm_scores_perfectly_in_one_call():
    toks = corpus(seed=1)
    ex = A.select_examples(word_latent(toks, " cat"), toks, latent=0)
    s = A.split(ex)

    class Counting(OracleLLM):
        def slot_logprobs(self, messages, segments, choices):
            self.calls += 1
            return super().slot_logprobs(messages, segments, choices)

    llm = Counting()
    sim = A.LLMSimulator(llm, batch_records=True)
    preds = sim.simulate('the word "cat"', s.score)
    assert llm.calls == 1 and [len(p) for p in preds] == [len(r.tokens) for r in s.score]
    assert A.simulation_scores(preds, s.score)["top_and_random"] == pytest.approx(1.0, abs=1e-6)
    with pytest.raises(ValueError, match="batch_records needs the logprobs readout"):
        A.LLMSimulator(llm, method="text", batch_records=True)


# -- statistics -----------------------------------------------------------------------------------

def test_paired_difference_recovers_a_known_shift_and_drops_nan_pairs():
    rng = np.random.default_rng(0)
    b = rng.normal(size=400)
    a = b + 0.3 + rng.normal(scale=0.1, size=400)
    a[:5] = np.nan
    got = A.paired_difference(a, b, n_boot=500, seed=1)
    assert got["n"] == 395
    assert got["lo"] < 0.3 < got["hi"] and got["mean_diff"] == pytest.approx(0.3, abs=0.02)
    # the 95% half-width is about 1.96 standard errors of the mean difference
    assert got["half_width"] == pytest.approx(1.96 * 0.1 / np.sqrt(395), rel=0.25)
    assert got == A.paired_difference(a, b, n_boot=500, seed=1)
    assert np.isnan(A.paired_difference([1.0], [0.0])["half_width"])
    with pytest.raises(ValueError, match="equal lengths"):
        A.paired_difference([1, 2], [1])


def test_spearman_matches_scipy_and_its_interval_covers_it():
    rng = np.random.default_rng(3)
    x = rng.normal(size=60)
    y = np.round(x + rng.normal(size=60), 1)  # ties
    assert A.spearman(x, y) == pytest.approx(spearmanr(x, y).statistic)
    assert A.spearman(x, -np.exp(x)) == pytest.approx(-1.0)
    iv = A.spearman_interval(x, y, n_boot=300, seed=0)
    assert iv["lo"] < iv["rho"] < iv["hi"] and iv["n"] == 60
    assert np.isnan(A.spearman([1, 2], [3, 4]))
    assert np.isnan(A.spearman([1, 1, 1], [1, 2, 3]))



def test_fill_constant_predictions_zeros_only_where_the_truth_varies():
    got = A.fill_constant_predictions({"explanation": [0.8, np.nan, np.nan, 0.5],
                                       "random": [np.nan, np.nan, 0.1, -0.2]})
    # exact: values are copied through or written as constants
    np.testing.assert_array_equal(got["explanation"], [0.8, np.nan, 0.0, 0.5])
    np.testing.assert_array_equal(got["random"], [0.0, np.nan, 0.1, -0.2])
    with pytest.raises(ValueError, match="differ in length"):
        A.fill_constant_predictions({"a": [1.0], "b": [1.0, 2.0]})


def test_a_random_explanation_naming_absent_tokens_scores_nan_then_zero():
    """End to end: the lexical simulator predicts all zeros for absent tokens (NaN correlation);
    filled against the finite right explanation, that is a score of 0."""
    toks = corpus(t=16, seed=4)
    ex = A.select_examples(word_latent(toks, " cat"), toks, latent=0, n_top=15)
    rows = A.score_latents([ex], None, A.LexicalSimulator(), explanations=['the tokens "cat"'],
                           extra_explanations={"absent": ['the tokens "zebra"']},
                           baselines=False, progress=False)
    right, absent = rows[0]["sim_top_and_random"], rows[1]["sim_top_and_random"]
    assert right == pytest.approx(1.0) and np.isnan(absent)
    filled = A.fill_constant_predictions({"right": [right], "absent": [absent]})
    assert filled["absent"][0] == 0.0 and filled["right"][0] == pytest.approx(1.0)


def test_rank_products_average_to_spearman_and_vanish_for_a_constant():
    from interp.autointerp.stats import rank_products
    rng = np.random.default_rng(4)
    x = rng.normal(size=50)
    y = np.round(x + rng.normal(size=50), 1)  # ties
    y[:3] = np.nan  # dropped pairs
    assert rank_products(x, y).mean() == pytest.approx(spearmanr(x[3:], y[3:]).statistic)
    assert len(rank_products(x, y)) == 47
    np.testing.assert_array_equal(rank_products([1.0, 2.0, 3.0], [5.0, 5.0, 5.0]), [0, 0, 0])
