"""interp.steering.decompose: SAE decomposition of ActAdd vectors (and the variants built on it)."""

import jax.numpy as jnp
import numpy as np
import pytest

from interp.sae import SAEConfig
from interp.sae.model import SAE
from interp.steering import actadd, decompose, variants
from steering_helpers import random_sae


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
