"""The arms harness on the tiny Llama twin: arms x seeds x L1 sweep, shared evaluation."""

import numpy as np
import pytest

from interp import arms, frontier, lm_sae, sae


@pytest.fixture(scope="module")
def acts(tiny_acts):
    return tiny_acts


def test_run_arms_shapes_ordering_and_pruning(acts, tmp_path, monkeypatch):
    monkeypatch.setenv("INTERP_CACHE", str(tmp_path))
    base = sae.SAEConfig(d_in=64, d_sae=128, batch_size=64, steps=16, lr=3e-3,
                         lr_warmup_steps=2, dead_window_steps=4)
    arm_list = [arms.Arm("baseline"),
                arms.Arm("pruned", {"decoder_norm": "at_most_one", "decoder_init_norm": 1.0},
                         postprocess="prune_small_decoder_norms"),
                arms.Arm("ghost", {"dead_strategy": "ghost_scaled"}, l1_scale=2.0)]
    res = arms.run_arms(acts, base, arm_list, [1e-4, 3e-2], [0, 1], eval_tokens=acts.heldout,
                        progress=False)
    assert list(res) == ["baseline", "pruned", "ghost"]
    b = res["baseline"]
    assert len(b.evals) == 2 and len(b.evals[0]) == 2
    l0, fvu = b.curve("fvu", 0)
    assert l0[0] > l0[1]  # larger L1 -> sparser
    assert res["ghost"].l1_values == pytest.approx([2e-4, 6e-2], rel=1e-12)
    # every latent of the pruned arm has norm <= 1 and those below 0.99 were removed
    assert all(k <= 128 for k in res["pruned"].n_latents[0])
    assert b.final("dead_fraction").shape == (2, 2)
    assert b.seconds[0] > 0
    # the same run evaluated alone gives the same numbers (the shared evaluation is exact)
    run = lm_sae.train_cached(acts, base.replace(seed=1), {"l1_coeff": [1e-4, 3e-2]},
                              log_every=1, progress=False)
    alone = lm_sae.splice_metrics(acts.model, acts.site, run.saes()[1], acts.heldout, progress=False)
    assert alone["delta_ce"] == pytest.approx(b.evals[1][1]["delta_ce"], rel=1e-5, abs=1e-6)
    cmp = arms.compare(res["baseline"], res["baseline"], "fvu")
    assert cmp.mean == pytest.approx(0.0, abs=1e-12) or np.isnan(cmp.mean)


def test_bad_arms_are_named():
    with pytest.raises(ValueError, match="unknown postprocess"):
        arms.Arm("x", postprocess="shrink")
    with pytest.raises(ValueError, match="l1_scale"):
        arms.Arm("x", l1_scale=0)


def test_loss_rises_and_spike_counts_on_known_series():
    loss = np.array([4.0, 2.0, 1.0, 1.5, 1.0, 0.9, 0.9, 1.8, 2.0, 0.8])
    rise = arms.loss_rises(loss)
    # rise is measured against the best value *before* each point
    np.testing.assert_allclose(rise, [0, 0, 0, 0.5, 0, 0, 0, 1.8 / 0.9 - 1, 2.0 / 0.9 - 1, 0])
    assert arms.count_spikes(loss, 0.25) == 2          # [1.5] and [1.8, 2.0]
    assert arms.count_spikes(loss, 0.25, skip=5) == 1  # the first excursion is in the warm-up
    assert arms.count_spikes(loss, 1.5) == 0
    # a monotone descent never spikes; columns are independent runs
    two = np.stack([np.linspace(3, 1, 10), loss], axis=1)
    np.testing.assert_array_equal(arms.count_spikes(two, 0.25), [0, 2])
    assert arms.loss_rises(two).shape == (10, 2)


def test_loss_rises_rejects_bad_input():
    with pytest.raises(ValueError, match="logged points"):
        arms.loss_rises([1.0])
    with pytest.raises(ValueError, match="skip"):
        arms.loss_rises([1.0, 2.0], skip=5)
    with pytest.raises(ValueError, match="ratio"):
        arms.count_spikes([1.0, 2.0], 0.0)


def test_history_and_final_curves_shapes():
    res = arms.ArmResult(arms.Arm("a"), [1e-3, 1e-2], [0, 1],
                         evals=[[{"l0": 30.0}, {"l0": 10.0}], [{"l0": 32.0}, {"l0": 11.0}]],
                         histories=[{"dead_fraction": [[0.0, 0.1], [0.01, 0.2]]},
                                    {"dead_fraction": [[0.0, 0.0], [0.02, 0.3]]}],
                         seconds=[1.0, 1.0], n_latents=[[8, 8], [8, 8]])
    assert res.history("dead_fraction").shape == (2, 2, 2)
    (l0, dead), (l0b, deadb) = res.final_curves("dead_fraction")
    np.testing.assert_allclose(l0, [30, 10]); np.testing.assert_allclose(dead, [0.01, 0.2])
    np.testing.assert_allclose(l0b, [32, 11]); np.testing.assert_allclose(deadb, [0.02, 0.3])


def _result(name, seeds_curves, dead=None):
    """An ArmResult from known (l0s, delta_ce) per seed, no training: tests the arithmetic."""
    evals = [[{"l0": float(l), "delta_ce": float(v)} for l, v in zip(l0s, vals)]
             for l0s, vals in seeds_curves]
    n_l1 = len(seeds_curves[0][0])
    dead = dead if dead is not None else np.zeros((len(seeds_curves), n_l1))
    hist = [{"dead_fraction": [np.zeros(n_l1), np.asarray(d, float)]} for d in dead]
    return arms.ArmResult(arms.Arm(name), [1e-3] * n_l1, list(range(len(seeds_curves))), evals,
                          hist, [1.0] * len(seeds_curves), [[8] * n_l1] * len(seeds_curves))


def test_adoption_gain_signs_effect_and_verdicts():
    l0 = np.array([10.0, 20.0, 40.0])
    base = _result("base", [(l0, 1.0 - 0.1 * np.log(l0))] * 3)
    # an arm lower by 0.05, 0.07, 0.06 (seeds 0-2) at every L0: better on delta CE
    better = _result("better", [(l0, 1.0 - 0.1 * np.log(l0) - d) for d in (0.05, 0.07, 0.06)])
    res = {"base": base, "better": better}
    g = arms.adoption_gain(res, "base", "better", "delta_ce")
    assert g["gain"] == pytest.approx(0.06)
    assert g["seed_spread"] == pytest.approx(np.std([0.05, 0.07, 0.06], ddof=1))
    assert g["per_seed"] == pytest.approx([0.05, 0.07, 0.06])
    assert g["effect"].mean == pytest.approx(0.06) and g["effect"].n == 3
    assert g["effect"].method == "paired t"
    assert g["verdict"] == "helps" and g["n_seeds"] == 3
    assert g["l0_range"] == pytest.approx([10.0, 40.0])
    # the arm *removes* an item the reference has: adopting the item is worth minus that
    g = arms.adoption_gain(res, "base", "better", "delta_ce", arm_adopts=False)
    assert g["gain"] == pytest.approx(-0.06) and g["verdict"] == "hurts"
    assert g["effect"].mean == pytest.approx(-0.06)
    # higher is better (loss recovered): the same difference now counts against the arm
    g = arms.adoption_gain(res, "base", "better", "delta_ce", higher_is_better=True)
    assert g["gain"] == pytest.approx(-0.06)
    # two seeds, however consistent: no honest noise estimate -> inconclusive
    two = {"base": _result("base", [(l0, l0)] * 2),
           "b": _result("b", [(l0, l0 - 0.05), (l0, l0 - 0.0501)])}
    assert arms.adoption_gain(two, "base", "b", "delta_ce")["verdict"] == "inconclusive"
    # seeds disagreeing in sign: the CI covers 0 -> inconclusive
    noisy = _result("noisy", [(l0, 1.0 - 0.1 * np.log(l0) + d) for d in (-0.05, 0.04, 0.01)])
    g = arms.adoption_gain({"base": base, "noisy": noisy}, "base", "noisy", "delta_ce")
    assert g["verdict"] == "inconclusive"
    # no overlap in L0: nothing to compare, no effect (not an error, not a verdict)
    far = _result("far", [(l0 * 100, 1.0 - 0.1 * np.log(l0))] * 3)
    g = arms.adoption_gain({"base": base, "far": far}, "base", "far", "delta_ce")
    assert np.isnan(g["gain"]) and g["effect"] is None and g["verdict"] == "inconclusive"


def test_help_verdict_and_paired_final_difference():
    assert arms.help_verdict(frontier.seed_effect([0.2, 0.21, 0.19])) == "helps"
    assert arms.help_verdict(frontier.seed_effect([-0.2, -0.21, -0.19])) == "hurts"
    assert arms.help_verdict(frontier.seed_effect([0.2, -0.1, 0.05])) == "inconclusive"
    assert arms.help_verdict(frontier.seed_effect([0.2, 0.21])) == "inconclusive"  # 2 seeds
    assert arms.help_verdict(None) == "inconclusive"
    l0 = np.array([10.0, 20.0])
    a = _result("a", [(l0, l0)] * 2, dead=[[0.5, 0.3], [0.4, 0.2]])
    b = _result("b", [(l0, l0)] * 2, dead=[[0.2, 0.1], [0.2, 0.0]])
    d = arms.paired_final_difference(a, b, "dead_fraction")
    assert d["per_seed"] == pytest.approx([-0.25, -0.2])
    assert d["diff"] == pytest.approx(-0.225)
    assert d["seed_spread"] == pytest.approx(np.std([-0.25, -0.2], ddof=1))
    c = _result("c", [(l0, l0)] * 3)
    with pytest.raises(ValueError, match="differ in seeds"):
        arms.paired_final_difference(a, c, "dead_fraction")
