"""Explain and score many latents, with the baselines that give every score a floor.

For each latent: split its records (explain on top records, score on held-out top + random),
explain, then score the explanation by simulation, detection and fuzzing. The same scorers are
applied to two baseline explanations: a random one (random corpus tokens) and the explanation of
another latent (a derangement over the latents scored together). The result is one flat dict
per (latent, explanation kind), ready for a table or a plot.
"""

from __future__ import annotations

from collections.abc import Sequence

from tqdm import tqdm

from interp.autointerp.explain import other_latent_explanations, random_explanation
from interp.autointerp.records import LatentExamples, Record, Split, split
from interp.autointerp.scoring import (
    correlation_by_source,
    detection_items,
    fuzzing_items,
    score_items,
    simulation_scores,
)

BASELINE_KINDS = ("random", "other_latent")


def score_explanation(explanation: str, held_out: Sequence[Record], simulator, judge=None, *,
                      seed: int = 0) -> dict:
    """All scores of one explanation on held-out records (judge=None skips detection/fuzzing)."""
    sims = simulator.simulate(explanation, held_out)
    row = {f"sim_{k}": v for k, v in simulation_scores(sims, held_out).items()}
    row.update({f"sim_{k}": v for k, v in correlation_by_source(sims, held_out).items()})
    if judge is not None:
        det = detection_items(held_out)
        if any(i.label for i in det) and not all(i.label for i in det):
            scores = score_items(judge, explanation, det)
            row.update({f"detection_{k}": v for k, v in scores.items()})
        fuzz = fuzzing_items(held_out, seed=seed)
        if any(i.label for i in fuzz) and not all(i.label for i in fuzz):
            scores = score_items(judge, explanation, fuzz)
            row.update({f"fuzzing_{k}": v for k, v in scores.items()})
    return row


def score_latents(examples: Sequence[LatentExamples], explainer, simulator, judge=None, *,
                  baselines: bool = True, corpus_records: Sequence[Record] = (),
                  n_explain: int = 5, n_score_top: int = 5, n_score_random: int = 5,
                  seed: int = 0, progress: bool = True, explanations: Sequence[str] | None = None,
                  extra_explanations: dict[str, Sequence[str]] | None = None,
                  baseline_kinds: Sequence[str] = BASELINE_KINDS,
                  include_quantile: bool = True) -> list[dict]:
    """Rows `{latent, kind, explanation, frequency, sim_*, detection_*, fuzzing_*}` with kind in
    "explanation", "random" (random-token explanation from `corpus_records`, or the random
    records when none are given), "other_latent".

    `explanations` (one per latent) skips the explainer, e.g. to score the same explanations with
    another simulator; `extra_explanations` maps more kinds (e.g. "top_tokens") to one
    explanation per latent, scored on the same held-out records; `baseline_kinds` picks a subset
    of the baselines (each LLM-simulated baseline costs as much as the explanation itself).
    """
    unknown = set(baseline_kinds) - set(BASELINE_KINDS)
    if unknown:
        raise ValueError(f"unknown baseline kinds {sorted(unknown)}; choose from {BASELINE_KINDS}")
    for name, texts in {"explanations": explanations, **(extra_explanations or {})}.items():
        if texts is not None and len(texts) != len(examples):
            raise ValueError(f"{name}: {len(texts)} explanations for {len(examples)} latents")
    splits: list[Split] = [split(ex, n_explain=n_explain, n_score_top=n_score_top,
                                 n_score_random=n_score_random, include_quantile=include_quantile,
                                 seed=seed) for ex in examples]
    if explanations is None:
        explanations = [explainer.explain(s.explain, ex.max_act) for ex, s in
                        zip(examples, tqdm(splits, desc="explain", disable=not progress))]
    explanations = list(explanations)
    rows = []
    others = (other_latent_explanations(explanations, seed)
              if baselines and "other_latent" in baseline_kinds and len(examples) > 1 else None)
    for i, (ex, s) in enumerate(zip(examples, tqdm(splits, desc="score", disable=not progress))):
        kinds = [("explanation", explanations[i])]
        kinds += [(k, texts[i]) for k, texts in (extra_explanations or {}).items()]
        if baselines:
            if "random" in baseline_kinds:
                pool = corpus_records or [r for e in examples for r in e.random]
                kinds.append(("random", random_explanation(pool, seed=seed * 100003 + ex.latent)))
            if others is not None:
                kinds.append(("other_latent", others[i]))
        for kind, text in kinds:
            row = {"latent": ex.latent, "kind": kind, "explanation": text,
                   "frequency": ex.frequency}
            row.update(score_explanation(text, s.score, simulator, judge, seed=seed))
            rows.append(row)
    return rows
