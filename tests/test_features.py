"""interp.features: top-activating contexts with highlights, and the logit lens."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from interp import features, models
from interp.autointerp.records import Record
from interp.sae import SAEConfig, init_sae
from interp.steering import actadd


@pytest.fixture(scope="module")
def tiny():
    return models.load("tiny-llama")


def test_feature_activations_match_encoding_residuals(tiny):
    site = "blocks.1.resid_post"
    cfg = SAEConfig(d_in=tiny.cfg.d_model, d_sae=32, architecture="relu")
    sae = init_sae(jax.random.key(0), cfg)
    ids = [actadd.encode_prompt(tiny, t) for t in ("hello there", "other text", "third one!")]
    width = min(map(len, ids))
    tokens = np.asarray([i[:width] for i in ids])
    acts = features.feature_activations(tiny, site, sae, tokens, [3, 5, 7], batch_size=2)
    assert acts.shape == (3, width, 3)
    np.testing.assert_array_equal(acts[:, 0], 0.0)  # BOS column, written as zeros
    resid = np.asarray(actadd.residuals(tiny, site, tokens))
    want = np.asarray(sae.encode(jnp.asarray(resid)))[..., [3, 5, 7]]
    np.testing.assert_allclose(acts[:, 1:], want[:, 1:], atol=1e-5)
    with pytest.raises(ValueError, match="per-layer site"):
        features.feature_activations(tiny, "embed", sae, tokens)


def test_top_contexts_order_and_highlight():
    tokens = np.arange(60).reshape(3, 20)
    acts = np.zeros((3, 20))
    acts[1, 15] = 5.0
    acts[1, 14] = 2.0   # above 0.3 * max: highlighted
    acts[1, 13] = 1.0   # below: plain
    acts[2, 4] = 1.0
    ctx = features.top_contexts(acts, tokens, lambda ids: f"<{ids[0]}>", n=5, before=3, after=1)
    assert len(ctx) == 2  # context 0 never activates
    assert ctx[0].max_act == 5.0 and ctx[0].top_token == "<35>"
    assert ctx[0].text == "<32><33>[[<34>]][[<35>]]<36>"
    assert ctx[1].top_token == "<44>"


def test_highlight_marks_newlines():
    rec = Record(("a", "\n", "b"), np.array([0.0, 1.0, 0.0]))
    assert features.highlight(rec).text == "a[[\u21b5]]b"


def test_logit_lens_is_the_unembedding_of_the_gain_scaled_direction(tiny):
    direction = np.random.default_rng(0).normal(size=tiny.cfg.d_model).astype(np.float32)
    top = features.logit_lens(tiny, direction, k=5, cosine=False)
    want = np.asarray(tiny.params["embed"] @ (direction * np.asarray(tiny.params["final_norm"])))
    # compared by value (float32, another matmul): tokens whose values tie may swap places
    np.testing.assert_allclose([v for _, v in top], np.sort(want)[::-1][:5], rtol=1e-5)
    for word, value in top:
        tied = np.flatnonzero(np.isclose(want, value, rtol=1e-5))
        assert word in [tiny.tokenizer.decode([int(i)]) for i in tied], (word, value)
    bottom = features.logit_lens(tiny, direction, k=3, bottom=True, cosine=False)
    np.testing.assert_allclose([v for _, v in bottom], np.sort(want)[:3], rtol=1e-5)
    norms = np.linalg.norm(np.asarray(tiny.params["embed"]), axis=-1)
    cos = features.logit_lens(tiny, direction, k=5)
    np.testing.assert_allclose([v for _, v in cos], np.sort(want / norms)[::-1][:5], rtol=1e-4)


def test_logit_lens_of_a_token_embedding_finds_the_token():
    """On the real model the (cosine) lens of a token's own unembedding row, undoing the final
    norm gain, puts that token first; the raw lens does not (large-norm fragment tokens win)."""
    m = models.load("smollm2-135m", progress=False)
    for word in (" wedding", " angry"):
        tok = m.tokenizer.encode(word, add_bos=False)[0]
        direction = np.asarray(m.params["embed"][tok]) / np.asarray(m.params["final_norm"])
        assert features.logit_lens(m, direction, k=3)[0][0] == word
        assert features.logit_lens(m, direction, k=3, cosine=False)[0][0] != word


def test_store_cards_read_the_whole_training_store(tiny_acts):
    """Cards from the stored activations agree with a model forward over the store's tokens
    (up to the store's bfloat16 rounding), and each card's top context is the store context
    where the feature peaks."""
    model, site, store = tiny_acts.model, tiny_acts.site, tiny_acts.store
    sae = init_sae(jax.random.key(1), SAEConfig(d_in=model.cfg.d_model, d_sae=16,
                                                 architecture="relu"))
    feats = [2, 9, 11]
    got = features.store_activations(store, site, sae, feats, chunk_contexts=3)
    want = features.feature_activations(model, site, sae, store.tokens(), feats)
    assert got.shape == want.shape == (store.spec.n_contexts, store.spec.context_length, 3)
    np.testing.assert_array_equal(got[:, 0], 0.0)  # exact: the BOS column is written as zeros
    scale = np.abs(want).max()
    np.testing.assert_allclose(got, want, atol=0.02 * scale)  # bfloat16 store
    cards = features.store_cards(model, site, sae, store, feats, n_contexts=2, chunk_contexts=4)
    assert sorted(cards) == feats
    for j, f in enumerate(feats):
        c = cards[f]
        assert c.frequency == pytest.approx(float(np.mean(got[:, 1:, j] > 0)))
        if got[..., j].max() > 0:
            assert c.contexts[0].max_act == pytest.approx(float(got[..., j].max()), rel=1e-5)
            assert len(c.contexts) <= 2 and len(c.top_tokens) == len(c.contexts)
    assert features.store_cards(model, site, sae, store, []) == {}
