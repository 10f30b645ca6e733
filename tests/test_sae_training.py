"""interp.sae training driver: the learning-rate schedule, training on known dictionaries (every
architecture, the Anthropic switches), vmapped sweeps, checkpoints and exact resume, NaN handling,
SAELens interchange."""

import json

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from interp import metrics, sae
from interp.sae import checkpoint, training
from sae_helpers import small


def data(batch=128):
    return sae.SparseDictionaryData(d_in=16, n_features=32, batch_size=batch, mean_active=3)


def cfg(**kw):
    base = dict(d_in=16, d_sae=32, batch_size=128, steps=40, lr=1e-2, lr_warmup_steps=5,
                l1_coeff=0.02, dead_window_steps=10)
    base.update(kw)
    return sae.SAEConfig(**base)


def test_vmapped_sweep_equals_separate_runs():
    base = cfg(dead_strategy="ghost_scaled")
    sweep = {"l1_coeff": [0.0, 0.02, 0.1], "seed": [0, 1, 2]}
    states, hist = sae.train_sweep(base, data(), sweep, progress=False, log_every=20)
    assert np.asarray(hist["loss"]).shape == (2, 3)
    for i, c in enumerate(training.sweep_configs(base, sweep)):
        single, single_hist = sae.train(c, data(), progress=False, log_every=20)
        member = sae.sweep_member(states, i)
        for name in single.params:
            np.testing.assert_allclose(member.params[name], single.params[name],
                                       rtol=2e-4, atol=2e-5, err_msg=f"run {i} {name}")
        np.testing.assert_allclose(np.asarray(hist["loss"])[:, i], single_hist["loss"],
                                   rtol=1e-4)
    # the sweep really differs across runs (higher L1 -> sparser)
    l0 = np.asarray(hist["l0"])[-1]
    assert l0[0] > l0[1] > l0[2]


@pytest.mark.parametrize("strategy", ["resample", "ghost"])
def test_resume_equals_uninterrupted(tmp_path, strategy):
    c = cfg(dead_strategy=strategy, resample_at=(0.3, 0.7), lr_decay_fraction=0.2,
            resample_rewarm_steps=5)
    full, full_hist = sae.train(c, data(), progress=False, log_every=10)
    # interrupted: the same run stopped after 20 steps (checkpoint), then resumed
    sae.train(c, data(), progress=False, log_every=10, checkpoint_dir=tmp_path, stop_after=20)
    saved, saved_cfg, _, _ = sae.load_checkpoint(tmp_path)
    assert saved_cfg == c and int(saved.step) == 20
    resumed, resumed_hist = sae.resume(tmp_path, data(), progress=False, log_every=10)
    for name in full.params:
        np.testing.assert_array_equal(resumed.params[name], full.params[name])
        np.testing.assert_array_equal(resumed.adam_v[name], full.adam_v[name])
    np.testing.assert_array_equal(resumed.rng, full.rng)
    assert resumed_hist["loss"] == full_hist["loss"]
    # a resume without `seek` (plain iterable replayed from the start) lands at the same place
    replay = [data().batch(i) for i in range(c.steps)]
    again, _ = sae.resume(tmp_path, replay, progress=False, log_every=10)
    assert int(again.step) == c.steps
    np.testing.assert_array_equal(again.params["W_dec"], full.params["W_dec"])


def test_checkpoint_is_self_describing_and_atomic(tmp_path):
    c = cfg(steps=10)
    state, hist = sae.train(c, data(), progress=False, log_every=5, checkpoint_dir=tmp_path,
                            checkpoint_every=5)
    files = sorted(p.name for p in tmp_path.iterdir())
    assert files == ["checkpoint.safetensors", "config.json"]  # no temp files left behind
    meta = json.loads((tmp_path / "config.json").read_text())
    assert meta["config"] == c.to_dict() and meta["step"] == 10
    loaded, loaded_cfg, loaded_hist, sweep = sae.load_checkpoint(tmp_path)
    assert loaded_cfg == c and sweep is None and loaded_hist == hist
    for a, b in zip(jax.tree_util.tree_leaves(loaded), jax.tree_util.tree_leaves(state)):
        np.testing.assert_array_equal(a, b)  # exact: a saved-and-reloaded copy
    (tmp_path / "checkpoint.safetensors").write_bytes(b"garbage")
    with pytest.raises(ValueError, match="corrupt"):
        sae.load_checkpoint(tmp_path)
    with pytest.raises(FileNotFoundError):
        sae.load_checkpoint(tmp_path / "missing")


def test_nan_stops_training_and_keeps_last_good_checkpoint(tmp_path):
    c = cfg(steps=30)

    def poisoned():
        for i, x in enumerate(data()):
            yield np.full_like(x, np.nan) if i == 17 else x

    with pytest.raises(sae.NonFiniteLossError, match="step 17.*last good checkpoint"):
        sae.train(c, poisoned(), progress=False, log_every=10, checkpoint_dir=tmp_path,
                  checkpoint_every=5)
    state, _, _, _ = sae.load_checkpoint(tmp_path)
    assert int(state.step) == 15
    assert all(bool(jnp.all(jnp.isfinite(v))) for v in state.params.values())


def test_bad_batches_are_rejected():
    with pytest.raises(ValueError, match=r"expected shape \(128, 16\)"):
        sae.train(cfg(), iter([np.zeros((128, 15), np.float32)]), progress=False)
    with pytest.raises(ValueError, match="ran out after"):
        sae.train(cfg(), [data().batch(i) for i in range(7)], progress=False)


@pytest.mark.parametrize("arch", ["relu", "gated", "topk"])
def test_saelens_round_trip_is_exact(tmp_path, arch):
    c = cfg(architecture=arch, k=4, input_normalisation="sqrt_d")
    model = sae.init_sae(jax.random.PRNGKey(0), c)
    model = sae.SAE(jax.tree_util.tree_map(lambda a: a + 0.01 * jnp.arange(a.size).reshape(
        a.shape) / a.size, model.params), c)
    sae.export_saelens(model, tmp_path, model_name="SmolLM2-135M", hook_name="resid_pre.12")
    raw = json.loads((tmp_path / "cfg.json").read_text())
    assert raw["architecture"] == {"relu": "standard", "gated": "gated", "topk": "topk"}[arch]
    assert raw["d_in"] == 16 and raw["d_sae"] == 32 and raw["apply_b_dec_to_input"] is True
    back = sae.import_saelens(tmp_path)
    assert back.config == c
    for name in model.params:
        np.testing.assert_array_equal(back.params[name], model.params[name])
    # a plain SAELens folder (no interp metadata) loads with the architecture it names
    raw["metadata"] = {}
    (tmp_path / "cfg.json").write_text(json.dumps(raw))
    plain = sae.import_saelens(tmp_path)
    assert plain.config.architecture == arch and plain.config.d_sae == 32
    x = jnp.asarray(data().batch(0))
    np.testing.assert_array_equal(plain.encode(x), model.encode(x))


def test_saelens_import_errors(tmp_path):
    with pytest.raises(FileNotFoundError, match="cfg.json"):
        sae.import_saelens(tmp_path)
    model = sae.init_sae(jax.random.PRNGKey(0), cfg())
    sae.export_saelens(model, tmp_path)
    raw = json.loads((tmp_path / "cfg.json").read_text())
    (tmp_path / "cfg.json").write_text(json.dumps(dict(raw, architecture="jumprelu")))
    with pytest.raises(ValueError, match="jumprelu"):
        sae.import_saelens(tmp_path)
    (tmp_path / "cfg.json").write_text(json.dumps(dict(raw, d_sae=33, metadata={})))
    with pytest.raises(ValueError, match="has shape"):
        sae.import_saelens(tmp_path)


def test_trained_sae_is_in_raw_units(tmp_path):
    """Training on sqrt(d)-normalised inputs, the returned SAE reconstructs raw inputs."""
    c = cfg(steps=60, input_normalisation="sqrt_d", l1_coeff=0.002)
    state, _ = sae.train(c, data(), progress=False, log_every=30)
    model = sae.to_sae(state, c)
    x = jnp.asarray(data().held_out().batch(0))
    assert float(state.input_scale) != pytest.approx(1.0, abs=0.05)
    ev = sae.reconstruction_metrics(model, [x])
    assert ev["fvu"] < 0.5
    trained_units = sae.SAE(state.params, c)
    np.testing.assert_allclose(model(x), trained_units(x * state.input_scale) /
                               state.input_scale, rtol=1e-4, atol=1e-4)
    assert checkpoint  # module importable under its own name


@pytest.mark.parametrize("decoder_norm, weighted", [("unit", False), ("free", True)])
def test_a_zero_decoder_row_keeps_every_parameter_finite(decoder_norm, weighted):
    """A zero d_i has no direction: the gradient projection, the renormalisation and the
    decoder-norm-weighted L1 must not divide by its zero norm."""
    c = cfg(decoder_norm=decoder_norm, l1_weighted_by_decoder_norm=weighted, lr_warmup_steps=0)
    stats = training.input_statistics([data().batch(0)], c)
    state = training.init_state(c, stats, 0)
    state = state._replace(params=dict(state.params,
                                       W_dec=state.params["W_dec"].at[3].set(0.0)))
    x = jnp.asarray(data().batch(1))
    for _ in range(2):
        state = training.train_step(c, state, x, training.config_hyper(c))
    for tree in (state.params, state.adam_m, state.adam_v):
        for name, value in tree.items():
            assert bool(jnp.all(jnp.isfinite(value))), name
    assert float(jnp.max(jnp.abs(state.params["W_dec"][4]))) > 0  # other rows still train


@pytest.fixture()
def nan_params_at_adam_step_12(monkeypatch):
    """Adam turns every parameter into NaN on its 12th step (the loss of that step, computed
    before the update, is still finite): the case a loss-only check lets through."""
    real = training.adam_update

    def poisoned(params, grads, m, v, count, lr, h, cfg):
        params, m, v, count = real(params, grads, m, v, count, lr, h, cfg)
        params = {k: jnp.where(count == 12, jnp.nan, p) for k, p in params.items()}
        return params, m, v, count

    training._cached_runner.cache_clear()  # compiled steps must pick up the patch
    monkeypatch.setattr(training, "adam_update", poisoned)
    yield
    training._cached_runner.cache_clear()


def test_nan_parameters_stop_training_and_keep_last_good_checkpoint(
        tmp_path, nan_params_at_adam_step_12):
    c = cfg(steps=12)
    with pytest.raises(sae.NonFiniteParamsError,
                       match="parameters after step 12.*last good checkpoint kept"):
        sae.train(c, data(), progress=False, log_every=4, checkpoint_dir=tmp_path,
                  checkpoint_every=5)
    state, _, _, _ = sae.load_checkpoint(tmp_path)
    assert int(state.step) == 10
    assert all(bool(jnp.all(jnp.isfinite(v))) for v in state.params.values())


def test_a_diverging_sweep_member_is_named_by_its_hyperparameters(tmp_path):
    sweep = {"l1_coeff": [0.02, 1e38, 0.05], "seed": [0, 1, 2]}  # run 1: an infinite loss
    with pytest.raises(sae.NonFiniteLossError,
                       match=r"sweep run 1 \(l1_coeff=1e\+38, seed=1\): non-finite") as e:
        sae.train_sweep(cfg(steps=10), data(), sweep, progress=False, log_every=5,
                        checkpoint_dir=tmp_path, checkpoint_every=5)
    assert e.value.runs == (1,)
    assert "sweep run 0" not in str(e.value) and "sweep run 2" not in str(e.value)


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
