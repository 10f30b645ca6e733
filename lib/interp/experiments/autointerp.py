"""The auto-interp page (book/autointerp.ipynb): per-latent score reductions and the verdicts of
claims A-1..A-5.

The unit of replication is the latent: each pipeline scores a seeded uniform sample of latents,
and a claim is about what another sample of latents would show. So every effect is a mean over
latents with a bootstrap interval over latents (`interp.stats.Effect.from_items`); paired
effects pair the two explanations of the *same* latent, scored on the same held-out excerpts.
A score is NaN when a correlation is undefined; `filled` counts a constant prediction as 0
where the truth varies (`interp.autointerp.fill_constant_predictions`), and the pairs that stay
undefined are dropped and counted in the record.

Rows are those of `interp.autointerp.score_latents`: dicts with "latent", "kind" and the score
columns ("sim_top_and_random", "sim_top_only", ...).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import numpy as np

from interp import autointerp as A
from interp import claims
from interp.autointerp.stats import (fill_constant_predictions, finite_pairs, rank_products,
                                     spearman)
from interp.stats import NOT_REPRODUCED, Effect, directional

SCORE = "sim_top_and_random"
SCORE_COLUMNS = ("sim_top_and_random", "sim_top_only", "sim_below_top", "sim_random",
                 "detection_balanced_accuracy", "fuzzing_balanced_accuracy")
# Sources: are claims of GDM mech-interp Progress Update #1 (April 2024),
# Auto-interp snippet ("a useful technique, that provides some signal on top of cheap metrics
# like L0 and loss recovered"; the case study "where Gemini interpreted a feature we'd initially
# thought uninterpretable"). are not in its summary (it only warns of "systematic
# biases"): they are this book's follow-up questions, so "exploratory".

A1 = "LLM explanations of SAE latents score well above random-explanation baselines"
A2 = "Scores are higher for sparse, lexical latents than for dense/contextual ones"
A3 = "Top-only scoring overstates interpretability vs top-and-random"
A4 = ("Case-study failure modes exist: an LLM interprets latents that a lexical (top-tokens) "
      "account leaves at baseline (the post's case study: Gemini interpreted a feature first "
      "thought uninterpretable)")
A5 = "Auto-interp provides some signal on top of cheap metrics like L0 and loss recovered"


# ------------------------------------------------------------------ per-latent reductions
def kinds(rows: Sequence[Mapping]) -> list[str]:
    return sorted({r["kind"] for r in rows})


def latents(rows: Sequence[Mapping], kind: str = "explanation") -> list[int]:
    """The latents scored with explanation `kind`, in the order of `column`."""
    return sorted(int(r["latent"]) for r in rows if r["kind"] == kind)


def column(rows: Sequence[Mapping], kind: str, key: str = SCORE) -> np.ndarray:
    """Per-latent values of `key` for one explanation kind, in latent order (NaN if absent)."""
    return np.array([r.get(key, np.nan) for r in sorted(rows, key=lambda r: r["latent"])
                     if r["kind"] == kind], dtype=float)


def filled(rows: Sequence[Mapping], kind: str, key: str = SCORE) -> np.ndarray:
    """`column`, with a constant prediction's NaN counted as 0 where another explanation of the
    same latent has a defined score on the same records (`fill_constant_predictions`)."""
    return fill_constant_predictions({k: column(rows, k, key) for k in kinds(rows)})[kind]


def by_latent(rows: Sequence[Mapping], kind: str, key: str = SCORE) -> dict[int, float]:
    """latent -> `filled` score of explanation `kind`."""
    return dict(zip(latents(rows, kind), filled(rows, kind, key).tolist()))


def mean_score(rows: Sequence[Mapping], kind: str, key: str = SCORE) -> float:
    v = filled(rows, kind, key) if key.startswith("sim_") else column(rows, kind, key)
    return float(np.nanmean(v)) if np.isfinite(v).any() else float("nan")


def summary(rows: Sequence[Mapping], kinds_: Sequence[str], pipeline: str) -> list[dict]:
    """One table row per explanation kind: mean of every score column and the latents scored."""
    return [{"pipeline": pipeline, "kind": k, "n": int(np.isfinite(filled(rows, k)).sum()),
             **{c: mean_score(rows, k, c) for c in SCORE_COLUMNS}} for k in kinds_]


def items_effect(values, *, n_boot: int, seed: int) -> Effect | None:
    """Mean over latents with a bootstrap interval over latents; None when there is no value."""
    values = np.asarray(values, dtype=float)
    return Effect.from_items(values, n_boot=n_boot, seed=seed) if values.size else None


def paired_effect(a, b, *, n_boot: int, seed: int) -> Effect | None:
    """Mean of a - b over the latents where both are defined (bootstrap over latents)."""
    a, b = finite_pairs(a, b)
    return items_effect(a - b, n_boot=n_boot, seed=seed)


def rank_effect(x, y, *, n_boot: int, seed: int) -> Effect | None:
    """Spearman's rho of x and y as a mean over latents of standardised rank products."""
    return items_effect(rank_products(x, y), n_boot=n_boot, seed=seed)


def noise_band(baseline_scores, quantile: float) -> float:
    """The `quantile` of a pipeline's random-explanation scores over latents: a score at or
    below it is one a random explanation also reaches (NaN when none is defined)."""
    v = np.asarray(baseline_scores, dtype=float)
    v = v[np.isfinite(v)]
    return float(np.quantile(v, quantile)) if v.size else float("nan")


def rescued_by_llm(rule_rows, llm_rows, quantile: float) -> dict:
    """Per LLM-scored latent, 1 when its top-tokens explanation scores within the rule-based
    random-explanation noise band and its LLM explanation above both the LLM's band and the
    same latent's LLM random-explanation score, else 0 (the post's case study as a rate). The
    second condition keeps out latents that a simulator scores high whatever it is told (its
    prior matches them). Latents without both explanation scores defined are left out."""
    rule_band = noise_band(filled(rule_rows, "random"), quantile)
    llm_band = noise_band(filled(llm_rows, "random"), quantile)
    rule, llm = by_latent(rule_rows, "explanation"), by_latent(llm_rows, "explanation")
    llm_random = by_latent(llm_rows, "random")
    ids = [i for i in sorted(llm) if np.isfinite(llm[i]) and np.isfinite(rule.get(i, np.nan))]
    hit = [bool(rule[i] <= rule_band and llm[i] > llm_band and
                not llm[i] <= llm_random.get(i, np.nan)) for i in ids]
    return {"latents": ids, "indicator": np.array(hit, dtype=float), "rule_band": rule_band,
            "llm_band": llm_band, "rescued": [i for i, h in zip(ids, hit) if h]}


def rescued_table(rule_rows, llm_rows, quantile: float, label: str) -> list[dict]:
    """The latents `rescued_by_llm` counts for A-4, with both explanations (the case studies);
    empty when the LLM pipeline or its random baseline did not run."""
    if _llm_ingredient_missing(llm_rows):
        return []
    top = {r["latent"]: r["explanation"] for r in rule_rows if r["kind"] == "explanation"}
    llm = {r["latent"]: r["explanation"] for r in llm_rows if r["kind"] == "explanation"}
    return [{"latent": i, "top tokens": top[i], f"{label} explanation": llm[i]}
            for i in rescued_by_llm(rule_rows, llm_rows, quantile)["rescued"]]


def _effect_numbers(effect: Effect | None) -> dict:
    if effect is None:
        return {"mean": float("nan"), "ci": [float("nan"), float("nan")], "n": 0}
    return {"mean": effect.mean, "ci": list(effect.ci), "n": effect.n}


# ------------------------------------------------------------------ verdicts
def _llm_ingredient_missing(llm_rows) -> str:
    if not llm_rows:
        return ("no LLM pipeline ran (n_llm_latents = 0 and no HTTP backend): run the local "
                "model or an API on a sample of latents")
    if "random" not in kinds(llm_rows):
        return ("the LLM did not simulate the random-explanation baseline: add 'random' to "
                "llm_baselines")
    return ""


def judge_a1(rule_rows, llm_rows, llm_label: str, *, n_boot: int, seed: int):
    """A-1: per latent, LLM explanation score - random explanation score (same simulator)."""
    missing = _llm_ingredient_missing(llm_rows)
    effect = None if missing else paired_effect(filled(llm_rows, "explanation"),
                                                filled(llm_rows, "random"), n_boot=n_boot,
                                                seed=seed)
    if effect is None:
        return claims.not_tested("A-1", A1, source="post", reason=missing or (
            f"none of the {len(latents(llm_rows))} LLM-scored latents has a defined score"))
    rule = paired_effect(filled(rule_rows, "explanation"), filled(rule_rows, "random"),
                         n_boot=n_boot, seed=seed)
    numbers = {"pipeline": llm_label, "n_latents_scored": len(latents(llm_rows)),
               "mean_score_explanation": mean_score(llm_rows, "explanation"),
               "mean_score_random": mean_score(llm_rows, "random"),
               "rule_based_top_tokens_minus_random": _effect_numbers(rule)}
    return claims.judge("A-1", A1, source="post", rule="directional", effect=effect,
                        expected_sign=1, numbers=numbers)


def judge_a2(rule_rows, llm_rows, latent_density: Mapping[int, float],
             latent_ctx_freq: Mapping[int, float], sweep_rows, *, n_boot: int, seed: int):
    """A-2: Spearman(log density, rule-based score) over latents, expected negative."""
    ids = latents(rule_rows)
    log_density = np.log10([latent_density[i] for i in ids])
    effect = rank_effect(log_density, filled(rule_rows, "explanation"), n_boot=n_boot, seed=seed)
    if effect is None:
        return claims.not_tested("A-2", A2, source="exploratory",
                                 reason="no rule-based latent has a defined score")
    numbers = {"spearman_excerpt_frequency_vs_score": spearman(
        [latent_ctx_freq[i] for i in ids], filled(rule_rows, "explanation"))}
    if llm_rows:
        llm_ids = latents(llm_rows)
        numbers["llm_spearman_log_density_vs_score"] = spearman(
            np.log10([latent_density[i] for i in llm_ids]), filled(llm_rows, "explanation"))
    if sweep_rows:
        numbers["spearman_L0_vs_mean_score_over_SAEs"] = spearman(
            [r["L0"] for r in sweep_rows], [r["score"] for r in sweep_rows])
    return claims.judge("A-2", A2, source="exploratory", rule="directional", effect=effect,
                        expected_sign=-1, numbers=numbers)


def judge_a3(rule_rows, llm_rows, *, n_boot: int, seed: int):
    """A-3: per latent, top-only score - top-and-random score of the top-tokens explanation."""
    effect = paired_effect(column(rule_rows, "explanation", "sim_top_only"),
                           column(rule_rows, "explanation", SCORE), n_boot=n_boot, seed=seed)
    if effect is None:
        return claims.not_tested("A-3", A3, source="exploratory", reason=(
            "no rule-based latent has both a top-only and a top-and-random score"))
    numbers = {"rule_mean_top_only": mean_score(rule_rows, "explanation", "sim_top_only"),
               "rule_mean_top_and_random": mean_score(rule_rows, "explanation")}
    if llm_rows:
        numbers["llm_top_only_minus_top_and_random"] = _effect_numbers(paired_effect(
            column(llm_rows, "explanation", "sim_top_only"),
            column(llm_rows, "explanation", SCORE), n_boot=n_boot, seed=seed))
    return claims.judge("A-3", A3, source="exploratory", rule="directional", effect=effect,
                        expected_sign=1, numbers=numbers)


def judge_a4(rule_rows, llm_rows, llm_label: str, *, quantile: float, n_boot: int, seed: int):
    """A-4: the rate of latents rescued by the LLM (`rescued_by_llm`) is above the rate the
    noise bands alone would give (1 - quantile: a latent whose LLM score is noise lands above
    the LLM band that often). The rate is a proportion over latents (exact binomial interval),
    so one rescued latent of 30 is not evidence: it is what noise produces."""
    missing = _llm_ingredient_missing(llm_rows)
    found = None if missing else rescued_by_llm(rule_rows, llm_rows, quantile)
    effect = (None if found is None or not len(found["indicator"])
              else Effect.from_proportion(found["indicator"]))
    if effect is None:
        return claims.not_tested("A-4", A4, source="post", reason=missing or (
            "no LLM-scored latent has both a rule-based and an LLM score defined"))
    numbers = {"pipeline": llm_label, "rescued_latents": found["rescued"],
               "noise_quantile": quantile, "rule_based_band": found["rule_band"],
               "llm_band": found["llm_band"]}
    return claims.judge("A-4", A4, source="post", rule="threshold", effect=effect,
                        threshold=1.0 - quantile, higher_is_reproduced=True, numbers=numbers)


# ------------------------------------------------------------------ scoring one SAE's latents
def score_sae_latents(encode, read, token_ids, ex_tokens, *, d_sae: int, n_candidates: int,
                      n_latents: int, excerpt_width: int, n_top: int, n_quantiles: int,
                      per_quantile: int, top_tokens_k: int, corpus_records,
                      split_options: Mapping, baseline_kinds=None, seed: int) -> dict:
    """The rule-based pipeline on a seeded sample of one SAE's latents, chosen as the page
    chooses the reference SAE's: `n_candidates` latents drawn uniformly, encoded on the contexts
    `token_ids` [N, T] (activations from `read(lo, hi)`), and the first `n_latents` of a seeded
    permutation that fire in enough excerpts to be explained and scored. Returns the score rows,
    the SAE's L0 on those tokens and the share of its latents that never fire there."""
    cand = A.sample_latents(np.ones(d_sae), min(n_candidates, d_sae), seed=seed)
    la = A.latent_activations(encode, read, len(token_ids), latents=cand, progress=False)
    ex_acts, _ = A.excerpts(la.acts, token_ids, excerpt_width)
    need = split_options["n_explain"] + split_options["n_score_top"]
    ok = [i for i in np.random.default_rng([seed, 7]).permutation(len(cand))
          if (ex_acts[:, :, i].max(axis=1) > 0).sum() >= need][:n_latents]
    exs = [A.select_examples(ex_acts[:, :, i], ex_tokens[:len(ex_acts)], latent=int(cand[i]),
                             n_top=n_top, n_quantiles=n_quantiles, per_quantile=per_quantile,
                             n_random=split_options["n_score_random"], seed=seed) for i in ok]
    extra = {} if baseline_kinds is None else {"baseline_kinds": list(baseline_kinds)}
    rows = A.score_latents(exs, A.TopTokensExplainer(k=top_tokens_k), A.LexicalSimulator(),
                           corpus_records=corpus_records, progress=False, **extra,
                           **split_options)
    return {"rows": rows, "l0": float(la.l0), "dead": float(np.mean(la.density == 0)),
            "n_latents": len(ok)}


# ------------------------------------------------------------------ matched L0
def sae_summary(name: str, metrics: Mapping, rows) -> dict:
    """One SAE for A-5: its name, L0 and loss recovered (from `lm_sae.splice_metrics`) and the
    rule-based scores of its sampled latents (NaN-free)."""
    scores = filled(rows, "explanation")
    return {"name": name, "l0": float(metrics["l0"]),
            "loss_recovered": float(metrics["loss_recovered"]),
            "scores": scores[np.isfinite(scores)]}


A5_NOT_RUN = (
    "the profile trains no second SAE at the reference's L0 (a5_topk is false): A-5 needs two "
    "SAEs that differ at matched L0 (two recipes, not two points of one L1 sweep, along which L0 "
    "and loss recovered move together)")


def judge_a5(first: Mapping | None, second: Mapping | None, *, l0_tolerance: float,
             lr_margin: float, n_boot: int, seed: int):
    """A-5: do explanation scores separate two SAEs that the cheap metrics cannot?

    Two SAEs of different recipes (`sae_summary` dicts) at matched L0 (relative difference
    <= `l0_tolerance`, else inconclusive: the design failed). The effect is the score of the SAE
    with the *lower* loss recovered minus the other's (difference of means over two independent
    samples of latents, bootstrap over latents):
    - loss recovered matched (gap <= `lr_margin`): the cheap metrics call the SAEs equal, so a
      score gap of either sign is signal on top of them: reproduced when the 95% CI excludes 0
      (a two-sided test, read as directional toward the observed sign);
    - loss recovered not matched: only a gap *against* it is signal on top (auto-interp prefers
      the SAE loss recovered ranks lower): reproduced when the CI lies above 0; a gap with
      loss recovered is what loss recovered predicts, so inconclusive.
    Never "not reproduced": equal scores at equal cheap metrics do not show that auto-interp
    could not tell SAEs apart, only that these two may be equally interpretable."""
    if first is None or second is None:
        return claims.not_tested("A-5", A5, source="post", reason=A5_NOT_RUN)
    low, high = sorted([first, second], key=lambda f: (f["loss_recovered"], f["name"]))
    l0_gap = abs(first["l0"] - second["l0"]) / max(1e-12, (first["l0"] + second["l0"]) / 2)
    lr_gap = high["loss_recovered"] - low["loss_recovered"]
    numbers = {"pipeline": "rule-based (top-tokens explanation, lexical simulator)",
               **{f"{f['name']} {k}": f[k] for f in (first, second)
                  for k in ("l0", "loss_recovered")},
               **{f"{f['name']} mean score": float(np.mean(f["scores"])) if len(f["scores"])
                  else float("nan") for f in (first, second)},
               "effect": f"score({low['name']}) - score({high['name']}): lower minus higher "
                         f"loss recovered", "relative_l0_gap": l0_gap, "l0_tolerance": l0_tolerance,
               "loss_recovered_gap": lr_gap, "lr_margin": lr_margin}
    if not len(low["scores"]) or not len(high["scores"]):
        return claims.inconclusive("A-5", A5, source="post", rule="directional", numbers=numbers,
                                   reason="an SAE has no latent with a defined score")
    effect = Effect.difference_of_items(low["scores"], high["scores"], n_boot=n_boot, seed=seed)
    if l0_gap > l0_tolerance:
        return claims.inconclusive("A-5", A5, source="post", rule="directional", numbers=numbers,
                                   effect=effect, reason=(
                                       f"L0 not matched: relative gap {l0_gap:.1%} > "
                                       f"{l0_tolerance:.0%}"))
    matched = lr_gap <= lr_margin
    sign = (1 if effect.mean >= 0 else -1) if matched else 1
    numbers["loss_recovered_matched"] = matched
    if directional(effect, expected_sign=sign) == NOT_REPRODUCED:
        return claims.inconclusive("A-5", A5, source="post", rule="directional",
                                   numbers=numbers, effect=effect, reason=(
                                       "the scores rank the two SAEs as loss recovered does, "
                                       "which is no signal on top of it"))
    return claims.judge("A-5", A5, source="post", rule="directional", effect=effect,
                        expected_sign=sign, numbers=numbers)


def verdicts(rule_rows, llm_rows, *, llm_label: str, latent_density: Mapping[int, float],
             latent_ctx_freq: Mapping[int, float], sweep_rows=(), n_boot: int, seed: int,
             noise_quantile: float, matched_saes=(None, None), l0_tolerance: float = 0.1,
             lr_margin: float = 0.02) -> list:
    """Claims A-1..A-5 from the rule-based rows, the most capable LLM pipeline's rows (empty
    when none ran), the latents' densities and excerpt frequencies, and for A-5 two SAEs of
    different recipes at matched L0 (`sae_summary` dicts; (None, None) when none was trained)."""
    return [judge_a1(rule_rows, llm_rows, llm_label, n_boot=n_boot, seed=seed),
            judge_a2(rule_rows, llm_rows, latent_density, latent_ctx_freq, sweep_rows,
                     n_boot=n_boot, seed=seed),
            judge_a3(rule_rows, llm_rows, n_boot=n_boot, seed=seed),
            judge_a4(rule_rows, llm_rows, llm_label, quantile=noise_quantile, n_boot=n_boot,
                     seed=seed),
            judge_a5(*matched_saes, l0_tolerance=l0_tolerance, lr_margin=lr_margin,
                     n_boot=n_boot, seed=seed)]


def interval_text(effect: Effect | None) -> str:
    """'0.123 [0.045, 0.201], n 40' for tables and plot titles; 'undefined' without an effect."""
    if effect is None:
        return "undefined"
    return f"{effect.mean:.3f} [{effect.ci[0]:.3f}, {effect.ci[1]:.3f}], n {effect.n}"
