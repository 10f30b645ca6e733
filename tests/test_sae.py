"""interp.sae: config validation, the architectures' encode/decode, the Anthropic-recipe
switches, and recovery of a known sparse dictionary."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from interp import metrics, sae
from interp.sae import common, training


def small(**kw):
    base = dict(d_in=16, d_sae=64, batch_size=256, steps=50, lr=1e-3, lr_warmup_steps=10,
                l1_coeff=0.01)
    base.update(kw)
    return sae.SAEConfig(**base)


# ----------------------------------------------------------------------------- config
@pytest.mark.parametrize("field,value", [
    ("dead_strategy", "ghosts"), ("architecture", "jumprelu"), ("l1_coeff", -1.0),
    ("d_sae", 0), ("decoder_norm", "le1"), ("adam_beta1", 1.0), ("lr", 0.0),
])
def test_bad_config_names_the_field(field, value):
    with pytest.raises(ValueError, match=f"SAEConfig.{field}"):
        small(**{field: value})


def test_config_cross_field_checks_and_round_trip():
    with pytest.raises(ValueError, match="dead_strategy"):
        small(dead_strategy="auxk")  # AuxK is for top-k SAEs
    with pytest.raises(ValueError, match="SAEConfig.k"):
        small(architecture="topk", k=65)
    with pytest.raises(ValueError, match="unknown field"):
        sae.SAEConfig.from_dict({"d_in": 4, "d_sae": 8, "l1": 0.1})
    cfg = small(dead_strategy="resample", resample_at=[0.5], steps=100)
    assert sae.SAEConfig.from_dict(cfg.to_dict()) == cfg
    assert cfg.resample_steps() == (50,)
    with pytest.raises(ValueError, match="cannot be swept"):
        training.sweep_configs(cfg, {"architecture": ["relu", "gated"]})


# ----------------------------------------------------------------------------- architectures
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


def test_encoder_init_transpose_switch():
    cfg = small()
    p = sae.init_sae(jax.random.PRNGKey(0), cfg).params
    np.testing.assert_array_equal(p["W_enc"], p["W_dec"].T)  # exact: a transposed copy
    q = sae.init_sae(jax.random.PRNGKey(0), cfg.replace(encoder_init_transpose=False)).params
    assert not np.allclose(q["W_enc"], q["W_dec"].T)


# ----------------------------------------------------------------------------- recipe pieces
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


def test_learning_rate_schedule():
    cfg = small(steps=100, lr=1.0, lr_warmup_steps=10, lr_decay_fraction=0.2,
                dead_strategy="resample", resample_rewarm_steps=10, resample_rewarm_start=0.1)
    h = training.config_hyper(cfg)
    never = jnp.int32(-(2**30))
    lr = lambda s, r=never: float(training.learning_rate(jnp.int32(s), r, h, cfg))  # noqa
    assert lr(0) == pytest.approx(0.1) and lr(9) == pytest.approx(1.0)
    assert lr(50) == pytest.approx(1.0)
    assert lr(90) == pytest.approx(0.5)      # linear cooldown over the last 20 %
    assert lr(50, jnp.int32(50)) == pytest.approx(0.1)   # re-warm-up starts at 0.1 x
    assert lr(55, jnp.int32(50)) == pytest.approx(0.55)  # cosine midpoint
    assert lr(60, jnp.int32(50)) == pytest.approx(1.0)
    assert float(training.l1_scale(jnp.int32(4), {"l1_warmup_steps": 10.0})) == pytest.approx(0.5)


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


# ----------------------------------------------------------------------------- training
def recovery_setup():
    data = sae.SparseDictionaryData(d_in=32, n_features=64, batch_size=512, mean_active=3)
    cfg = sae.SAEConfig(d_in=32, d_sae=128, l1_coeff=0.05, lr=1e-2, batch_size=512,
                        steps=1200, lr_warmup_steps=50)
    return data, cfg


def test_training_recovers_a_known_dictionary():
    """64 true unit features in R^32 (3 active per example, Zipf-ish frequencies), SAE with
    128 latents. Threshold 0.9 for the mean max cosine similarity: a random dictionary of 128
    directions in R^32 scores ~0.5 (checked below at init), and cos > 0.9 means the learned
    direction is within ~25 degrees of the true one, i.e. the feature was found."""
    data, cfg = recovery_setup()
    init = sae.init_sae(jax.random.PRNGKey(0), cfg)
    init_score = metrics.max_cosine_similarity(init.params["W_dec"], data.dictionary).mean()
    state, history = sae.train(cfg, data, progress=False, log_every=200)
    model = sae.to_sae(state, cfg)
    score = metrics.max_cosine_similarity(model.params["W_dec"], data.dictionary)
    assert init_score < 0.7
    assert score.mean() > 0.9, score
    assert np.mean(score > 0.9) > 0.9
    assert history["loss"][-1] < history["loss"][0]
    assert len(history["step"]) == 6 and history["step"][-1] == cfg.steps
    np.testing.assert_allclose(model.decoder_norms, 1.0, rtol=1e-4)  # exact unit norm kept
    ev = sae.reconstruction_metrics(model, data.held_out(), max_batches=4)
    assert 1.0 < ev["l0"] < 6.0 and ev["fvu"] < 1.0 and ev["shrinkage"] < 1.0


@pytest.mark.parametrize("arch", ["gated", "topk"])
def test_other_architectures_train(arch):
    data = sae.SparseDictionaryData(d_in=16, n_features=32, batch_size=256, mean_active=3)
    cfg = small(architecture=arch, k=4, steps=300, lr=1e-2, l1_coeff=0.02, d_sae=64)
    state, history = sae.train(cfg, data, progress=False, log_every=100)
    assert history["fvu"][-1] < 0.5 * history["fvu"][0]
    if arch == "topk":
        assert history["l0"][-1] <= 4.0


def test_anthropic_switches_train_and_respect_constraints():
    data = sae.SparseDictionaryData(d_in=16, n_features=32, batch_size=256, mean_active=3)
    cfg = small(steps=60, decoder_norm="at_most_one", pre_encoder_bias=False,
                input_normalisation="sqrt_d", mse_reduction="sum", lr_decay_fraction=0.2,
                grad_clip_norm=1.0, l1_warmup_steps=20, adam_beta2=0.9999, b_dec_init="mean")
    state, _ = sae.train(cfg, data, progress=False, log_every=30)
    assert float(jnp.max(jnp.linalg.norm(state.params["W_dec"], axis=-1))) <= 1.0 + 1e-5
    x = np.concatenate([data.batch(i) for i in range(4)])
    assert float(state.input_scale) == pytest.approx(
        np.sqrt(16) / np.mean(np.linalg.norm(x, axis=-1)), rel=1e-5)
    free = small(steps=30, decoder_norm="free", l1_weighted_by_decoder_norm=True,
                 decoder_init_norm=0.1, mse_normalise_by_input_norm=True)
    state, hist = sae.train(free, data, progress=False, log_every=30)
    norms = jnp.linalg.norm(state.params["W_dec"], axis=-1)
    assert float(jnp.min(norms)) != pytest.approx(float(jnp.max(norms)))  # unconstrained
    assert np.isfinite(hist["loss"][-1])
