"""interp.experiments.autointerp: the auto-interp page's reductions and the verdicts of A-1..A-5,
on synthetic score rows where the answer is known (null, planted, opposite, too few latents)."""

import numpy as np
import pytest

from interp import claims
from interp.experiments import autointerp as E

N_BOOT = 500


@pytest.fixture(autouse=True)
def no_claims_file(monkeypatch):
    monkeypatch.delenv(claims.CLAIMS_FILE_ENV, raising=False)


def make_rows(scores: dict, top_only=None, first_latent=0) -> list[dict]:
    """score_latents-like rows: kind -> per-latent top-and-random scores (latents numbered from
    `first_latent`); `top_only` gives the explanation's top-only scores."""
    rows = []
    for kind, values in scores.items():
        for j, v in enumerate(values):
            row = {"latent": first_latent + j, "kind": kind, E.SCORE: float(v)}
            if kind == "explanation" and top_only is not None:
                row["sim_top_only"] = float(top_only[j])
            rows.append(row)
    return rows


def symmetric_noise(n, scale=0.1, seed=0):
    """Noise whose mean is exactly 0 (each draw with its negative): a null by construction."""
    half = np.random.default_rng(seed).normal(scale=scale, size=n // 2)
    return np.concatenate([half, -half])


def rule_rows(n=30, explanation=None, top_only=None):
    rng = np.random.default_rng(1)
    expl = rng.uniform(0.2, 0.8, n) if explanation is None else explanation
    return make_rows({"explanation": expl, "random": np.zeros(n)}, top_only=top_only)


def a1(llm_rows, n_rule=30):
    return E.judge_a1(rule_rows(n_rule), llm_rows, "test LLM", n_boot=N_BOOT, seed=0)


# -- reductions ---------------------------------------------------------------------------------

def test_filled_counts_a_constant_prediction_as_zero_only_where_the_truth_varies():
    rows = make_rows({"explanation": [0.5, np.nan, 0.2], "random": [np.nan, np.nan, 0.1]},
                     first_latent=3)
    np.testing.assert_array_equal(E.filled(rows, "random"), [0.0, np.nan, 0.1])
    assert E.latents(rows) == [3, 4, 5]
    assert E.by_latent(rows, "random")[3] == 0.0


def test_paired_effect_drops_undefined_pairs_and_pairs_by_latent():
    effect = E.paired_effect([1.0, 2.0, np.nan, 4.0], [0.0, 1.0, 5.0, 3.0], n_boot=N_BOOT, seed=0)
    assert effect.n == 3 and effect.mean == pytest.approx(1.0)
    assert E.paired_effect([np.nan], [1.0], n_boot=N_BOOT, seed=0) is None


def test_rank_effect_mean_is_spearmans_rho():
    rng = np.random.default_rng(2)
    x = rng.normal(size=40)
    y = np.round(x + rng.normal(size=40), 1)
    effect = E.rank_effect(x, y, n_boot=N_BOOT, seed=0)
    assert effect.mean == pytest.approx(E.spearman(x, y), abs=1e-12)


def test_rescued_by_llm_needs_the_lexical_score_at_baseline_and_the_llm_score_above():
    rule = make_rows({"explanation": [0.0, 0.6, 0.0, 0.0, 0.0],
                      "random": [0.0, 0.0, 0.05, 0.0, 0.0]})
    llm = make_rows({"explanation": [0.7, 0.7, 0.01, np.nan, 0.5],
                     "random": [0.0, 0.02, 0.03, 0.0, 0.6]})
    got = E.rescued_by_llm(rule, llm, quantile=0.75)
    assert got["rule_band"] == pytest.approx(0.0) and got["llm_band"] == pytest.approx(0.03)
    # latent 0: lexical at baseline, LLM above -> rescued; 1: lexical already above; 2: LLM at
    # baseline; 3: LLM score undefined, filled to 0 (the truth varies) -> not rescued; 4: above
    # the band but below its own random explanation (the simulator's prior) -> not rescued
    assert got["latents"] == [0, 1, 2, 3, 4]
    np.testing.assert_array_equal(got["indicator"], [1, 0, 0, 0, 0])
    assert got["rescued"] == [0]


# -- A-1 ----------------------------------------------------------------------------------------

def test_a1_planted_gap_is_reproduced():
    n = 20
    rng = np.random.default_rng(3)
    c = a1(make_rows({"explanation": 0.5 + rng.normal(0, 0.1, n), "random": rng.normal(0, 0.1, n)}))
    assert c.verdict == "reproduced" and c.source == "post" and c.rule == "directional"
    assert c.effect["n"] == n and c.effect["ci"][0] > 0


def test_a1_null_is_inconclusive():
    base = np.random.default_rng(4).uniform(0, 0.5, 20)
    c = a1(make_rows({"explanation": base + symmetric_noise(20), "random": base}))
    assert c.verdict == "inconclusive"
    assert c.effect["mean"] == pytest.approx(0.0, abs=1e-12)


def test_a1_opposite_is_not_reproduced():
    rng = np.random.default_rng(5)
    rows = make_rows({"explanation": rng.normal(0, 0.1, 20),
                      "random": 0.5 + rng.normal(0, 0.1, 20)})
    assert a1(rows).verdict == "not reproduced"


def test_a1_two_latents_are_inconclusive_however_large_the_gap():
    rows = make_rows({"explanation": [0.9, 0.95], "random": [0.0, 0.01]})
    assert a1(rows).verdict == "inconclusive"


def test_a1_without_an_llm_or_its_random_baseline_is_not_tested_with_the_reason():
    c = a1([])
    assert c.verdict == "not tested" and "n_llm_latents" in c.reason
    c = a1(make_rows({"explanation": [0.5] * 5, "top_tokens": [0.1] * 5}))
    assert c.verdict == "not tested" and "llm_baselines" in c.reason


# -- A-2 ----------------------------------------------------------------------------------------

def a2(scores, log_density):
    rows = rule_rows(len(scores), explanation=scores)
    density = {i: 10.0 ** d for i, d in enumerate(log_density)}
    return E.judge_a2(rows, [], density, {i: 0.5 for i in density}, [], n_boot=N_BOOT, seed=0)


def test_a2_sparser_latents_scoring_higher_is_reproduced_and_the_opposite_not():
    rng = np.random.default_rng(6)
    log_density = rng.uniform(-4, -1, 40)
    score = -0.2 * log_density + rng.normal(0, 0.05, 40)
    c = a2(score, log_density)
    assert c.verdict == "reproduced" and c.source == "exploratory"
    assert c.effect["mean"] == pytest.approx(E.spearman(log_density, score))
    assert a2(-score, log_density).verdict == "not reproduced"


def test_a2_no_rank_correlation_is_inconclusive():
    log_density = -4 + np.arange(41) / 10
    score = np.abs(np.arange(41) - 20) / 20  # symmetric about the middle: Spearman exactly 0
    c = a2(score, log_density)
    assert c.verdict == "inconclusive" and abs(c.effect["mean"]) < 1e-12


def test_a2_two_latents_are_inconclusive():
    assert a2([0.9, 0.1], [-4.0, -1.0]).verdict == "inconclusive"


# -- A-3 ----------------------------------------------------------------------------------------

def a3(top_only, top_and_random):
    rows = rule_rows(len(top_only), explanation=top_and_random, top_only=top_only)
    return E.judge_a3(rows, [], n_boot=N_BOOT, seed=0)


def test_a3_planted_null_opposite_and_too_few():
    rng = np.random.default_rng(7)
    tar = rng.uniform(0.2, 0.6, 30)
    assert a3(tar + 0.2 + rng.normal(0, 0.05, 30), tar).verdict == "reproduced"
    assert a3(tar + symmetric_noise(30), tar).verdict == "inconclusive"
    assert a3(tar - 0.2 + rng.normal(0, 0.05, 30), tar).verdict == "not reproduced"
    assert a3([0.9, 0.9], [0.1, 0.1]).verdict == "inconclusive"


# -- A-4 ----------------------------------------------------------------------------------------

def a4(rule_expl, llm_expl, llm_random):
    n = len(rule_expl)
    rule = make_rows({"explanation": rule_expl, "random": np.zeros(n)})
    llm = make_rows({"explanation": llm_expl, "random": llm_random})
    return E.judge_a4(rule, llm, "test LLM", quantile=0.95, n_boot=N_BOOT, seed=0)


def test_a4_latents_rescued_by_the_llm_make_a_rate_above_zero():
    rng = np.random.default_rng(8)
    c = a4(np.zeros(12), 0.7 + rng.normal(0, 0.05, 12), rng.normal(0, 0.05, 12))
    assert c.verdict == "reproduced" and c.rule == "threshold" and c.source == "post"
    assert c.effect["mean"] == pytest.approx(1.0) and len(c.numbers["rescued_latents"]) == 12


def test_a4_no_rescued_latent_of_twelve_is_inconclusive():
    """0 of 12 cannot show the rate is below the noise rate (exact upper bound 0.26 > 0.05)."""
    rng = np.random.default_rng(9)
    c = a4(np.full(12, 0.6), 0.7 + rng.normal(0, 0.05, 12), rng.normal(0, 0.05, 12))
    assert c.verdict == "inconclusive" and c.effect["mean"] == 0.0


def test_a4_one_rescued_latent_of_thirty_is_not_enough():
    rng = np.random.default_rng(10)
    rule_expl = np.full(30, 0.6)
    rule_expl[0] = 0.0
    c = a4(rule_expl, 0.7 + rng.normal(0, 0.05, 30), rng.normal(0, 0.05, 30))
    assert c.verdict == "inconclusive" and c.numbers["rescued_latents"] == [0]


def test_a4_no_rescue_in_two_hundred_latents_is_not_reproduced():
    """Fewer rescues than the noise bands alone would give, over many latents: at this scale
    the case study does not reproduce."""
    rng = np.random.default_rng(11)
    c = a4(np.full(200, 0.6), 0.7 + rng.normal(0, 0.05, 200), rng.normal(0, 0.05, 200))
    assert c.verdict == "not reproduced" and c.effect["threshold"] == pytest.approx(0.05)


def test_a4_two_latents_are_inconclusive_and_no_llm_is_not_tested():
    assert a4(np.zeros(2), [0.9, 0.9], [0.0, 0.01]).verdict == "inconclusive"
    c = E.judge_a4(rule_rows(), [], "none", quantile=0.95, n_boot=N_BOOT, seed=0)
    assert c.verdict == "not tested"


# -- A-5 and the whole page ---------------------------------------------------------------------

def sae(name, l0, lr, scores):
    n = len(scores)
    return E.sae_summary(name, {"l0": l0, "loss_recovered": lr},
                         make_rows({"explanation": scores, "random": np.zeros(n)}))


def a5(first, second, l0_tolerance=0.1, lr_margin=0.02):
    return E.judge_a5(first, second, l0_tolerance=l0_tolerance, lr_margin=lr_margin,
                      n_boot=N_BOOT, seed=0)


def test_a5_null_is_inconclusive_and_a_gap_at_matched_metrics_is_reproduced_either_way():
    noise = symmetric_noise(40)
    null = a5(sae("relu", 30, 0.90, 0.4 + noise), sae("topk", 31, 0.905, 0.4 + noise[::-1]))
    assert null.verdict == "inconclusive" and null.effect["mean"] == pytest.approx(0, abs=1e-12)
    for shift in (+0.2, -0.2):                       # either sign separates equal-looking SAEs
        got = a5(sae("relu", 30, 0.90, 0.4 + shift + noise), sae("topk", 30, 0.91, 0.4 + noise))
        assert got.verdict == "reproduced", shift
        assert got.numbers["loss_recovered_matched"] is True
        assert got.effect["mean"] == pytest.approx(shift)


def test_a5_needs_a_gap_against_loss_recovered_when_it_differs():
    noise = symmetric_noise(40)
    against = a5(sae("relu", 30, 0.80, 0.6 + noise), sae("topk", 30, 0.95, 0.4 + noise))
    assert against.verdict == "reproduced"           # lower loss recovered, higher scores
    assert "relu" in against.numbers["effect"].split(" - ")[0]
    agrees = a5(sae("relu", 30, 0.80, 0.4 + noise), sae("topk", 30, 0.95, 0.6 + noise))
    assert agrees.verdict == "inconclusive" and "as loss recovered does" in agrees.reason
    assert agrees.effect["mean"] == pytest.approx(-0.2)


def test_a5_unmatched_l0_too_few_latents_and_no_second_sae():
    noise = symmetric_noise(40)
    far = a5(sae("relu", 30, 0.9, 0.6 + noise), sae("topk", 45, 0.9, 0.4 + noise))
    assert far.verdict == "inconclusive" and "L0 not matched" in far.reason
    few = a5(sae("relu", 30, 0.9, [0.9, 0.8]), sae("topk", 30, 0.9, 0.1 + noise))
    assert few.verdict == "inconclusive"             # 2 latents on one side: min_n
    assert a5(None, None).verdict == "not tested"
    rows = make_rows({"explanation": [np.nan, np.nan, 0.5, 0.6], "random": [0.0, np.nan, 0, 0]})
    kept = E.sae_summary("relu", {"l0": 30, "loss_recovered": 0.9}, rows)["scores"]
    np.testing.assert_array_equal(kept, [0.0, 0.5, 0.6])  # filled as 0, or dropped if undefined


def test_verdicts_record_every_claim_with_its_source_and_a5_as_not_tested():
    rng = np.random.default_rng(11)
    n = 20
    rule = make_rows({"explanation": rng.uniform(0, 0.8, n), "random": np.zeros(n)},
                     top_only=rng.uniform(0, 0.8, n))
    llm = make_rows({"explanation": 0.5 + rng.normal(0, 0.1, 5), "random": rng.normal(0, 0.1, 5)})
    density = {i: float(d) for i, d in enumerate(rng.uniform(1e-4, 1e-1, n))}
    got = E.verdicts(rule, llm, llm_label="test", latent_density=density,
                     latent_ctx_freq=density, sweep_rows=[{"L0": 10, "score": 0.3}] * 3,
                     n_boot=N_BOOT, seed=0, noise_quantile=0.95)
    assert [c.claim_id for c in got] == ["A-1", "A-2", "A-3", "A-4", "A-5"]
    assert [c.source for c in got] == ["post", "exploratory", "exploratory", "post", "post"]
    assert got[-1].verdict == "not tested" and "matched L0" in got[-1].reason  # no second SAE
    assert got[0].verdict == "reproduced"


def test_rescued_table_names_both_explanations_and_is_empty_without_an_llm():
    rule = make_rows({"explanation": [0.0, 0.6, 0.0], "random": [0.0, 0.0, 0.0]})
    llm = make_rows({"explanation": [0.7, 0.7, 0.0], "random": [0.0, 0.01, 0.02]})
    for r in rule + llm:
        r["explanation"] = f"{r['kind']} {r['latent']}"
    got = E.rescued_table(rule, llm, 1.0, "LLM")
    assert got == [{"latent": 0, "top tokens": "explanation 0", "LLM explanation": "explanation 0"}]
    assert E.rescued_table(rule, [], 1.0, "LLM") == []
