"""The toy-models page's reductions and verdict rules on synthetic results with known answers."""

import numpy as np
import pytest

from interp import claims, stats
from interp.experiments import toy_models as tmx

SPARSE = [0.1, 0.03]
ARCHS = ["relu", "gated", "topk"]


def tms_rows(recovered_by_arch, p_values=SPARSE, cos_hit=0.99, cos_miss=0.5):
    """One best-of-sweep row per (p, arch) from 0/1 recovery patterns per feature, plus a worse
    sweep member that must never be picked."""
    rows = []
    for arch, pattern in recovered_by_arch.items():
        for p in p_values:
            max_cos = np.where(np.asarray(pattern, bool), cos_hit, cos_miss)
            rows.append({"p": p, "arch": arch, "setting": 0, "max_cos": max_cos,
                         "fraction_recovered": float(np.mean(pattern)),
                         "mmcs": float(max_cos.mean())})
            rows.append({"p": p, "arch": arch, "setting": 1, "max_cos": np.zeros(len(pattern)),
                         "fraction_recovered": 0.0, "mmcs": 0.0})
    return rows


def width_row(program, width, accuracy, readout, n_varying=10):
    return {"program": program, "width": width, "n_varying": n_varying, "accuracy": accuracy,
            "probe_min_accuracy": readout}


def run_verdicts(rows, per_width, architectures=ARCHS, **kw):
    args = dict(architectures=architectures, tms_probabilities=[1.0, *SPARSE],
                sparse_max_probability=0.5, recovery_threshold=0.9, t1_fraction_bar=0.9,
                t2_margin=0.1, accuracy_bar=0.95, readout_bar=0.95, seed=0)
    args.update(kw)
    return {c.claim_id: c for c in tmx.verdicts(rows, per_width, **args)}


# ------------------------------------------------------------------ reductions
def test_recovered_per_feature_pools_sparse_settings_from_the_best_sweep_member():
    rows = tms_rows({"relu": [1, 1, 0, 1]})
    got = tmx.recovered_per_feature(rows, "relu", SPARSE, 0.9)
    np.testing.assert_array_equal(got, [1, 1, 0, 1, 1, 1, 0, 1])


def test_variant_parts_are_mirrored_paired_differences():
    rows = tms_rows({"relu": [1, 1, 1, 1], "topk": [1, 0, 1, 1]})
    parts = tmx.variant_parts(rows, ["relu", "topk"], SPARSE, 0.9)
    assert set(parts) == {"topk - relu", "relu - topk"}
    assert parts["topk - relu"].mean == pytest.approx(-0.25)
    assert parts["relu - topk"].mean == pytest.approx(0.25)
    assert parts["topk - relu"].n == 8


def test_probe_readout_reads_a_rotated_stream_and_fails_on_a_projected_one():
    rng = np.random.default_rng(0)
    n, variables = 400, {"tokens": np.array([0, 1]), "cat": np.array([2, 3, 4]),
                         "num": np.array([5])}
    compiled = np.zeros((n, 6))
    compiled[np.arange(n), rng.integers(0, 2, n)] = 1
    compiled[np.arange(n), 2 + rng.integers(0, 3, n)] = 1
    compiled[:, 5] = rng.integers(0, 4, n) / 4
    rotation = np.linalg.qr(rng.normal(size=(6, 6)))[0]
    kept = tmx.probe_readout(compiled[:300] @ rotation, compiled[:300],
                             compiled[300:] @ rotation, compiled[300:], variables)
    assert set(kept["accuracy"]) == {"cat", "num"}  # input variables are skipped
    assert kept["min_accuracy"] == pytest.approx(1.0)
    assert kept["r2"] == pytest.approx(1.0, abs=1e-6)
    lost = compiled[:, :2]  # only the tokens survive: no computed variable is readable
    dropped = tmx.probe_readout(lost[:300], compiled[:300], lost[300:], compiled[300:], variables)
    assert dropped["min_accuracy"] < 0.7
    assert dropped["r2"] < 0.2


def test_split_by_output_separates_failures_to_compress():
    items = tmx.compressed_items([width_row("a", 12, 1.0, 1.0), width_row("a", 8, 0.99, 0.5),
                                  width_row("a", 6, 0.4, 0.2)])
    kept, broken = tmx.split_by_output(items, 0.95)
    assert [r["width"] for r in kept] == [8] and [r["width"] for r in broken] == [6]


# ------------------------------------------------------------------ T-1
def test_t1_all_recovered_is_reproduced_and_half_is_not():
    # 40 of 40 recovered: exact 95% lower bound 0.91 > 0.9 (10 of 10 would give 0.69)
    full = run_verdicts(tms_rows({a: [1] * 40 for a in ARCHS}), [])["T-1"]
    assert full.verdict == stats.REPRODUCED and full.rule == "threshold"
    assert full.source == "replicated"
    half = run_verdicts(tms_rows({a: [1, 0] * 5 for a in ARCHS}), [])["T-1"]
    assert half.verdict == stats.NOT_REPRODUCED


def test_t1_borderline_and_too_few_features_are_inconclusive():
    border = run_verdicts(tms_rows({a: [1] * 9 + [0] for a in ARCHS}), [])["T-1"]
    assert border.verdict == stats.INCONCLUSIVE  # 90% recovered: the CI straddles the bar
    few = run_verdicts(tms_rows({a: [1] for a in ARCHS}, p_values=[0.1]), [])["T-1"]
    assert few.verdict == stats.INCONCLUSIVE  # n = 1 < 3
    none = run_verdicts(tms_rows({a: [1] * 10 for a in ARCHS}, p_values=[1.0]), [])["T-1"]
    assert none.verdict == stats.INCONCLUSIVE and "no sparse setting" in none.reason


# ------------------------------------------------------------------ T-2
def test_t2_identical_variants_are_reproduced():
    c = run_verdicts(tms_rows({a: [1] * 20 for a in ARCHS}), [])["T-2"]
    assert c.verdict == stats.REPRODUCED and c.rule == "all_parts" and c.source == "post"
    assert c.effect["margin"] == 0.1 and len(c.effect["parts"]) == 4


def test_t2_identical_variants_on_few_features_are_inconclusive_not_certain():
    """5 features x 2 settings, all recovered by every variant: a bootstrap of the differences
    would be [0, 0] and call the variants equal; the paired-proportions interval is +-0.21 at
    90% with 10 features, wider than the margin."""
    c = run_verdicts(tms_rows({a: [1] * 5 for a in ARCHS}), [])["T-2"]
    assert c.verdict == stats.INCONCLUSIVE
    part = c.effect["parts"]["gated - relu"]
    assert part["ci"][0] < -0.1 and part["ci"][1] > 0.1 and part["p"] == 1.0


@pytest.mark.parametrize("worse", ["gated", "topk"])
def test_t2_a_variant_that_recovers_fewer_features_refutes(worse):
    patterns = {a: [1] * 20 for a in ARCHS}
    patterns[worse] = [1, 0] * 10  # recovers half: the setting ranks it
    assert run_verdicts(tms_rows(patterns), [])["T-2"].verdict == stats.NOT_REPRODUCED


def test_t2_better_variant_refutes_too():
    patterns = {"relu": [1, 0] * 10, "gated": [1] * 20, "topk": [1, 0] * 10}
    assert run_verdicts(tms_rows(patterns), [])["T-2"].verdict == stats.NOT_REPRODUCED


def test_t2_noisy_small_difference_is_inconclusive():
    patterns = {"relu": [1] * 4, "gated": [1, 1, 1, 0], "topk": [1] * 4}
    c = run_verdicts(tms_rows(patterns, p_values=[0.1]), [])["T-2"]
    assert c.verdict == stats.INCONCLUSIVE  # 4 features: cannot place a 25% difference


def test_t2_one_architecture_is_not_tested():
    c = run_verdicts(tms_rows({"relu": [1] * 10}), [], architectures=["relu"])["T-2"]
    assert c.verdict == stats.NOT_TESTED and "nothing to rank" in c.reason


# ------------------------------------------------------------------ T-3
def test_t3_kept_output_with_unreadable_intermediates_is_reproduced():
    per_width = [width_row(p, w, 1.0, 0.5 + 0.01 * w) for p in "abc" for w in (4, 6, 8)]
    c = run_verdicts([], per_width)["T-3"]
    assert c.verdict == stats.REPRODUCED and c.rule == "threshold" and c.source == "post"
    assert c.effect["higher_is_reproduced"] is False and c.effect["threshold"] == 0.95


def test_t3_kept_output_and_readable_intermediates_is_not_reproduced():
    per_width = [width_row(p, w, 0.99, 1.0 - 0.001 * w) for p in "abc" for w in (4, 6, 8)]
    assert run_verdicts([], per_width)["T-3"].verdict == stats.NOT_REPRODUCED


def test_t3_broken_outputs_are_failures_to_compress_not_algorithm_changes():
    """The old rule counted a broken program as 'changed the algorithm' (reproduced)."""
    per_width = [width_row(p, w, 0.3, 0.1) for p in "abc" for w in (4, 6, 8)]
    c = run_verdicts([], per_width)["T-3"]
    assert c.verdict == stats.INCONCLUSIVE
    assert "failures to compress" in c.reason
    assert len(c.numbers["failures to compress (output broken)"]) == 9


def test_t3_only_kept_compressions_are_judged_and_wide_ones_are_ignored():
    per_width = ([width_row("a", w, 1.0, 1.0) for w in (4, 6, 8)]
                 + [width_row("b", w, 0.2, 0.0) for w in (4, 6, 8)]   # broken: ignored
                 + [width_row("c", 12, 1.0, 0.0)])                     # not compressed
    c = run_verdicts([], per_width)["T-3"]
    assert c.verdict == stats.NOT_REPRODUCED and c.effect["n"] == 3


def test_t3_fewer_than_three_kept_compressions_is_inconclusive():
    per_width = [width_row("a", 4, 1.0, 0.2), width_row("a", 6, 1.0, 0.2),
                 width_row("a", 8, 0.5, 0.2)]
    assert run_verdicts([], per_width)["T-3"].verdict == stats.INCONCLUSIVE


def test_t3_without_compressed_widths_is_inconclusive_with_reason():
    c = run_verdicts([], [width_row("a", 12, 1.0, 1.0)])["T-3"]
    assert c.verdict == stats.INCONCLUSIVE and "no compression" in c.reason


def test_verdicts_record_every_claim_once(monkeypatch):
    monkeypatch.setattr(claims, "_recorded", [])
    run_verdicts(tms_rows({a: [1] * 10 for a in ARCHS}), [width_row("a", 4, 1.0, 0.2)])
    assert [c.claim_id for c in claims.recorded()] == ["T-1", "T-2", "T-3"]


def test_t2_without_sparse_features_is_inconclusive_with_reason():
    c = run_verdicts(tms_rows({a: [1] * 10 for a in ARCHS}, p_values=[1.0]), [])["T-2"]
    assert c.verdict == stats.INCONCLUSIVE and "no sparse setting" in c.reason


def test_t2_a_variant_missing_a_sparsity_is_an_error_that_names_it():
    rows = tms_rows({"relu": [1] * 5}) + tms_rows({"topk": [1] * 5}, p_values=[0.1])
    with pytest.raises(ValueError, match="'topk' has 5 scored features but 'relu' has 10"):
        tmx.variant_parts(rows, ["relu", "topk"], SPARSE, 0.9)


def test_train_sae_sweep_trains_one_topk_sae_per_k_clipped_to_the_width():
    """(The vmapped L1 path runs on every smoke build of the page; this one has the logic.)"""
    from interp import sae
    from interp.toy import tms

    w = np.random.default_rng(0).normal(size=(2, 4))
    data = tms.HiddenActivations(w, 0.3, 16, seed=0)
    base = sae.SAEConfig(d_in=2, d_sae=3, architecture="topk", l1_coeff=0.01, k=1, lr=1e-3,
                         batch_size=16, steps=2, lr_warmup_steps=1, seed=0)
    models = tmx.train_sae_sweep(base, data, [0.01, 0.1], [1, 5])  # k = 5 clipped to d_sae
    assert [m.config.k for m in models] == [1, 3]
    assert all(np.asarray(m.params["W_dec"]).shape == (3, 2) for m in models)
