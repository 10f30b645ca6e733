"""Steering vectors (snippet 1 of GDM's Progress Update #1): the page's reductions and verdicts.

Prompts are the unit of replication. A steering claim is about vectors in general, and every
completion of one prompt shares that prompt, so each variant's effect is reduced to one number
per evaluation prompt (`interp.steering.sweep`), two variants are compared on the same prompts
(paired), and the effect is bootstrapped over prompts (`Effect.from_items`). With fewer than 3
prompts every steering claim is inconclusive by rule.

Features are labelled by the page's rule only: a feature is a *concept feature* when its logit
lens or the peak tokens of its top held-out contexts hit the concept's lexicon. A claim that
needs a concept feature (the single anger feature, the hand-picked wedding features, the
wedding/non-wedding split) is not tested, with the reason, when the rule finds none; no other
feature stands in for it.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping, Sequence

import numpy as np

from interp import claims, stats
from interp.steering import lexicons, sweep

SNIPPET = "GDM mech-interp Progress Update #1 (April 2024), Steering vectors"


# ------------------------------------------------------------------ feature labels and choices
def concept_features(top: Sequence[int], cards: Mapping, words) -> list[int]:
    """The features of `top` (in order) that the page's labelling rule marks as concept
    features: a lexicon hit in the card's logit lens or peak tokens."""
    return [f for f in top if lexicons.hits(list(cards[f].lens) + list(cards[f].top_tokens), words)]


def single_feature(positive_top: Sequence[int], concept: Sequence[int]) -> int | None:
    """The top concept feature among those the plus prompt adds (None when there is none)."""
    return next((f for f in positive_top if f in set(concept)), None)


def irrelevant_features(top: Sequence[int], concept: Sequence[int]) -> list[int]:
    """Top features that are not concept features (what the *pruned* variant removes)."""
    return [f for f in top if f not in set(concept)]


def concept_share_items(tops: Mapping[str, Sequence[int]], concept: Mapping[str, Sequence[int]],
                        vectors: Sequence[str] = ("anger", "wedding")) -> np.ndarray:
    """One item per top feature of each of `vectors`: 1 when concept-labelled, else 0."""
    return np.array([float(f in set(concept[k])) for k in vectors for f in tops[k]])


# ------------------------------------------------------------------ per-prompt reductions
def compare(results, a: str, b: str, effect: str) -> dict:
    """Variant `a` minus variant `b` at matched delta CE, per prompt (b's curve includes the
    unsteered point); see `sweep.matched_comparison`."""
    return sweep.matched_comparison(sweep.per_prompt_curve(results, a, effect, baseline=None),
                                    sweep.per_prompt_curve(results, b, effect))


def gain_over_unsteered(results, variant: str = "orig", effect: str = "lexicon") -> np.ndarray:
    """Per prompt: the variant's effect averaged over its swept coefficients minus the unsteered
    effect (a pre-set summary of the sweep: no coefficient is picked after seeing the data)."""
    c = sweep.per_prompt_curve(results, variant, effect)
    if c["coeff"][0] != 0.0:
        raise ValueError(f"no unsteered point in the results of {variant!r}; add "
                         f"sweep.Point('unsteered', 0.0, ...) to the sweep")
    return c["effect"][1:].mean(0) - c["effect"][0]


def ablation_drops(base, ablated: Sequence, effect: str = "lexicon") -> np.ndarray:
    """[n_features, n_prompts]: the full vector's effect minus the effect with one feature
    ablated, on each prompt (same coefficient, same batch, same seed)."""
    ref = np.asarray(getattr(base, effect + "_by_prompt"), np.float64)
    return np.stack([ref - np.asarray(getattr(r, effect + "_by_prompt"), np.float64)
                     for r in ablated])


def top_group_gap(drops: np.ndarray, is_concept: Sequence[bool]) -> np.ndarray | None:
    """Per prompt: the largest drop among non-concept features minus the largest among concept
    features (None when either group is empty). Positive: a non-obvious feature matters most.
    The max over the larger group is favoured under no effect; the page reports group sizes."""
    is_concept = np.asarray(is_concept, bool)
    if is_concept.all() or not is_concept.any():
        return None
    return drops[~is_concept].max(0) - drops[is_concept].max(0)


def ranking_rows(features: Sequence[int], drops: np.ndarray, is_concept: Sequence[bool],
                 labels: Mapping[int, str]) -> list[dict]:
    """Display rows of the ablation ranking: mean drop over prompts and its se over prompts."""
    n = drops.shape[1]
    rows = [{"feature": f, "drop": float(d.mean()),
             "drop se": float(d.std(ddof=1) / np.sqrt(n)) if n > 1 else float("nan"),
             "wedding feature": bool(c), "label": labels.get(f, "")}
            for f, d, c in zip(features, drops, is_concept)]
    return sorted(rows, key=lambda r: -r["drop"])


# ------------------------------------------------------------------ verdicts
@dataclasses.dataclass
class SteeringResults:
    """What the notebook measured (plain lists and `sweep.Result`s)."""

    tops: Mapping[str, Sequence[int]]          # top features by |delta f| per vector
    concept: Mapping[str, Sequence[int]]       # concept-labelled features among them
    anger: Sequence                            # sweep results: orig, recon, [single], unsteered
    wedding: Sequence                          # orig, recon, [handpicked], [pruned], unsteered
    importance_features: Sequence[int]         # features ablated from the wedding vector
    importance_base: object                    # the full vector's result at importance_coeff
    importance_ablated: Sequence               # one result per ablated feature
    importance_is_wedding: Sequence[bool]      # each ablated feature wedding-labelled?
    anger_feature: int | None                  # the single anger feature (None: none labelled)
    handpicked: Sequence[int]                  # wedding-labelled features ([] when none)
    irrelevant: Sequence[int]                  # removed by pruned
    error_fraction: Mapping[str, float] = dataclasses.field(default_factory=dict)


def _judge_matched(claim_id: str, text: str, cmp: dict, *, source: str, expected_sign: int,
                   numbers: dict):
    """A directional claim on a matched-cost comparison; not tested when the two curves share
    no delta-CE range (nothing is compared at equal cost)."""
    numbers = {"matched points": cmp["n_matched"], **numbers}
    if cmp["n_matched"] == 0:
        return claims.not_tested(claim_id, text, source=source, numbers=numbers, reason=(
            "no point of the variant lies inside the reference curve's delta-CE range"))
    return claims.judge(claim_id, text, source=source, rule="directional",
                        effect=stats.Effect.from_items(cmp["per_prompt"]),
                        expected_sign=expected_sign, numbers=numbers)


def _s1(r: SteeringResults, min_concept_share: float):
    items = concept_share_items(r.tops, r.concept)
    return claims.judge(
        "S1", f"ActAdd vectors are highly interpretable in SAE features: at least "
              f"{min_concept_share:.0%} of the anger and wedding vectors' top features carry "
              f"the concept ({SNIPPET})",
        source="post", rule="threshold", effect=stats.Effect.from_proportion(items),
        threshold=min_concept_share, higher_is_reproduced=True,
        numbers={"concept features in top anger": len(r.concept["anger"]),
                 "concept features in top wedding": len(r.concept["wedding"]),
                 "top_k": len(r.tops["anger"]),
                 **{f"error fraction {k}": v for k, v in r.error_fraction.items()}})


def _s2(r: SteeringResults):
    text = (f"A single SAE anger feature steers better than the ActAdd anger vector at matched "
            f"cost (judge probability at equal delta CE) ({SNIPPET})")
    if r.anger_feature is None:
        return claims.not_tested("S2", text, source="post", reason=(
            "no anger-labelled feature among the top features the plus prompt adds"))
    lex = compare(r.anger, "single", "orig", "lexicon")
    return _judge_matched("S2", text, compare(r.anger, "single", "orig", "judge"), source="post",
                          expected_sign=1, numbers={"feature": r.anger_feature,
                                                    "lexicon difference": lex["difference"]})


def _s3(r: SteeringResults):
    return _judge_matched(
        "S3", f"The SAE reconstruction of the wedding vector steers worse than the vector "
              f"(wedding words at equal delta CE) ({SNIPPET})",
        compare(r.wedding, "recon", "orig", "lexicon"), source="post", expected_sign=-1,
        numbers={"error fraction": r.error_fraction.get("wedding", float("nan"))})


def _s4(r: SteeringResults):
    text = "Only the hand-picked wedding features steer notably worse than the wedding vector"
    if not r.handpicked:
        return claims.not_tested("S4", text, source="exploratory",
                                 reason="no wedding-labelled feature among the top features")
    return _judge_matched("S4", text, compare(r.wedding, "handpicked", "orig", "lexicon"),
                          source="exploratory", expected_sign=-1,
                          numbers={"handpicked": list(r.handpicked)})


def _s5(r: SteeringResults):
    text = ("The most important features (by ablation) of the wedding vector are not the "
            "obvious wedding ones (largest drop among others minus largest among wedding ones)")
    is_wedding = [bool(w) for w in r.importance_is_wedding]
    gap = top_group_gap(ablation_drops(r.importance_base, r.importance_ablated), is_wedding)
    if gap is None:
        return claims.not_tested("S5", text, source="exploratory", reason=(
            f"the {len(is_wedding)} ablated features are all "
            f"{'wedding' if all(is_wedding) else 'non-wedding'} features by the labelling rule"))
    return claims.judge("S5", text, source="exploratory", rule="directional",
                        effect=stats.Effect.from_items(gap), expected_sign=1,
                        numbers={"wedding features ablated": int(sum(is_wedding)),
                                 "other features ablated": len(is_wedding) - int(sum(is_wedding))})


def _s6(r: SteeringResults):
    text = ("Removing irrelevant (not wedding-labelled) top features from the wedding vector "
            "improves steering")
    if not r.handpicked or not r.irrelevant:
        why = ("no wedding-labelled feature, so the labels do not separate relevant from "
               "irrelevant features" if not r.handpicked
               else "every top feature is wedding-labelled")
        return claims.not_tested("S6", text, source="exploratory", reason=why)
    return _judge_matched("S6", text, compare(r.wedding, "pruned", "orig", "lexicon"),
                          source="exploratory", expected_sign=1,
                          numbers={"removed": list(r.irrelevant)})


def _s7(r: SteeringResults):
    return claims.judge(
        "S7", "Sanity: the wedding vector steers at the SAE's layer (wedding words over the "
              "coefficient sweep minus unsteered)",
        source="exploratory", rule="directional",
        effect=stats.Effect.from_items(gain_over_unsteered(r.wedding)), expected_sign=1)


def verdicts(results: SteeringResults, *, min_concept_share: float) -> list[claims.Claim]:
    """Decide S1..S7 from the page's results (see the module docstring for the unit)."""
    return [_s1(results, min_concept_share), _s2(results), _s3(results), _s4(results),
            _s5(results), _s6(results), _s7(results)]
