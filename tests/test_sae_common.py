"""interp.sae.common: the encoder-init switch, decoder-gradient projection and constraints."""

import jax
import jax.numpy as jnp
import numpy as np

from interp import sae
from interp.sae import common
from sae_helpers import small


def test_encoder_init_transpose_switch():
    cfg = small()
    p = sae.init_sae(jax.random.PRNGKey(0), cfg).params
    np.testing.assert_array_equal(p["W_enc"], p["W_dec"].T)  # exact: a transposed copy
    q = sae.init_sae(jax.random.PRNGKey(0), cfg.replace(encoder_init_transpose=False)).params
    assert not np.allclose(q["W_enc"], q["W_dec"].T)


def test_decoder_gradient_projection_and_constraints():
    cfg = small()
    W = jax.random.normal(jax.random.PRNGKey(0), (cfg.d_sae, cfg.d_in))
    W = W / jnp.linalg.norm(W, axis=-1, keepdims=True)
    g = jax.random.normal(jax.random.PRNGKey(1), W.shape)
    g_proj = common.project_decoder_grad(g, W, cfg)
    np.testing.assert_allclose(jnp.sum(g_proj * W, -1), 0.0, atol=1e-5)
    big = W * jnp.linspace(0.5, 2.0, cfg.d_sae)[:, None]
    np.testing.assert_allclose(jnp.linalg.norm(common.constrain_decoder(big, cfg), axis=-1),
                               1.0, rtol=1e-5)
    le1 = jnp.linalg.norm(common.constrain_decoder(big, cfg.replace(decoder_norm="at_most_one")),
                          axis=-1)
    np.testing.assert_allclose(le1, np.minimum(np.linspace(0.5, 2.0, cfg.d_sae), 1.0), rtol=1e-5)
    free = common.constrain_decoder(big, cfg.replace(decoder_norm="free"))
    np.testing.assert_array_equal(free, big)  # exact: "free" leaves the array untouched
