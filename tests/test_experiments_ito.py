"""Tests for interp.experiments.ito: the ITO page's reductions (frontiers, per-context items,
the dictionary pairs of claim I2, pruning, timings) and its claim rules I1..I6 on synthetic
results whose answer is known."""

import functools

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from interp import claims, hooks, ito, lm_sae, models
from interp.experiments import ito as ex
from interp import sae, stats
from interp.stats import INCONCLUSIVE, NOT_REPRODUCED, NOT_TESTED, REPRODUCED

N_BOOT = 10_000  # the cpu profile's: Holm across SAEs needs p-values below 0.05 / n_sae


def unit_rows(a):
    return a / np.linalg.norm(a, axis=1, keepdims=True)


@functools.cache
def small_problem():
    """About 12 active atoms of 192 in R^48, plus noise: pursuits trade error for L0."""
    rng = np.random.default_rng(1)
    n, d, batch = 192, 48, 40
    D = unit_rows(rng.normal(size=(n, d))).astype(np.float32)
    A = np.where(rng.random((batch, n)) < 12 / n, rng.exponential(1.0, (batch, n)), 0.0)
    return D, (A @ D + 0.3 * rng.normal(size=(batch, d))).astype(np.float32)


def fvu_of(X, codes, D):
    x_hat = np.asarray(codes.decode(D))
    return float(np.sum((X - x_hat) ** 2) / np.sum((X - X.mean(0)) ** 2))


# ------------------------------------------------------------------ reductions
@functools.cache
def reference_frontier(k_max=6):
    """One unbatched pursuit frontier on the small problem (compiled once for these tests)."""
    D, X = small_problem()
    return ito.gradient_pursuit(D, X, k_max, frontier=True, precision="highest")


def test_pursuit_frontier_reads_one_batched_run_at_each_k():
    D, X = small_problem()
    front = ex.pursuit_frontier(D, X, [2, 6, 4], batch_size=20, precision="highest")
    assert front.ks.tolist() == [2, 4, 6] and front.sq_err.shape == (3, len(X))
    for j, k in enumerate(front.ks):
        codes = reference_frontier().at(int(k))
        np.testing.assert_allclose(ex.fvu(front.sq_err[j], X), fvu_of(X, codes, D), rtol=1e-4)
        assert front.l0[j] == pytest.approx(float(np.mean(np.asarray(codes.l0()))))
    assert np.all(np.diff(ex.fvu(front.sq_err, X)) < 0)  # more atoms, smaller error
    with pytest.raises(ValueError, match="positive"):
        ex.pursuit_frontier(D, X, [0, 2])


def test_encoder_errors_of_an_ito_encoder():
    D, X = small_problem()
    l0, err = ex.encoder_errors(ito.encoder(D, k=4, precision="highest"), X, batch_size=20)
    codes = reference_frontier().at(4)
    assert l0 == pytest.approx(float(np.mean(np.asarray(codes.l0()))))
    np.testing.assert_allclose(ex.fvu(err, X), fvu_of(X, codes, D), rtol=1e-4)


def test_context_items_average_to_the_fvu_difference():
    rng = np.random.default_rng(0)
    X = rng.normal(size=(60, 5))
    groups = np.repeat([3, 7, 9, 11], 15)  # any ids
    a, b = rng.uniform(0, 1, 60), rng.uniform(0, 2, 60)
    items = ex.context_items(b - a, groups, ex.total_variance(X))
    assert items.shape == (4,)
    assert items.mean() == pytest.approx(float(ex.fvu(b, X) - ex.fvu(a, X)))
    gain = ex.fvu_gain(a, b, X, groups, n_boot=N_BOOT, seed=0)
    assert gain.n == 4 and gain.mean == pytest.approx(items.mean())
    with pytest.raises(ValueError, match="same number of rows"):
        ex.context_items(a[:10], groups, 1.0)
    with pytest.raises(ValueError, match="rows"):
        ex.fvu_gain(a[:10], b[:10], X, groups, n_boot=N_BOOT, seed=0)


def test_frontier_errors_at_l0_interpolates_in_log_l0():
    front = ex.FrontierErrors(np.array([1, 4]), np.array([1.0, 4.0]),
                              np.array([[3.0, 5.0], [1.0, 1.0]]))
    np.testing.assert_allclose(ex.frontier_errors_at_l0(front, 2.0), [2.0, 3.0])  # log midpoint
    np.testing.assert_allclose(ex.frontier_errors_at_l0(front, 4.0), [1.0, 1.0])
    assert np.isnan(ex.frontier_errors_at_l0(front, 8.0)).all()
    assert ex.interpolate_log_l0([1, 4], [3.0, 1.0], 2.0) == pytest.approx(2.0)
    assert np.isnan(ex.interpolate_log_l0([1, 4], [3.0, 1.0], 0.5))


def test_frontier_ks_reach_this_and_every_lower_encoder_l0_only():
    ks = ex.frontier_ks([2, 8], [10.0, 3.0, 40.0], own=0, n_latents=100)
    # test ks, plus ceil(1.05 L0) + 1 for L0 3 and 10 (not 40: above this SAE's own L0)
    assert ks == [2, 5, 8, 12]
    assert max(ex.frontier_ks([2], [10.0, 3.0, 400.0], own=2, n_latents=100)) == 100


def _planted_fronts(quality, train_l0, rng):
    """Frontiers on an L0 grid whose errors are base(L0) * quality[i] * row noise."""
    grid = np.array([1.0, 2, 4, 8, 16, 32, 64, 128])
    rows = rng.uniform(0.5, 1.5, 50)
    return [ex.FrontierErrors(grid.astype(int), grid, q * np.outer(1 / np.sqrt(grid), rows)
                              * rng.uniform(0.95, 1.05, (len(grid), 50)))
            for q in quality]


def test_dictionary_pairs_compare_each_sae_with_the_next_higher_l0_at_its_own_l0():
    rng = np.random.default_rng(0)
    X = rng.normal(size=(50, 3))
    train_l0 = np.array([16.0, 4.0, 64.0])  # unsorted on purpose
    fronts = _planted_fronts([1.0, 2.0, 0.5], train_l0, rng)
    pairs = ex.dictionary_pairs(train_l0, fronts, X)
    assert [p["test L0"] for p in pairs] == [4.0, 16.0]
    assert [p["higher training L0"] for p in pairs] == [16.0, 64.0]
    assert [p["log_gain"] for p in pairs] == pytest.approx([np.log(2), np.log(2)], abs=0.05)
    far = ex.dictionary_pairs(np.array([0.5, 4.0]), fronts[:2], X)  # 0.5 is off the grid
    assert np.isnan(far[0]["log_gain"])


def test_dictionary_transfer_table():
    rng = np.random.default_rng(1)
    X = rng.normal(size=(120, 4))
    groups = np.repeat(np.arange(12), 10)
    err = rng.uniform(1.0, 2.0, (3, 5, 120))
    err[2] -= 0.8
    train_l0, ks = np.array([4.0, 16.0, 64.0]), np.array([2, 4, 16, 64, 200])
    table = ex.dictionary_transfer(train_l0, ks, err, X, groups, n_boot=N_BOOT)
    assert table.test_ks.tolist() == [4, 16, 64]  # only ks inside the training-L0 range
    assert table.best.tolist() == [2, 2, 2] and table.matched.tolist() == [0, 1, 2]
    assert table.advantage[0] > 5 * table.advantage_se[0] and table.advantage[2] == 0
    assert table.rows(train_l0)[0]["best training L0"] == 64.0
    with pytest.raises(ValueError, match="n_decoders"):
        ex.dictionary_transfer(train_l0[:2], ks, err, X, groups)


def test_tiny_activation_pruning_drops_only_tiny_latents():
    """An 'SAE' whose codes are exact plus many tiny spurious activations: pruning them cuts L0
    a lot and barely changes FVU."""
    rng = np.random.default_rng(2)
    n, d = 40, 20
    W = unit_rows(rng.normal(size=(n, d))).astype(np.float32)
    true = np.where(rng.random((300, n)) < 0.1, rng.uniform(1.0, 2.0, (300, n)), 0.0)
    true[:, 0] = 1.0  # every row has a real activation to measure "tiny" against
    spurious = rng.uniform(0, 1e-3, true.shape) * (rng.random(true.shape) < 0.3)
    noisy = np.where(true > 0, true, spurious)
    X = (true @ W).astype(np.float32)

    class Fake:
        def encode(self, x):
            return noisy[:len(x)].astype(np.float32)

        def decode(self, f):
            return np.asarray(f) @ W

        decoder_norms = np.ones(n)  # a property on interp.sae.SAE

    out = ex.tiny_activation_pruning(Fake(), X, [0.01], batch_size=300)
    assert out["threshold"].tolist() == [0.0, 0.01]
    assert out["l0"][1] == pytest.approx(float((true > 0).sum(-1).mean()))
    assert out["l0"][0] > 2 * out["l0"][1]
    assert out["fvu"][1] < 1e-6 and out["fvu"][0] < 1e-4
    fraction, t = ex.prunable_fraction(out, max_fvu_increase=0.01)
    assert t == 0.01 and fraction == pytest.approx(1 - out["l0"][1] / out["l0"][0])


def test_interleaved_times_one_positive_sample_per_repeat_and_arm():
    fn = jax.jit(lambda a: a @ a)
    times = ex.interleaved_times({"a": fn, "b": fn}, jnp.ones((32, 32)), repeats=3)
    assert set(times) == {"a", "b"} and all(t.shape == (3,) for t in times.values())
    assert all(np.all((t > 0) & (t < 10)) for t in times.values())


def test_site_activations_match_the_model_capture_and_groups_name_their_context():
    m = models.load("tiny-llama")
    tokens = np.array([[1, 5, 9, 33, 7], [1, 70, 2, 11, 4], [1, 3, 3, 3, 3]], np.int32)
    x = lm_sae.site_activations(m, "blocks.1.resid_post", tokens, batch_size=2)
    groups = ex.context_groups(tokens)
    assert x.shape == (3 * 4, m.cfg.d_model) and x.dtype == np.float32
    assert groups.tolist() == [0] * 4 + [1] * 4 + [2] * 4
    ref = m.forward(jnp.asarray(tokens), hooks.capture("resid_post", layers=1)).captures
    ref = np.asarray(ref["resid_post"]).reshape(-1, *tokens.shape, m.cfg.d_model)[-1]
    np.testing.assert_allclose(x, ref[:, 1:].reshape(-1, m.cfg.d_model), rtol=1e-5, atol=1e-5)
    with pytest.raises(ValueError, match="tokens"):
        lm_sae.site_activations(m, "blocks.1.resid_post", tokens[0])
    with pytest.raises(ValueError, match="tokens"):
        ex.context_groups(tokens[0])


# ------------------------------------------------------------------ claim rules
N_CTX, ROWS_PER_CTX = 16, 10
RULES = dict(max_time_ratio=1.25, claim_max_topk=4, min_speedup=1.5, max_rel_cost=0.1,
             max_fvu_increase=0.01, min_l0_fraction=0.2)


def _sweeps(quality, alive_quality, train_l0, x, rng, n_seeds):
    """One `SweepDictionaries` per seed from planted frontiers (quality jittered by 2% per
    seed); alive_quality=None leaves the alive-atom control out."""
    out = []
    for _ in range(n_seeds):
        jitter = rng.uniform(0.98, 1.02, len(quality))
        pairs = ex.dictionary_pairs(train_l0, _fronts(np.asarray(quality) * jitter, train_l0,
                                                      x, rng), x)
        alive = None if alive_quality is None else ex.dictionary_pairs(
            train_l0, _fronts(np.asarray(alive_quality) * jitter, train_l0, x, rng), x)
        out.append(ex.SweepDictionaries(train_l0, pairs, alive, np.full(len(quality), 100)))
    return out


def _fronts(quality, train_l0, x, rng):
    return [ex.FrontierErrors(f.ks, f.l0, np.resize(f.sq_err, (len(f.ks), len(x))))
            for f in _planted_fronts(quality, train_l0, rng)]


def _results(*, ito_shift=0.0, n_ctx=N_CTX, n_sae=5, quality_slope=0.5, exact_shift=-0.3,
             exact_time=1.0, repeats=4, topk_time=0.3, topk_cost=0.02, prune_fraction=0.4,
             null_contexts=False, quality=None, seed=0, n_seeds=3, alive_quality="same"):
    """Synthetic results with planted effects:
    ito_shift: ITO's per-row error minus the encoder's (and the rescaled encoder's) (< 0: ITO
    better); quality_slope: each decoder's error is exp(-slope * rank) (> 0: higher-L0 decoders
    better); exact_shift: exact-step error minus the best fixed step's; exact_time: its seconds
    over the fixed step's; topk_time / topk_cost: m=4's seconds and relative error over m=1's;
    prune_fraction: the share of L0 removable at no FVU cost; quality: each decoder's error
    factor (overrides quality_slope). null_contexts: ITO's error differs
    from the encoder's by +-1 on alternate contexts (mean exactly 0). n_seeds: sweeps for I2,
    whose alive-atom control plants `alive_quality` ("same": as the whole decoders; None: the
    control is not run)."""
    rng = np.random.default_rng(seed)
    n = n_ctx * ROWS_PER_CTX
    x = rng.normal(size=(n, 4))
    groups = np.repeat(np.arange(n_ctx), ROWS_PER_CTX)
    train_l0 = 4.0 * 2.0 ** np.arange(n_sae)
    enc = rng.uniform(1.0, 2.0, (n_sae, n))
    shift = np.where(groups % 2 == 0, 1.0, -1.0) if null_contexts else ito_shift
    ito_err = enc + shift + rng.normal(0, 0.01, enc.shape) * (not null_contexts)
    if quality is None:
        quality = np.exp(-quality_slope * np.arange(n_sae))
    fronts = _fronts(quality, train_l0, x, rng)
    alive_quality = quality if isinstance(alive_quality, str) else alive_quality
    sweeps = _sweeps(quality, alive_quality, train_l0, x, rng, n_seeds)
    base = rng.uniform(1.0, 2.0, n)
    jitter = rng.uniform(0.97, 1.03, (4, repeats))
    prune = {"threshold": np.array([0.0, 0.01, 0.1]), "fvu": np.array([0.1, 0.1, 0.5]),
             "l0": np.array([100.0, 100.0 * (1 - prune_fraction), 10.0])}
    return ex.Results(
        x=x, groups=groups, train_l0=train_l0, encoder_err=enc, ito_err_at_encoder=ito_err,
        fronts=fronts, rescaled_err=enc.copy(),
        step_err={"exact": base + exact_shift, 0.1: base, 0.4: base + 0.5},
        step_times={"exact": exact_time * jitter[0], 0.1: jitter[1], 0.4: jitter[1]},
        step_k=8, topk_err={1: base, 4: base * (1 + topk_cost)},
        topk_times={1: jitter[2], 4: topk_time * jitter[3]}, topk_k=16,
        pruning=[{**prune, "l0": prune["l0"] * rng.uniform(0.9, 1.1)} for _ in range(n_sae)],
        sweeps=sweeps)


def _verdicts(r, n_boot=N_BOOT):
    return {c.claim_id: c for c in ex.verdicts(r, n_boot=n_boot, seed=0, **RULES)}


def test_planted_effects_are_reproduced_with_sources_and_timing_marks():
    out = _verdicts(_results(ito_shift=-0.5))
    assert list(out) == ["I1", "I2", "I3", "I4", "I5", "I6"]
    assert {k: c.verdict for k, c in out.items()} == dict.fromkeys(out, REPRODUCED)
    assert [out[k].source for k in out] == ["post", "post"] + ["exploratory"] * 4
    assert out["I1"].rule == "all_parts" and len(out["I1"].effect["parts"]) == 5
    assert out["I1"].effect["parts"]["SAE 0 (training L0 4.0)"]["n"] == N_CTX
    # the unit of I2 is the trained sweep: t over 3 seeds, for all atoms and alive atoms only
    assert out["I2"].rule == "all_parts"
    assert set(out["I2"].effect["parts"]) == {"all atoms", "alive atoms only"}
    assert all(v["n"] == 3 and v["method"] == stats.T_OVER_SEEDS
               for v in out["I2"].effect["parts"].values())
    assert out["I6"].effect["threshold"] == 0.2 and out["I6"].effect["n"] == 5
    for cid in ("I4", "I5"):
        assert "timing" in out[cid].numbers
        time_part = next(v for k, v in out[cid].effect["parts"].items() if k.startswith("time"))
        assert time_part["method"] == ex.T_OVER_REPEATS and time_part["n"] == 4


def test_opposite_effects_are_not_reproduced():
    r = _results(ito_shift=+0.5, quality_slope=-0.5, exact_shift=+0.3, exact_time=3.0,
                 topk_time=0.95, topk_cost=0.5, prune_fraction=0.01)
    assert {k: c.verdict for k, c in _verdicts(r).items()} == dict.fromkeys(
        ["I1", "I2", "I3", "I4", "I5", "I6"], NOT_REPRODUCED)


def test_null_effects_are_inconclusive():
    # decoders alternately 20% better and worse: the pairs' log gains cancel on average
    r = _results(null_contexts=True, quality=[1.0, 1.2, 1.0, 1.2, 1.0], exact_shift=0.0,
                 exact_time=1.25, topk_time=1 / 1.5, topk_cost=0.1, prune_fraction=0.2)
    out = _verdicts(r)
    assert {k: c.verdict for k, c in out.items()} == dict.fromkeys(out, INCONCLUSIVE)
    assert all(abs(v["mean"]) < 0.01 for v in out["I2"].effect["parts"].values())


def test_too_few_replications_are_inconclusive():
    # 2 held-out contexts per SAE (I1, I3), 2 seeds of the sweep (I2), 2 timing repeats (I4,
    # I5), 2 SAEs pruned (I6): every claim is inconclusive however large the planted effect
    r = _results(ito_shift=-0.5, n_ctx=2, n_sae=3, repeats=2, n_seeds=2)
    r.pruning = r.pruning[:2]
    out = _verdicts(r)
    assert {k: c.verdict for k, c in out.items()} == dict.fromkeys(out, INCONCLUSIVE)
    assert out["I2"].effect["parts"]["all atoms"]["n"] == 2


def test_i2_needs_the_alive_atom_control_to_agree():
    # whole decoders: higher L0 better; restricted to alive atoms: reliably worse
    out = _verdicts(_results(ito_shift=-0.5, alive_quality=np.exp(0.5 * np.arange(5))))
    assert out["I2"].verdict == NOT_REPRODUCED
    # alive atoms tell nothing (alternately better and worse): inconclusive, not reproduced
    out = _verdicts(_results(ito_shift=-0.5, alive_quality=[1.0, 1.2, 1.0, 1.2, 1.0]))
    assert out["I2"].verdict == INCONCLUSIVE
    # without the control the whole decoders decide, by the directional rule
    out = _verdicts(_results(ito_shift=-0.5, alive_quality=None))
    assert out["I2"].verdict == REPRODUCED and out["I2"].rule == "directional"
    assert out["I2"].effect["n"] == 3


def test_i2_ks_stop_where_the_claim_stops_reading():
    l0 = [100.0, 59.3, 33.2, 4.9]
    assert max(ex.i2_ks([2, 4, 64], l0, 1, 1152)) == 64  # own L0 59.3 -> k 64
    assert max(ex.i2_ks([2, 4, 64], l0, 0, 1152)) == 64  # the top SAE: its lower neighbour's
    assert max(ex.i2_ks([2, 4, 64], l0, 3, 1152)) == 7   # ceil(4.9 * 1.05) + 1
    assert ex.i2_ks([2, 4, 64], l0, 2, 1152) == [2, 4, 7, 36]


def test_missing_ingredients_are_not_tested_with_a_reason():
    r = _results(ito_shift=-0.5)
    r.rescaled_err = None
    r.ito_err_at_encoder = np.full_like(r.encoder_err, np.nan)  # no encoder L0 on a frontier
    r.pruning = []
    r.step_err = {"exact": r.step_err["exact"]}  # no fixed step to compare with
    out = _verdicts(r)
    for cid in ("I1", "I3", "I4", "I6"):
        assert out[cid].verdict == NOT_TESTED and out[cid].reason, cid
    assert out["I2"].verdict == REPRODUCED  # the sweeps' frontiers alone decide it
    r.sweeps = []
    assert ex.judge_i2(r, n_boot=N_BOOT, seed=0).verdict == NOT_TESTED


def test_i5_needs_a_declared_max_topk_from_the_sweep():
    r = _results()
    with pytest.raises(ValueError, match="claim_max_topk=8"):
        ex.judge_i5(r, claim_max_topk=8, min_speedup=1.5, max_rel_cost=0.1, n_boot=N_BOOT,
                    seed=0)


def test_verdicts_are_recorded_for_the_claims_page():
    claims._recorded.clear()
    _verdicts(_results(ito_shift=-0.5))
    assert [c.claim_id for c in claims.recorded()] == ["I1", "I2", "I3", "I4", "I5", "I6"]


def test_sweep_dictionaries_restricts_decoders_with_dead_atoms_to_their_live_ones():
    cfg = sae.SAEConfig(d_in=8, d_sae=32)
    x = np.random.default_rng(0).normal(size=(64, 8)).astype(np.float32)
    models = []
    for seed, n_dead in ((0, 8), (1, 0)):
        m = sae.init_sae(jax.random.PRNGKey(seed), cfg)
        b = np.zeros(32, np.float32)
        b[:n_dead] = -100.0  # never positive: dead on every row
        models.append(sae.SAE(dict(m.params, b_enc=jnp.asarray(b) + 0.5), cfg))
    out = ex.sweep_dictionaries(models, x, [2, 4], batch_size=16)
    assert out.n_alive.tolist() == [24, 32]
    l0 = out.train_l0
    full = [ex.pursuit_frontier(m.params["W_dec"], x, ex.i2_ks([2, 4], l0, i, 32),
                                bias=m.params["b_dec"]) for i, m in enumerate(models)]
    live = [ex.pursuit_frontier(models[0].params["W_dec"][8:], x, ex.i2_ks([2, 4], l0, 0, 32),
                                bias=models[0].params["b_dec"]), full[1]]
    for got, want in ((out.pairs, ex.dictionary_pairs(l0, full, x)),
                      (out.alive_pairs, ex.dictionary_pairs(l0, live, x))):
        np.testing.assert_allclose([p["log_gain"] for p in got], [p["log_gain"] for p in want],
                                   rtol=1e-5, atol=1e-6)
    assert ex.sweep_dictionaries(models, x, [2, 4], alive_control=False).alive_pairs is None
