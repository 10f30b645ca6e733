"""The shared LM pipeline (interp.lm_sae): one cached harvest plus held-out tokens, and the
evaluation dict, on the tiny Llama twin and the real corpus."""

import numpy as np
import pytest

from interp import lm_sae


@pytest.fixture(scope="module")
def acts(tiny_acts):
    return tiny_acts


def test_activations_shape_and_reuse(acts):
    assert acts.store.spec.n_contexts == 10  # ceil(300 / 31) contexts give >= 300 non-BOS rows
    assert acts.store.num_rows(drop_bos=True) >= 300
    assert acts.d_in == acts.model.cfg.d_model == 64
    assert acts.heldout.shape == (4, 32)
    assert (acts.heldout[:, 0] == acts.model.cfg.bos_id).all()
    # the held-out contexts are not among the training contexts
    train = {tuple(r) for r in acts.store.tokens()}
    assert not any(tuple(r) in train for r in acts.heldout)
    again = lm_sae.activations(acts.model, acts.site, n_tokens=300, context_len=32,
                               heldout_contexts=4, batch_size=4, progress=False)
    assert again.store.path == acts.store.path  # one shared, content-addressed harvest
    np.testing.assert_array_equal(again.heldout, acts.heldout)  # exact: token ids


def test_evaluate_keys_and_identity(acts):
    class Identity:
        def encode(self, x):
            return x

        def decode(self, f):
            return f

    r = lm_sae.splice_metrics(acts.model, acts.site, Identity(), acts.heldout, progress=False)
    assert {"l0", "fvu", "mse", "loss_recovered", "delta_ce", "kl"} <= set(r)
    # clean and spliced runs are rows of one batch: equal up to float32 rounding
    assert r["loss_recovered"] == pytest.approx(1.0, abs=1e-5)
    assert r["delta_ce"] == pytest.approx(0.0, abs=1e-6)
    assert r["fvu"] == 0.0  # exact: the reconstruction is x itself


def test_bad_arguments():
    with pytest.raises(KeyError, match="unknown site"):
        lm_sae.activations("tiny-llama", "blocks.1.nowhere", n_tokens=10, progress=False)
    with pytest.raises(ValueError, match="reserved for evaluation"):
        lm_sae.activations("tiny-llama", split="heldout", n_tokens=10, progress=False)
    with pytest.raises(ValueError, match="unknown model"):
        lm_sae.activations("gpt-7", n_tokens=10, progress=False)


def test_training_batches_cycle_epochs_to_the_asked_step_count(acts):
    batches = list(lm_sae.training_batches(acts.store, acts.site, 64, 7, seed=0))
    assert len(batches) == 7 and all(b.shape == (64, 64) for b in batches)
    per_epoch = acts.store.num_rows() // 64
    assert per_epoch < 7  # the test really crosses an epoch boundary
    # epoch 1 is a different permutation of the same rows
    assert not np.array_equal(batches[0], batches[per_epoch])


def test_train_cached_trains_once_then_reloads(acts, tmp_path, monkeypatch):
    from interp import sae

    monkeypatch.setenv("INTERP_CACHE", str(tmp_path))
    cfg = sae.SAEConfig(d_in=64, d_sae=128, batch_size=64, steps=12, lr_warmup_steps=2,
                        dead_window_steps=4)
    first = lm_sae.train_cached(acts, cfg, {"l1_coeff": [1e-4, 1e-2]}, log_every=4,
                                progress=False)
    assert not first.from_cache and len(first.saes()) == 2
    again = lm_sae.train_cached(acts, cfg, {"l1_coeff": [1e-4, 1e-2]}, log_every=4,
                                progress=False)
    assert again.from_cache and again.seconds == pytest.approx(first.seconds)
    for s1, s2 in zip(first.saes(), again.saes()):
        np.testing.assert_array_equal(np.asarray(s1.params["W_dec"]),  # exact: reloaded copy
                                      np.asarray(s2.params["W_dec"]))
    x = next(lm_sae.training_batches(acts.store, acts.site, 64, 1, seed=1))
    l0 = [float((np.asarray(s.encode(x)) > 0).sum(-1).mean()) for s in first.saes()]
    assert l0[0] > l0[1]  # the larger L1 coefficient gives the sparser SAE
    single = lm_sae.train_cached(acts, cfg, progress=False)
    assert len(single.saes()) == 1


def test_reference_config_counts_steps_from_epochs(acts):
    cfg = lm_sae.reference_config(acts, expansion=2, batch_size=32, epochs=3, seed=5)
    assert cfg.d_sae == 128 and cfg.seed == 5 and cfg.adam_beta1 == 0.0
    assert cfg.steps == 3 * (acts.store.num_rows() // 32)
    assert lm_sae.reference_config(acts, lr=5e-4).lr == 5e-4


def test_heldout_activations_match_a_direct_capture(acts):
    from interp import hooks

    x = lm_sae.heldout_activations(acts, 3, batch_size=2)
    assert x.shape == (3 * 31, 64) and x.dtype == np.float32
    out = acts.model.forward(acts.heldout[:3], hooks=hooks.capture("resid_post", layers=1))
    want = np.asarray(out.captures["resid_post"][0][:, 1:], np.float32).reshape(-1, 64)
    np.testing.assert_allclose(x, want, rtol=1e-4, atol=1e-4)


def test_resample_pool_draws_fresh_rows_of_the_store_per_event(acts):
    pool = lm_sae.resample_pool(acts.store, acts.site, 200, seed=3)
    first, second = pool(0), pool(1)
    assert first.shape == second.shape == (200, 64)
    np.testing.assert_array_equal(pool(0), first)  # exact: the same draw, so resuming agrees
    assert not np.array_equal(first, second)
    stored = np.asarray(acts.store.read(acts.site), np.float32).reshape(-1, 64)
    rows = {r.tobytes() for r in stored}
    assert all(r.tobytes() in rows for r in first)  # exact: rows are copied, not computed
    with pytest.raises(ValueError, match="resample_pool_rows=100000 exceeds"):
        lm_sae.resample_pool(acts.store, acts.site, 100_000, seed=0)


def _small_config(steps):
    from interp import sae

    return sae.SAEConfig(d_in=64, d_sae=128, batch_size=64, steps=steps, lr_warmup_steps=2,
                         dead_window_steps=4, l1_coeff=1e-3, lr=1e-3)


def test_a_continued_run_equals_training_from_scratch(acts, tmp_path, monkeypatch):
    monkeypatch.setenv("INTERP_CACHE", str(tmp_path))
    short = lm_sae.train_cached(acts, _small_config(6), progress=False)
    longer = lm_sae.train_cached(acts, _small_config(12), progress=False, continue_from=short)
    monkeypatch.setenv("INTERP_CACHE", str(tmp_path / "fresh"))
    scratch = lm_sae.train_cached(acts, _small_config(12), progress=False)
    assert int(longer.state.step) == int(scratch.state.step) == 12
    for name in ("W_enc", "W_dec", "b_enc", "b_dec"):  # same arithmetic in another order of calls
        np.testing.assert_allclose(np.asarray(longer.state.params[name]),
                                   np.asarray(scratch.state.params[name]), rtol=1e-5, atol=1e-6)
    with pytest.raises(ValueError, match="only the step count may grow"):
        lm_sae.train_cached(acts, _small_config(12).replace(l1_coeff=2e-3), progress=False,
                            continue_from=short)


def test_training_by_passes_stops_at_the_plateau_and_caches_the_decision(acts, tmp_path,
                                                                        monkeypatch):
    monkeypatch.setenv("INTERP_CACHE", str(tmp_path))
    one_pass = _small_config(acts.store.num_rows() // 64)
    # a tolerance of 0.99 calls any improvement below 99% a plateau: pass 2 ends training
    run = lm_sae.train_by_passes(acts, one_pass, max_passes=4, tolerance=0.99, progress=False)
    assert len(run.passes) == 2 and run.plateaued
    assert int(run.state.step) == 2 * one_pass.steps
    assert run.passes[1] < run.passes[0]  # the second pass still lowered the held-out loss
    # a tolerance of 0 runs every pass while the loss falls: the cap ends it
    capped = lm_sae.train_by_passes(acts, one_pass, max_passes=3, tolerance=0.0, progress=False)
    gains = -np.diff(capped.passes)
    assert len(capped.passes) == 3 or not np.all(gains > 0)
    assert capped.plateaued == (not np.all(gains > 0))
    # the decision is cached: asking again (another page) gets the same pass and losses
    again = lm_sae.train_by_passes(acts, one_pass, max_passes=4, tolerance=0.99, progress=False)
    assert again.passes == run.passes and int(again.state.step) == int(run.state.step)
    rows = lm_sae.heldout_activations(acts)
    assert lm_sae.heldout_loss(again, rows) == pytest.approx(run.passes[-1], rel=1e-5)
    with pytest.raises(ValueError, match="whole number"):
        lm_sae.reference_sae(acts, plateau_tolerance=0.01, epochs=1.5, progress=False)



def test_run_cache_key_follows_the_sae_python_and_its_cpp_kernels(tmp_path, monkeypatch):
    """A changed kernel (sparse_ffi.cc) retrains like a changed module; the CLI does not."""
    import shutil
    from pathlib import Path
    from types import SimpleNamespace

    from interp import sae

    folder = tmp_path / "sae"
    shutil.copytree(Path(sae.__file__).parent, folder,
                    ignore=shutil.ignore_patterns("__pycache__"))
    monkeypatch.setattr(lm_sae, "sae", SimpleNamespace(__file__=str(folder / "__init__.py")))
    before = lm_sae._sae_source_hash()
    (folder / "__main__.py").write_text("# edited\n")
    assert lm_sae._sae_source_hash() == before
    (folder / "sparse_ffi.cc").write_text((folder / "sparse_ffi.cc").read_text() + "\n// edit\n")
    assert lm_sae._sae_source_hash() != before
