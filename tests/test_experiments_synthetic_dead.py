"""The synthetic dead-latent grid (interp.experiments.synthetic_dead): its readers and verdicts on
planted rows with known answers, one tiny real run (shape, ranges, cache), and the offset data."""

import itertools

import numpy as np
import pytest

from interp import sae
from interp.experiments import synthetic_dead as sd

MARGIN = 0.01
SETUP = sd.Setup(seeds=(0, 1, 2, 3, 4))


def _rows(setup, dead):
    """One row per SAE of `setup`'s grid, dead fraction `dead(seed, width, strategy, window,
    beta1, l1)`; L0 falls with L1 the same way in every arm (so matched L0 = equal L1)."""
    rows = []
    for seed, (width, strategy, window, members) in itertools.product(setup.seeds,
                                                                       setup.cells()):
        for b1, l1 in members:
            rows.append({"seed": seed, "width": width, "d_sae": width * setup.n_features,
                         "strategy": strategy, "window": window, "beta1": b1, "l1": l1,
                         "dead": dead(seed, width, strategy, window, b1, l1),
                         "l0": 1.0 / l1, "fvu": 0.2, "mmcs": 0.8, "recovered": 0.5})
    return rows


def _jitter(seed):
    return 0.002 * np.sin(seed + 1.0)


def _planted(seed, width, strategy, window, b1, l1, *, ghost_gain, beta_gain, stack):
    long_w, short_w = SETUP.windows
    d = 0.2 * width / SETUP.widths[-1] + _jitter(seed)
    if b1 == 0.9:
        d += beta_gain * width / SETUP.widths[-1]   # beta1 = 0.9 kills more, more so when wide
    if strategy == "ghost":
        d -= ghost_gain if window == short_w else 0.03
        if window == short_w and b1 == 0.0:
            d -= stack                              # the combination's extra reduction
    return d


def _verdicts(**planted):
    rows = _rows(SETUP, lambda *a: _planted(*a, **planted))
    out = [sd.verdict_g1(rows, SETUP, dead_fraction_margin=MARGIN),
           *sd.verdicts_f(rows, SETUP, dead_fraction_margin=MARGIN)]
    return {c.claim_id: c for c in out}


def test_planted_effects_reproduce_every_claim():
    v = _verdicts(ghost_gain=0.05, beta_gain=0.04, stack=-0.02)
    assert {k: c.verdict for k, c in v.items()} == {
        "G-1 (synthetic)": "reproduced", "F-1 (synthetic)": "reproduced",
        "F-4 (synthetic)": "reproduced"}
    # G-1 reads the short-window, beta1 = 0 cell: the ghost gain plus the combination's term
    assert v["G-1 (synthetic)"].effect["mean"] == pytest.approx(-0.05 + 0.02, abs=1e-9)
    assert v["G-1 (synthetic)"].numbers["seeds"] == 5


def test_opposite_effects_refute_every_claim():
    v = _verdicts(ghost_gain=-0.05, beta_gain=-0.04, stack=0.0)  # more dead with either fix
    assert v["G-1 (synthetic)"].verdict == "not reproduced"
    assert v["F-1 (synthetic)"].verdict == "not reproduced"
    # the combination removes 0.11 against 0.04 for the better single fix (beta1 = 0): it stacks
    v = _verdicts(ghost_gain=0.05, beta_gain=0.04, stack=0.05)
    assert v["F-4 (synthetic)"].verdict == "not reproduced"
    assert v["F-4 (synthetic)"].effect["mean"] == pytest.approx(0.07, abs=1e-9)


def test_no_dead_latents_is_inconclusive_not_reproduced():
    rows = _rows(SETUP, lambda *a: 0.0)
    g1 = sd.verdict_g1(rows, SETUP, dead_fraction_margin=MARGIN)
    assert g1.verdict == "inconclusive" and "nothing to revive" in g1.reason
    f4 = sd.verdicts_f(rows, SETUP, dead_fraction_margin=MARGIN)[1]
    assert f4.verdict == "inconclusive" and "nothing to stack" in f4.reason


def test_readers_pick_the_planted_cells():
    rows = _rows(SETUP, lambda *a: _planted(*a, ghost_gain=0.05, beta_gain=0.04, stack=0.0))
    red = sd.f1_reductions(rows, SETUP)
    assert red.shape == (2, 5)
    np.testing.assert_allclose(red[0], 0.04 / 4, atol=1e-12)  # narrowest: a quarter as wide
    np.testing.assert_allclose(red[1], 0.04, atol=1e-12)
    np.testing.assert_allclose(sd.g1_equal_l1(rows, SETUP), -0.05, atol=1e-12)
    np.testing.assert_allclose(sd.g1_comparison(rows, SETUP).seed_means, -0.05, atol=1e-9)
    st = sd.f4_stacking(rows, SETUP)
    # reductions from (beta1 0.9, long): beta1 = 0 removes 0.04, the short window 0.02, both 0.06
    assert st["better_single_fix"] == "beta1 = 0"
    np.testing.assert_allclose(st["stacking_excess"], 0.02, atol=1e-12)
    table = sd.summary_table(rows, SETUP)
    assert len(table) == sum(len(c[3]) for c in SETUP.cells()) and table[0]["seeds"] == 5


def test_setup_refuses_bad_values():
    with pytest.raises(ValueError, match="unknown field"):
        sd.Setup.from_params({"widht": [1, 4]})
    with pytest.raises(ValueError, match="windows"):
        sd.Setup(windows=(100, 300))
    with pytest.raises(ValueError, match="widths"):
        sd.Setup(widths=(4,))
    with pytest.raises(ValueError, match="shorter than"):
        sd.Setup(steps=200, windows=(300, 100))
    assert sd.Setup.from_params({"widths": [1, 2], "seeds": [3]}).widths == (1, 2)
    assert SETUP.n_saes() == 5 * (2 + 3 + 2 + 3)


def test_a_tiny_grid_trains_every_sae_once_and_caches(tmp_path, monkeypatch):
    monkeypatch.setenv("INTERP_CACHE", str(tmp_path))
    setup = sd.Setup(d_in=8, n_features=16, offset_norm=2.0, widths=(1, 2), seeds=(0, 1, 2),
                     batch_size=64, steps=120, lr_warmup_steps=10, windows=(40, 10),
                     eval_rows=256)
    rows = sd.run(setup, progress=False)
    assert len(rows) == setup.n_saes()
    assert {r["d_sae"] for r in rows} == {16, 32}
    for r in rows:
        assert 0.0 <= r["dead"] <= 1.0 and 0.0 <= r["recovered"] <= 1.0
        assert np.isfinite([r["l0"], r["fvu"], r["mmcs"]]).all()
    assert sd.run(setup, progress=False) == rows  # reloaded from the cache, not retrained
    assert sd.verdict_g1(rows, setup, dead_fraction_margin=MARGIN).claim_id == "G-1 (synthetic)"


def test_offset_data_add_one_fixed_vector_of_the_given_norm():
    plain = sae.SparseDictionaryData(d_in=16, n_features=32, batch_size=64, seed=3)
    shifted = sae.SparseDictionaryData(d_in=16, n_features=32, batch_size=64, seed=3,
                                       offset_norm=2.5)
    assert np.linalg.norm(shifted.offset) == pytest.approx(2.5, rel=1e-6)
    np.testing.assert_allclose(shifted.batch(7) - plain.batch(7),
                               np.broadcast_to(shifted.offset, (64, 16)), atol=1e-6)
    np.testing.assert_allclose(shifted.held_out().offset, shifted.offset)
    assert not np.any(plain.offset)
