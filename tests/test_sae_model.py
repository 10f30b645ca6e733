"""interp.sae.model: the common SAE interface, folding the input scale, pruning latents."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from interp import sae
from sae_helpers import small


@pytest.mark.parametrize("arch", ["relu", "gated", "topk"])
def test_common_interface_shapes(arch):
    cfg = small(architecture=arch, k=5)
    model = sae.init_sae(jax.random.PRNGKey(0), cfg)
    x = jax.random.normal(jax.random.PRNGKey(1), (10, cfg.d_in))
    f = sae.encode(model, x)
    assert f.shape == (10, cfg.d_sae) and bool(jnp.all(f >= 0))
    assert sae.decode(model, f).shape == x.shape
    np.testing.assert_allclose(model.decoder_norms, 1.0, rtol=1e-5)
    if arch == "topk":
        assert bool(jnp.all(jnp.sum(f > 0, -1) <= 5))


def test_fold_input_scale_is_exact():
    """An SAE trained on c*x, folded, reconstructs raw x exactly as the unfolded one does c*x."""
    for pre_bias in (True, False):
        cfg = small(pre_encoder_bias=pre_bias)
        p = sae.init_sae(jax.random.PRNGKey(0), cfg).params
        p = dict(p, b_dec=jnp.ones(cfg.d_in) * 0.3, b_enc=jnp.full(cfg.d_sae, -0.1))
        x = jax.random.normal(jax.random.PRNGKey(1), (8, cfg.d_in))
        c = 2.5
        trained_units = sae.SAE(p, cfg)
        raw = sae.SAE(sae.fold_input_scale(p, c), cfg)
        np.testing.assert_allclose(raw.encode(x), trained_units.encode(c * x), rtol=1e-5,
                                   atol=1e-5)
        np.testing.assert_allclose(raw(x), trained_units(c * x) / c, rtol=1e-5, atol=1e-5)


def test_prune_small_decoder_norms():
    cfg = small(decoder_norm="at_most_one")
    model = sae.init_sae(jax.random.PRNGKey(0), cfg)
    scale = jnp.where(jnp.arange(cfg.d_sae) % 4 == 0, 0.5, 1.0)
    model = sae.SAE(dict(model.params, W_dec=model.params["W_dec"] * scale[:, None]), cfg)
    pruned = sae.prune_small_decoder_norms(model, 0.99)
    assert pruned.config.d_sae == cfg.d_sae - cfg.d_sae // 4
    x = jax.random.normal(jax.random.PRNGKey(1), (4, cfg.d_in))
    keep = np.asarray(scale) == 1.0
    # float32: a matmul over fewer latents may block (and round) differently
    np.testing.assert_allclose(pruned.encode(x), np.asarray(model.encode(x))[:, keep], rtol=1e-5,
                               atol=1e-6)
