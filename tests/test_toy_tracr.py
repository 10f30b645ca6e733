"""Tracr-compiled programs: the JAX forward pass equals Tracr's model and RASP evaluation;
compression is measured, not assumed."""

import jax
import numpy as np
import pytest

from interp.toy import tracr_compression as tc
from interp.toy import tracr_models as tm


@pytest.fixture(scope="module")
def frac_prevs_with_tracr():
    """One real, uncached compile: our data copy plus Tracr's own haiku model."""
    return tm.compile_with_tracr_model("frac_prevs")


@pytest.fixture(scope="module")
def frac_prevs(frac_prevs_with_tracr):
    return frac_prevs_with_tracr[0]


def test_forward_matches_tracrs_own_model(frac_prevs_with_tracr):
    prog, model = frac_prevs_with_tracr
    for seq in tm.random_inputs(prog, 5, seed=1, length=6):
        ref = model.apply([tm.BOS] + seq)
        trace = tm.forward(prog, tm.encode(prog, [seq]))
        np.testing.assert_allclose(trace.residuals[1:, 0], np.stack(ref.residuals)[:, 0],
                                   atol=1e-5)
        np.testing.assert_allclose(trace.output[0], ref.transformer_output[0], atol=1e-5)
        np.testing.assert_allclose(tm.decode_outputs(prog, trace.output)[0, 1:],
                                   ref.decoded[1:], atol=1e-5)


def test_frac_prevs_has_its_ground_truth_basis(frac_prevs):
    labels = frac_prevs.residual_labels
    for lab in ("frac_prevs", "is_x", "one", "tokens:x", "tokens:a", "indices:0", "indices:7"):
        assert lab in labels
    assert frac_prevs.numerical_output and frac_prevs.output_label == "frac_prevs"
    assert frac_prevs.variables()["tokens"].size == 6  # a b c x + BOS + pad
    seqs = [list("axcx")]
    trace = tm.forward(frac_prevs, tm.encode(frac_prevs, seqs))
    final = np.asarray(trace.residuals[-1, 0])
    np.testing.assert_allclose(final[1:, labels.index("frac_prevs")], [0, 0.5, 1 / 3, 0.5],
                               atol=1e-5)
    np.testing.assert_allclose(final[1:, labels.index("is_x")], [0, 1, 0, 1], atol=1e-5)
    np.testing.assert_allclose(final[:, labels.index("one")], 1.0)
    active = tc.active_directions(frac_prevs, tm.random_inputs(frac_prevs, 200, seed=0))
    inactive = {lab for lab, a in zip(labels, active) if not a}
    assert inactive == {"one", "tokens:BOS", "tokens:compiler_pad"}


@pytest.mark.parametrize("name", ["frac_prevs", "sort", "hist"])
def test_compiled_outputs_match_rasp_evaluation(name, frac_prevs):
    prog = frac_prevs if name == "frac_prevs" else tm.compile_program(name)
    for length in (prog.max_seq_len, 3):
        seqs = tm.random_inputs(prog, 100, seed=7, length=length)
        got = tm.decode_outputs(prog, tm.forward(prog, tm.encode(prog, seqs)).output)[:, 1:]
        want = tm.rasp_outputs(prog, seqs)
        if prog.numerical_output:
            np.testing.assert_allclose(got.astype(float), np.array(want, float), atol=1e-4)
        else:
            assert got.tolist() == want
    assert tc.check_compression(prog, None, seqs).accuracy == 1.0


def test_sort_and_hist_are_the_library_programs():
    sort, hist = tm.compile_program("sort"), tm.compile_program("hist")
    seq = [3, 1, 2, 2, 5]
    out = tm.decode_outputs(sort, tm.forward(sort, tm.encode(sort, [seq])).output)
    assert out[0, 1:].tolist() == [1, 2, 2, 3, 5]
    out = tm.decode_outputs(hist, tm.forward(hist, tm.encode(hist, [list("abac")])).output)
    assert out[0, 1:].tolist() == [2, 1, 2, 1]
    assert "target_pos:0" in sort.residual_labels and "sort:5" in sort.residual_labels


def test_bad_inputs_are_named(frac_prevs):
    with pytest.raises(ValueError, match="not in the vocab"):
        tm.encode(frac_prevs, [list("abz")])
    with pytest.raises(ValueError, match="one length"):
        tm.encode(frac_prevs, [list("ab"), list("abc")])
    with pytest.raises(ValueError, match="unknown Tracr program"):
        tm.compile_program("nope")
    with pytest.raises(ValueError, match="length"):
        tm.random_inputs(frac_prevs, 2, seed=0, length=99)
    with pytest.raises(ValueError, match="width"):
        tc.train_compression(frac_prevs, tc.CompressionConfig(width=99))
    with pytest.raises(ValueError, match="steps"):
        tc.CompressionConfig(width=4, steps=0)
    with pytest.raises(ValueError, match="init"):
        tc.CompressionConfig(width=4, init="svd")


def test_disk_cache_roundtrip_and_corruption(frac_prevs, tmp_path):
    tm._save(frac_prevs, tmp_path)
    back = tm._load(tmp_path)
    assert back.residual_labels == frac_prevs.residual_labels
    assert back.input_encoding == frac_prevs.input_encoding
    ids = tm.encode(frac_prevs, tm.random_inputs(frac_prevs, 4, seed=0))
    # exact: the same program on bit-identical reloaded weights
    np.testing.assert_array_equal(tm.forward(back, ids).output,
                                  tm.forward(frac_prevs, ids).output)
    blob = bytearray((tmp_path / "params.npz").read_bytes())
    blob[len(blob) // 2] ^= 0xFF
    (tmp_path / "params.npz").write_bytes(bytes(blob))
    with pytest.raises(ValueError, match="corrupt compiled-Tracr cache"):
        tm._load(tmp_path)


def test_identity_compression_is_the_compiled_model(frac_prevs):
    seqs = tm.random_inputs(frac_prevs, 50, seed=3)
    ids = tm.encode(frac_prevs, seqs)
    a = tm.forward(frac_prevs, ids)
    b = tm.forward(frac_prevs, ids, tc.identity_embedding(frac_prevs))
    np.testing.assert_allclose(a.residuals, b.residuals, atol=1e-6)
    gt = tc.ground_truth_directions(tc.identity_embedding(frac_prevs))
    np.testing.assert_allclose(gt, np.eye(frac_prevs.d_model))


def test_compression_accuracy_is_measured(frac_prevs):
    """Training a width-12 projection lowers the loss and the output error relative to its
    own initialisation; full width starts (PCA) and stays exact; an untrained width-4
    projection breaks the program. The report measures accuracy rather than assuming it."""
    seqs = tm.random_inputs(frac_prevs, 300, seed=11)
    cfg = tc.CompressionConfig(width=12, steps=400, n_train=1024, seed=0)
    w, history = tc.train_compression(frac_prevs, cfg, progress=False)
    assert w.shape == (12, frac_prevs.d_model)
    assert history["loss"].shape == (400,)
    assert history["loss"][-50:].mean() < 0.5 * history["loss"][:10].mean()
    w0 = tc.init_embedding(frac_prevs, cfg)
    before, after = tc.check_compression(frac_prevs, w0, seqs), tc.check_compression(frac_prevs, w, seqs)
    assert after.output_mse < 0.5 * before.output_mse
    assert 0.0 <= after.accuracy <= 1.0 and after.width == 12

    full = tc.CompressionConfig(width=frac_prevs.d_model, steps=200, n_train=1024, seed=0)
    assert tc.check_compression(frac_prevs, tc.init_embedding(frac_prevs, full), seqs).accuracy == 1.0
    w_full, _ = tc.train_compression(frac_prevs, full, progress=False)
    assert tc.check_compression(frac_prevs, w_full, seqs).accuracy == 1.0

    w_bad = jax.random.normal(jax.random.PRNGKey(0), (4, frac_prevs.d_model))
    bad = tc.check_compression(frac_prevs, w_bad, seqs)
    assert bad.accuracy < 0.5
    assert bad.min_fidelity() < 0.9
    assert set(bad.layer_error) == set(tm.site_names(frac_prevs)[1:])
    data = tc.residual_dataset(frac_prevs, w_bad, seqs)
    assert data.shape == (300 * frac_prevs.max_seq_len, 4)


def _round_gains(h):
    """Relative improvement of the best check loss made by each round."""
    before = np.concatenate([[h["start_check_loss"]], h["round_best"][:-1]])
    return (before - h["round_best"]) / before


def test_compression_rounds_stop_at_the_plateau(frac_prevs):
    """The stopping rule: rounds (warm restarts from the best W_emb) continue while one
    improves the best check loss by more than `plateau_tolerance` of it and stop at the first
    that does not; one round is the fixed budget (same numbers as before rounds existed)."""
    one = tc.CompressionConfig(width=12, steps=100, n_train=512, seed=0)
    _, h1 = tc.train_compression(frac_prevs, one, progress=False)
    assert h1["round_best"].shape == (1,) and h1["loss"].shape == (100,)
    assert h1["round_best"][0] < h1["start_check_loss"]

    for tol in (0.2, 0.0):
        cfg = tc.CompressionConfig(width=12, steps=100, n_train=512, seed=0, max_rounds=4,
                                   plateau_tolerance=tol)
        _, h = tc.train_compression(frac_prevs, cfg, progress=False)
        gains, n = _round_gains(h), len(h["round_best"])
        assert h["loss"].shape == (100 * n,)
        np.testing.assert_allclose(h["round_best"][0], h1["round_best"][0], rtol=1e-5)
        assert np.all(gains >= 0)                      # the best never gets worse
        assert np.all(gains[:-1] > tol)                # every round but the last improved
        assert h["plateaued"] == bool(gains[-1] <= tol)
        assert h["plateaued"] or n == 4                # stopped by the rule or by the cap
        if tol == 0.2:
            loose = n
    assert n >= loose  # a stricter tolerance trains at least as long

    with pytest.raises(ValueError, match="plateau_tolerance"):
        tc.CompressionConfig(width=4, plateau_tolerance=1.0)
    with pytest.raises(ValueError, match="max_rounds"):
        tc.CompressionConfig(width=4, max_rounds=0)
