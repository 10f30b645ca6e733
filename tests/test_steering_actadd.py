"""interp.steering.actadd: ActAdd prompt pairs, vectors, hooks, steered generation, sinks."""

import numpy as np
import pytest

from interp.models import sampling
from interp.steering import actadd
from steering_helpers import GREEDY, assert_same_greedy_tokens, steered_next_logits


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


def test_sink_positions_flag_the_space_pad_in_smollm2(smol):
    """SmolLM2's space token is an attention sink at layer 6: ActAdd's padding rows get flagged
    and are the only rows zeroed; a non-sink pad removes them."""
    site = "blocks.6.resid_post"
    ref = 100.0  # typical residual norm there (about 96 on held-out text)
    spaced = actadd.prompt_pair(smol, "I talk about weddings constantly",
                                "I do not talk about weddings constantly")
    assert actadd.sink_positions(smol, site, spaced, ref) == (6, 7)
    commas = actadd.prompt_pair(smol, "I talk about weddings constantly",
                                "I do not talk about weddings constantly", pad=",")
    assert commas.plus_ids[-1] == smol.tokenizer.encode(",", add_bos=False)[0]
    assert actadd.sink_positions(smol, site, commas, ref) == ()
    assert actadd.padding_rows(spaced) == (6, 7)
    assert actadd.padding_sinks(smol, site, spaced, ref) == (6, 7)
    # "Ang" (of Anger) is a sink at a real token of both prompts: flagged, never zeroed
    anger = actadd.prompt_pair(smol, "Anger", "Calm")
    assert actadd.padding_rows(anger) == ()
    assert 1 in actadd.sink_positions(smol, site, anger, ref)
    assert actadd.padding_sinks(smol, site, anger, ref) == ()
    with pytest.raises(ValueError, match="one token"):
        actadd.prompt_pair(smol, "a", "bb", pad=" hello world")
