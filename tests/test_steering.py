"""interp.steering: ActAdd prompt pairs, steered generation, SAE decomposition, metrics."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from interp import models
from interp.models import sampling
from interp.sae import SAEConfig, init_sae
from interp.sae.model import SAE
from interp.steering import actadd, decompose, evaluate, lexicons, sweep, variants


@pytest.fixture(scope="module")
def tiny():
    return models.load("tiny-llama")


@pytest.fixture(scope="module")
def smol():
    return models.load("smollm2-135m", progress=False)


def random_sae(d, m, seed=0):
    return init_sae(jax.random.key(seed), SAEConfig(d_in=d, d_sae=m, architecture="relu"))


GREEDY = {"temperature": 0.0, "frequency_penalty": 0.0}
LOGIT_TIE = 1e-4  # float32 logits of order 1 from two differently compiled programs


def assert_same_greedy_tokens(want, got, next_logits):
    """Greedy continuations `want` and `got` of one prompt, decoded by two differently compiled
    programs, agree token by token; they may part only where the top two logits of
    `next_logits(prefix)` (the reference model after prompt + prefix) tie within rounding."""
    for i, (a, b) in enumerate(zip(want, got)):
        if a != b:
            z = next_logits(list(want[:i]))
            assert abs(z[a] - z[b]) < LOGIT_TIE, f"step {i}: {a} != {b}, logits {z[a]}, {z[b]}"
            return
    assert len(want) == len(got)


def steered_next_logits(model, site, ids, delta):
    """next_logits(prefix) of `model` steered by `delta` [P, d] at `site` (a full forward)."""
    hooks = actadd.steering_hooks(model, site, delta)
    return lambda prefix: np.asarray(model.forward([ids + prefix], hooks=hooks).logits[0, -1])


def test_prompt_pair_pads_shorter_with_space_on_the_right(smol):
    pair = actadd.prompt_pair(smol, "I talk about weddings constantly",
                              "I do not talk about weddings constantly")
    space = smol.tokenizer.encode(" ", add_bos=False)
    assert len(space) == 1
    tok = smol.tokenizer
    minus = tok.encode("I do not talk about weddings constantly")
    assert pair.minus_ids == (smol.cfg.bos_id, *minus)
    assert pair.plus_ids == (smol.cfg.bos_id, *tok.encode("I talk about weddings constantly"),
                             space[0], space[0])
    assert (pair.n_pad_plus, pair.n_pad_minus) == (2, 0)
    assert pair.positions == tuple(range(8))
    # the padded side can be either prompt
    flipped = actadd.prompt_pair(smol, "I do not talk about weddings constantly",
                                 "I talk about weddings constantly")
    assert flipped.minus_ids == pair.plus_ids and flipped.n_pad_minus == 2


def test_vector_is_zero_at_bos_and_added_at_front_positions(tiny):
    site = "blocks.1.resid_post"
    pair = actadd.prompt_pair(tiny, "abc", "xy")
    assert len(pair.plus_ids) == len(pair.minus_ids) == 4  # BOS + 3 bytes; "xy" padded once
    h = np.asarray(actadd.actadd_vector(tiny, site, pair))
    assert h.shape == (4, tiny.cfg.d_model)
    np.testing.assert_allclose(h[0], 0.0, atol=1e-6)  # BOS: two rows of one batch, same input
    assert np.all(np.linalg.norm(h[1:], axis=-1) > 0)
    # the hook adds row t at absolute position t and nothing elsewhere
    ids = actadd.encode_prompt(tiny, "hello world")
    clean = np.asarray(actadd.residuals(tiny, site, [ids]))[0]
    from interp import hooks
    out = tiny.forward([ids], hooks=hooks.Hooks.of(actadd.steering_hooks(tiny, site, 2.0 * h),
                                                  hooks.capture("resid_post", layers=1)))
    steered = np.asarray(out.captures["resid_post"][0, 0])
    np.testing.assert_allclose(steered[:4] - clean[:4], 2.0 * h, atol=1e-4)
    # float32: the hooked full forward and the clean partial forward are different programs
    np.testing.assert_allclose(steered[4:], clean[4:], rtol=1e-5, atol=1e-5)


def test_coefficient_zero_leaves_generation_unchanged(tiny):
    site = "blocks.1.resid_post"
    pair = actadd.prompt_pair(tiny, "love", "hate")
    h = np.asarray(actadd.actadd_vector(tiny, site, pair))
    ids = actadd.encode_prompt(tiny, "I think that")
    plain = sampling.generate(tiny.arch, tiny.params, tiny.cfg, [ids] * 2, max_new_tokens=12,
                              stop_tokens=(), never_sample=tiny.never_sample, **GREEDY)
    zero = actadd.generate(tiny, site, ids, np.stack([0.0 * h] * 2), max_new_tokens=12,
                           sampling=GREEDY, batch_size=2)
    unsteered = steered_next_logits(tiny, site, ids, 0.0 * h)
    for want, got in zip(plain, zero):
        assert_same_greedy_tokens(want, [int(t) for t in got], unsteered)
    # and steering does change it (so the comparison above can fail)
    steered = actadd.generate(tiny, site, ids, np.stack([50.0 * h] * 2), max_new_tokens=12,
                              sampling=GREEDY, batch_size=2)
    assert steered != plain
    with pytest.raises(ValueError, match="unknown sampling"):
        actadd.generate(tiny, site, ids, h, sampling={"top_k": 3})
    with pytest.raises(ValueError, match="front positions"):
        actadd.generate(tiny, site, ids[:2], h)


def test_sampled_rows_are_seeded_per_chunk(tiny):
    """Chunk 0 draws with `seed`, later chunks with other seeds. Exact: equal chunks run the same
    compiled program on the same inputs with the same key."""
    site = "blocks.1.resid_post"
    h = np.asarray(actadd.actadd_vector(tiny, site, actadd.prompt_pair(tiny, "love", "hate")))
    ids = actadd.encode_prompt(tiny, "I think that")
    knobs = dict(temperature=1.0, top_p=0.9, frequency_penalty=1.0)
    rows = np.stack([0.0 * h, 3.0 * h])

    def run(deltas, seed):
        return actadd.generate(tiny, site, ids, deltas, max_new_tokens=12, seed=seed,
                               sampling=knobs, batch_size=2)

    four = run(np.concatenate([rows, rows]), seed=3)
    assert four[:2] == run(rows, seed=3)
    assert four[2:] != four[:2]  # same vectors, the next chunk's seed
    assert run(rows, seed=4) != four[:2]


def test_multi_site_hooks_match_single_site(tiny):
    pair = actadd.prompt_pair(tiny, "ab", "cd")
    sites = ["blocks.0.resid_post", "blocks.1.resid_post"]
    h = np.asarray(actadd.actadd_vector(tiny, sites[1], pair))
    ids = actadd.encode_prompt(tiny, "some prompt")
    one = actadd.generate(tiny, sites[1], ids, np.stack([20 * h, 0 * h]), max_new_tokens=6,
                          sampling=GREEDY, batch_size=2)
    both = actadd.generate(tiny, sites, ids, np.stack([np.stack([0 * h, 0 * h]),
                                                       np.stack([20 * h, 0 * h])]),
                           max_new_tokens=6, sampling=GREEDY, batch_size=2)
    assert one[0] != one[1]  # the steered row differs, so a misplaced vector would show
    for row, delta in enumerate([20 * h, 0 * h]):
        assert_same_greedy_tokens(one[row], both[row],
                                  steered_next_logits(tiny, sites[1], ids, delta))
    with pytest.raises(ValueError, match="residual stream"):
        actadd.steering_hooks(tiny, "blocks.1.attn_out", h)


def test_reconstruction_plus_error_is_the_vector(tiny):
    site = "blocks.1.resid_post"
    pair = actadd.prompt_pair(tiny, "weddings", "not weddings")
    sae = random_sae(tiny.cfg.d_model, 4 * tiny.cfg.d_model)
    dec = decompose.decompose(tiny, site, sae, pair)
    h = np.asarray(actadd.actadd_vector(tiny, site, pair))
    np.testing.assert_allclose(dec.vector, h, atol=1e-6)
    np.testing.assert_allclose(dec.recon + dec.error, h, atol=1e-5)
    np.testing.assert_allclose(variants.recon_plus_error(dec), variants.orig(dec), atol=1e-5)
    # BOS: the same residual in both prompts (two rows of one batch: equal up to rounding)
    np.testing.assert_allclose(dec.delta_f[0], 0.0, atol=1e-6)
    feats = dec.top_features(5)
    np.testing.assert_allclose(variants.pruned(dec, feats) + variants.handpicked(dec, feats),
                               dec.vector, atol=1e-5)
    np.testing.assert_allclose(variants.ablate(dec, feats[0]),
                               dec.vector - np.outer(dec.delta_f[:, feats[0]], dec.w_dec[feats[0]]),
                               atol=1e-5)


def test_decomposition_recovers_known_decoder_directions():
    d, m = 16, 12
    rng = np.random.default_rng(0)
    q, _ = np.linalg.qr(rng.normal(size=(d, m)))
    w_dec = q.T.astype(np.float32)  # [m, d] orthonormal rows
    b_dec = rng.normal(size=d).astype(np.float32)
    cfg = SAEConfig(d_in=d, d_sae=m, architecture="relu")
    params = {"W_enc": jnp.asarray(w_dec.T), "b_enc": jnp.zeros(m), "W_dec": jnp.asarray(w_dec),
              "b_dec": jnp.asarray(b_dec)}
    sae = SAE(params, cfg)
    plus_codes = np.zeros((3, m), np.float32)
    minus_codes = np.zeros((3, m), np.float32)
    plus_codes[1, [2, 7]] = [3.0, 1.5]
    minus_codes[1, 7] = 1.0
    plus_codes[2, 4] = 2.0
    minus_codes[2, 9] = 0.5
    h_plus, h_minus = plus_codes @ w_dec + b_dec, minus_codes @ w_dec + b_dec
    dec = decompose.decompose_residuals(h_plus, h_minus, sae)
    np.testing.assert_allclose(dec.delta_f, plus_codes - minus_codes, atol=1e-5)
    np.testing.assert_allclose(dec.error, 0.0, atol=1e-5)
    assert set(dec.top_features(4)) == {2, 4, 7, 9}
    assert dec.top_features(1, position=1, sign=1) == [2]
    assert dec.top_features(1, sign=-1) == [9]
    assert np.nanmin(dec.cosine()[1:]) > 0.9999
    # the single-feature variant: unit direction of feature 4 scaled to ||h_A|| at its position
    s = variants.single(dec, 4)
    np.testing.assert_allclose(np.linalg.norm(s[2]), np.linalg.norm(dec.vector[2]), rtol=1e-5)
    np.testing.assert_allclose(s[2] / np.linalg.norm(s[2]), w_dec[4], atol=1e-5)
    assert np.all(s[[0, 1]] == 0)  # exact: rows never written


def test_lexicons_count_whole_words():
    texts = ["The bride married the groom at the wedding.", "Wedded bliss; weddingsx", ""]
    np.testing.assert_array_equal(lexicons.count(texts, "wedding"), [4, 0, 0])
    np.testing.assert_array_equal(lexicons.score(["I love you, I hate you"], "love", "hate"), [0])
    assert lexicons.hits([" Wedding ", "cake"], "wedding")
    assert not lexicons.hits(["cake"], "wedding")
    with pytest.raises(ValueError, match="unknown lexicon"):
        lexicons.count(texts, "joy")


def test_matched_comparison_interpolates_at_equal_cost():
    ref = {"cost": np.array([0.0, 1.0, 2.0]), "effect": np.array([0.0, 1.0, 2.0]),
           "effect_se": np.array([0.1, 0.1, 0.1]), "coeff": np.arange(3)}
    better = {"cost": np.array([0.5, 1.5, 3.0]), "effect": np.array([1.5, 2.5, 9.0]),
              "effect_se": np.array([0.1, 0.1, 0.1]), "coeff": np.arange(3)}
    out = sweep.matched_comparison(better, ref)  # one prompt: the per-prompt value is the mean
    assert out["n_matched"] == 2  # cost 3.0 is outside the reference's range
    assert out["difference"] == pytest.approx(1.0)
    np.testing.assert_allclose(out["per_prompt"], [1.0])
    none = sweep.matched_comparison({**better, "cost": np.array([5.0, 6.0, 7.0])}, ref)
    assert none["n_matched"] == 0 and np.isnan(none["difference"])


def test_per_prompt_means_ignore_empty_completions():
    """sweep._per_prompt: [prompts, points * samples] -> [points, prompts] means per prompt."""
    v = np.array([[1.0, 3.0, 10.0, np.nan], [0.0, 2.0, np.nan, np.nan]])
    out = sweep._per_prompt(v, n_points=2, n_samples=2)
    np.testing.assert_allclose(out[0], [2.0, 1.0])
    assert out[1, 0] == pytest.approx(10.0) and np.isnan(out[1, 1])


def test_steered_delta_ce_and_judge(tiny):
    site = "blocks.1.resid_post"
    pair = actadd.prompt_pair(tiny, "abc", "xyz")
    h = np.asarray(actadd.actadd_vector(tiny, site, pair))
    tokens = np.asarray([actadd.encode_prompt(tiny, "the quick brown fox jumps")] * 3)
    dce = evaluate.steered_delta_ce(tiny, site, np.stack([0 * h, h, 30 * h]), tokens, batch_size=4)
    assert dce[0] == pytest.approx(0.0, abs=1e-6)
    assert dce[2] != pytest.approx(0.0, abs=1e-4)
    # a full forward with the hook gives the same steered CE
    from interp.evaluation import next_token_losses
    clean = tiny.forward(tokens).logits
    steered = tiny.forward(tokens, hooks=actadd.steering_hooks(tiny, site, 30 * h)).logits
    ce_s, _ = next_token_losses(steered, clean, jnp.asarray(tokens))
    ce_c, _ = next_token_losses(clean, clean, jnp.asarray(tokens))
    assert dce[2] == pytest.approx(float(ce_s.mean() - ce_c.mean()), abs=1e-4)
    # judge: a probability; completion CE matches a direct computation
    judge = evaluate.Judge(" ok?", "a", "b")
    prompt = actadd.encode_prompt(tiny, "hi")
    comp = [list(tiny.tokenizer.encode("there", add_bos=False)), []]
    p, ce = evaluate.judge_and_ce(tiny, prompt, comp, judge, batch_size=4)
    assert np.all((p > 0) & (p < 1)) and np.isnan(ce[1])
    row = prompt + comp[0]
    lp = jax.nn.log_softmax(tiny.forward([row]).logits[0], -1)
    want = -np.mean([float(lp[len(prompt) - 1 + i, t]) for i, t in enumerate(comp[0])])
    assert ce[0] == pytest.approx(want, abs=1e-4)


def test_nucleus_candidates_match_full_sort():
    """interp.models.sampling: the top-k fast path keeps the same nucleus as the full sort."""
    logits = jnp.concatenate([jnp.asarray([[6.0, 5.5, 5.0, 4.0]]),
                              jnp.zeros((1, 3000))], axis=1)
    keys = jax.random.split(jax.random.key(0), 3000)
    fast = jax.vmap(lambda k: sampling.sample_logits(logits, k, temperature=1.0, top_p=0.5,
                                                      greedy=False, candidates=64))(keys)
    full = jax.vmap(lambda k: sampling._nucleus_full_sort(logits, None, None, k, 0.5))(keys)
    fast, full = np.asarray(fast)[:, 0], np.asarray(full)[:, 0]
    assert set(fast) == set(full)
    np.testing.assert_allclose(np.bincount(fast, minlength=4)[:4] / 3000,
                               np.bincount(full, minlength=4)[:4] / 3000, atol=0.04)
    # a flat distribution is not covered by 64 candidates: the full sort runs (nucleus > 64)
    flat = jnp.zeros((1, 3000))
    wide = jax.vmap(lambda k: sampling.sample_logits(flat, k, temperature=1.0, top_p=0.5,
                                                     greedy=False, candidates=64))(keys[:500])
    assert len(set(np.asarray(wide)[:, 0])) > 64


def test_sink_positions_flag_the_space_pad_in_smollm2(smol):
    """SmolLM2's space token is an attention sink at layer 6: ActAdd's padding rows get flagged,
    and a non-sink pad removes them."""
    site = "blocks.6.resid_post"
    ref = 100.0  # typical residual norm there (about 96 on held-out text)
    spaced = actadd.prompt_pair(smol, "I talk about weddings constantly",
                                "I do not talk about weddings constantly")
    assert actadd.sink_positions(smol, site, spaced, ref) == (6, 7)
    commas = actadd.prompt_pair(smol, "I talk about weddings constantly",
                                "I do not talk about weddings constantly", pad=",")
    assert commas.plus_ids[-1] == smol.tokenizer.encode(",", add_bos=False)[0]
    assert actadd.sink_positions(smol, site, commas, ref) == ()
    with pytest.raises(ValueError, match="one token"):
        actadd.prompt_pair(smol, "a", "bb", pad=" hello world")


def test_dropped_positions_are_zero_in_every_part(tiny):
    site = "blocks.1.resid_post"
    pair = actadd.prompt_pair(tiny, "abcd", "xy")
    sae = random_sae(tiny.cfg.d_model, 32)
    dec = decompose.decompose(tiny, site, sae, pair, drop_positions=(3, 4))
    full = decompose.decompose(tiny, site, sae, pair)
    for part in (dec.vector, dec.delta_f, dec.recon, dec.error):
        np.testing.assert_array_equal(part[[3, 4]], 0.0)  # exact: multiplied by a 0 mask
    np.testing.assert_allclose(dec.vector[:3], full.vector[:3], atol=1e-6)
    np.testing.assert_allclose(dec.recon + dec.error, dec.vector, atol=1e-5)


def test_curve_includes_the_unsteered_point():
    def res(v, c, e):
        return sweep.Result(v, c, e, 0.1, 0.0, float("nan"), 0.0, 0.0, c / 10, 0.0, [])

    results = [res("orig", 2.0, 3.0), res("unsteered", 0.0, 0.5), res("orig", 1.0, 1.0),
               res("recon", 1.0, 9.0)]
    c = sweep.curve(results, "orig")
    np.testing.assert_array_equal(c["coeff"], [0.0, 1.0, 2.0])  # exact: copied from the results
    np.testing.assert_array_equal(c["effect"], [0.5, 1.0, 3.0])
    np.testing.assert_array_equal(sweep.curve(results, "recon", "judge")["effect_se"], [0.0, 0.0])
    assert len(sweep.curve(results, "orig", baseline=None)["coeff"]) == 2
    with pytest.raises(ValueError, match="no results"):
        sweep.curve(results, "pruned")


NOTEBOOK_PAIRS = {  # the steering page's ActAdd pairs (book/steering.ipynb)
    "anger": ("Anger", "Calm"),
    "wedding": ("I talk about weddings constantly", "I do not talk about weddings constantly"),
    "love": ("Love", "Hate"),
}


@pytest.mark.parametrize("drop_sinks", [False, True])
def test_notebook_pairs_identities_hold_by_construction(smol, drop_sinks):
    """The identities the steering page relies on (formerly its claim S7), on its own prompt
    pairs at its SAE's site: h_A[BOS] = 0 and recon + err = orig, with or without sink rows."""
    site = "blocks.6.resid_post"
    sae = random_sae(smol.cfg.d_model, 2 * smol.cfg.d_model)
    for plus, minus in NOTEBOOK_PAIRS.values():
        pair = actadd.prompt_pair(smol, plus, minus)
        h = np.asarray(actadd.actadd_vector(smol, site, pair))
        np.testing.assert_allclose(h[0], 0.0, atol=1e-4)  # BOS: two rows of one batch
        drop = actadd.sink_positions(smol, site, pair, 100.0) if drop_sinks else ()
        dec = decompose.decompose(smol, site, sae, pair, drop_positions=drop)
        scale = float(np.abs(dec.vector).max())
        np.testing.assert_allclose(variants.recon_plus_error(dec), variants.orig(dec),
                                   atol=1e-5 * scale)
        np.testing.assert_allclose(dec.delta_f[0], 0.0, atol=1e-4)


def test_run_keeps_effects_per_prompt(tiny):
    """sweep.run samples every point on each prompt and keeps one mean per prompt; the point's
    mean is the mean over prompts and its standard error is over prompts."""
    site = "blocks.1.resid_post"
    h = np.asarray(actadd.actadd_vector(tiny, site, actadd.prompt_pair(tiny, "ab", "xy")))
    task = sweep.Task(("hello", "a b c d", "zz"), ("a", "b", "c"), evaluate.Judge(" ok?", "a", "b"))
    points = [sweep.Point("unsteered", 0.0, h), sweep.Point("orig", 5.0, h)]
    neutral = np.asarray([actadd.encode_prompt(tiny, "the quick brown fox")] * 2)
    out = sweep.run(tiny, site, task, points, n_samples=2, max_new_tokens=3,
                    neutral_tokens=neutral, batch_size=4, progress=False)
    for r in out:
        assert r.lexicon_by_prompt.shape == r.judge_by_prompt.shape == (3,)
        assert len(r.texts) == 6  # prompt-major: 2 completions of each prompt
        assert r.judge == pytest.approx(r.judge_by_prompt.mean(), abs=1e-12)
        assert r.judge_se == pytest.approx(r.judge_by_prompt.std(ddof=1) / np.sqrt(3), abs=1e-12)
        want = lexicons.count(r.texts, task.lexicon).reshape(3, 2).mean(1)
        np.testing.assert_allclose(r.lexicon_by_prompt, want)
