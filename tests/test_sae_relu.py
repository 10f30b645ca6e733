"""interp.sae.relu: the ReLU SAE's encoder matches its formula, with or without b_dec."""

import jax
import jax.numpy as jnp
import numpy as np

from interp import sae
from sae_helpers import small


def test_relu_encode_matches_the_formula():
    cfg = small()
    p = sae.init_sae(jax.random.PRNGKey(0), cfg).params
    p = dict(p, b_dec=jnp.arange(cfg.d_in) / 10.0, b_enc=jnp.linspace(-1, 1, cfg.d_sae))
    x = jax.random.normal(jax.random.PRNGKey(1), (4, cfg.d_in))
    model = sae.SAE(p, cfg)
    expected = np.maximum((np.asarray(x) - p["b_dec"]) @ p["W_enc"] + p["b_enc"], 0)
    np.testing.assert_allclose(model.encode(x), expected, rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(model(x), expected @ p["W_dec"] + p["b_dec"], rtol=1e-4,
                               atol=1e-5)
    # Anthropic Feb-2024 item 3: without the pre-encoder bias, b_dec does not enter f
    no_bias = sae.SAE(p, cfg.replace(pre_encoder_bias=False))
    np.testing.assert_allclose(no_bias.encode(x),
                               np.maximum(np.asarray(x) @ p["W_enc"] + p["b_enc"], 0),
                               rtol=1e-5, atol=1e-6)
