"""Steering vectors (snippet 1 of GDM's Progress Update #1): the page's reductions and verdicts.

Prompts are the unit of replication. Every effect is the teacher-forced log-probability of the
concept's next-token words after a neutral prompt (`interp.steering.teacher_forced`), reduced to
one number per evaluation prompt; two variants are compared on the same prompts at matched cost
(delta CE on neutral text), paired, and bootstrapped over prompts (`Effect.from_items`). The
steering layer is chosen on selection prompts disjoint from the evaluation prompts
(`choose_layer`), so the tests carry no winner's curse.

A gate comes first: if the original wedding vector does not raise its concept at the chosen layer
(S7), nothing can be said about how its pieces steer, so every other steering claim is
inconclusive by rule; S2 also needs the anger vector itself to steer.

Features are labelled by the page's rule only: a feature is a *concept feature* when its logit
lens or the peak tokens of its top training-store contexts hit the concept's lexicon. A claim
that needs a concept feature (the single anger feature, the hand-picked wedding features, the
wedding/non-wedding split) is not tested, with the reason, when the rule finds none; no other
feature stands in for it.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping, Sequence

import numpy as np

from interp import claims, stats
from interp.steering import lexicons, sweep, teacher_forced

SNIPPET = "GDM mech-interp Progress Update #1 (April 2024), Steering vectors"


# ------------------------------------------------------------------ choosing the layer
def choose_layer(gains: Mapping[int, np.ndarray], costs: Mapping[int, Sequence[float]],
                 coeffs: Sequence[float], max_delta_ce: float) -> tuple[int, list[dict]]:
    """The steering layer, by a rule fixed before the run: for each layer, the largest mean gain
    (over selection prompts) among its coefficients whose delta CE is at most `max_delta_ce`;
    the layer with the largest such gain wins (ties: the lower layer).

    gains[layer] is [n_coeffs, n_prompts], costs[layer] [n_coeffs]. Returns the layer and one
    display row per layer. A layer with no point inside the budget cannot win; if no layer has
    one, the budget is refused by name rather than silently relaxed."""
    rows = []
    for layer in sorted(gains):
        g = np.asarray(gains[layer], np.float64)
        c = np.asarray(costs[layer], np.float64)
        if g.shape[0] != len(c) or len(c) != len(coeffs):
            raise ValueError(f"layer {layer}: {g.shape[0]} gains, {len(c)} costs, "
                             f"{len(coeffs)} coefficients")
        ok = np.flatnonzero(c <= max_delta_ce)
        if not len(ok):
            rows.append({"layer": layer, "coeff": float("nan"), "gain": float("nan"),
                         "gain se": float("nan"), "delta CE": float("nan")})
            continue
        i = ok[np.argmax(g[ok].mean(1))]
        n = g.shape[1]
        rows.append({"layer": layer, "coeff": float(coeffs[i]), "gain": float(g[i].mean()),
                     "gain se": float(g[i].std(ddof=1) / np.sqrt(n)) if n > 1 else float("nan"),
                     "delta CE": float(c[i])})
    eligible = [r for r in rows if np.isfinite(r["gain"])]
    if not eligible:
        raise ValueError(f"no layer has a coefficient with delta CE <= {max_delta_ce} nats; add "
                         f"smaller coefficients or raise max_delta_ce")
    best = max(eligible, key=lambda r: (r["gain"], -r["layer"]))
    return best["layer"], rows


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
def compare(results, a: str, b: str, concept: str) -> dict:
    """Variant `a` minus variant `b` at matched delta CE, per prompt, in gain over unsteered
    (b's curve includes the unsteered point); see `sweep.matched_comparison`."""
    return sweep.matched_comparison(teacher_forced.curve(results, a, concept, baseline=None),
                                    teacher_forced.curve(results, b, concept))


def gain_over_unsteered(results, concept: str, variant: str = "orig") -> np.ndarray:
    """Per prompt: the variant's gain over the unsteered model averaged over its swept
    coefficients (a pre-set summary of the sweep: no coefficient is picked after seeing the
    data)."""
    return teacher_forced.curve(results, variant, concept, baseline=None)["effect"].mean(0)


def ablation_drops(base, ablated: Sequence, concept: str) -> np.ndarray:
    """[n_features, n_prompts]: the full vector's effect minus the effect with one feature
    ablated, on each prompt (same coefficient, same prompts)."""
    ref = np.asarray(base.of(concept), np.float64)
    return np.stack([ref - np.asarray(r.of(concept), np.float64) for r in ablated])


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
    """What the notebook measured on the evaluation prompts (`teacher_forced.Measured` lists)."""

    layer: int                                 # the chosen steering layer
    tops: Mapping[str, Sequence[int]]          # top features by |delta f| per vector
    concept: Mapping[str, Sequence[int]]       # concept-labelled features among them
    anger: Sequence                            # unsteered, orig, recon, [single]
    wedding: Sequence                          # unsteered, orig, recon, [handpicked], [pruned]
    importance_features: Sequence[int]         # features ablated from the wedding vector
    importance_base: object                    # the full vector at importance_coeff
    importance_ablated: Sequence               # one result per ablated feature
    importance_is_wedding: Sequence[bool]      # each ablated feature wedding-labelled?
    anger_feature: int | None                  # the single anger feature (None: none labelled)
    handpicked: Sequence[int]                  # wedding-labelled features ([] when none)
    irrelevant: Sequence[int]                  # removed by pruned
    error_fraction: Mapping[str, float] = dataclasses.field(default_factory=dict)


@dataclasses.dataclass(frozen=True)
class _Gate:
    """Whether a claim may be decided: `reason` is empty when it may."""

    reason: str = ""


def _decide(claim_id: str, text: str, gate: _Gate, *, source: str, rule: str,
            effect: stats.Effect, numbers: dict, **rule_args):
    if gate.reason:
        return claims.inconclusive(claim_id, text, source=source, rule=rule, reason=gate.reason,
                                   numbers=numbers, effect=effect)
    return claims.judge(claim_id, text, source=source, rule=rule, effect=effect,
                        numbers=numbers, **rule_args)


def _judge_matched(claim_id: str, text: str, cmp: dict, gate: _Gate, *, source: str,
                   expected_sign: int, numbers: dict):
    """A directional claim on a matched-cost comparison; not tested when the two curves share
    no delta-CE range (nothing is compared at equal cost)."""
    numbers = {"matched points": cmp["n_matched"], **numbers}
    if cmp["n_matched"] == 0:
        return claims.not_tested(claim_id, text, source=source, numbers=numbers, reason=(
            "no point of the variant lies inside the reference curve's delta-CE range"))
    return _decide(claim_id, text, gate, source=source, rule="directional",
                   effect=stats.Effect.from_items(cmp["per_prompt"]),
                   expected_sign=expected_sign, numbers=numbers)


def _s1(r: SteeringResults, gate: _Gate, min_concept_share: float):
    items = concept_share_items(r.tops, r.concept)
    return _decide(
        "S1", f"ActAdd vectors are highly interpretable in SAE features: at least "
              f"{min_concept_share:.0%} of the anger and wedding vectors' top features carry "
              f"the concept ({SNIPPET})", gate,
        source="post", rule="threshold", effect=stats.Effect.from_proportion(items),
        threshold=min_concept_share, higher_is_reproduced=True,
        numbers={"concept features in top anger": len(r.concept["anger"]),
                 "concept features in top wedding": len(r.concept["wedding"]),
                 "top_k": len(r.tops["anger"]),
                 **{f"error fraction {k}": v for k, v in r.error_fraction.items()}})


def _s2(r: SteeringResults, gate: _Gate):
    text = (f"A single SAE anger feature steers better than the ActAdd anger vector at matched "
            f"cost (anger log-probability at equal delta CE) ({SNIPPET})")
    if r.anger_feature is None:
        return claims.not_tested("S2", text, source="post", reason=(
            "no anger-labelled feature among the top features the plus prompt adds"))
    if not gate.reason:
        anger = stats.Effect.from_items(gain_over_unsteered(r.anger, "anger"))
        if stats.directional(anger, 1) != stats.REPRODUCED:
            lo, hi = anger.interval()
            gate = _Gate(f"by rule: the anger vector itself does not raise the anger "
                         f"log-probability at layer {r.layer} (gain {anger.mean:+.3f} nats "
                         f"[{lo:.3f}, {hi:.3f}] over {anger.n} prompts), so no variant of it "
                         f"can be compared")
    return _judge_matched("S2", text, compare(r.anger, "single", "orig", "anger"), gate,
                          source="post", expected_sign=1, numbers={"feature": r.anger_feature})


def _s3(r: SteeringResults, gate: _Gate):
    return _judge_matched(
        "S3", f"The SAE reconstruction of the wedding vector steers worse than the vector "
              f"(wedding log-probability at equal delta CE) ({SNIPPET})",
        compare(r.wedding, "recon", "orig", "wedding"), gate, source="post", expected_sign=-1,
        numbers={"error fraction": r.error_fraction.get("wedding", float("nan"))})


def _s4(r: SteeringResults, gate: _Gate):
    text = "Only the hand-picked wedding features steer notably worse than the wedding vector"
    if not r.handpicked:
        return claims.not_tested("S4", text, source="exploratory",
                                 reason="no wedding-labelled feature among the top features")
    return _judge_matched("S4", text, compare(r.wedding, "handpicked", "orig", "wedding"), gate,
                          source="exploratory", expected_sign=-1,
                          numbers={"handpicked": list(r.handpicked)})


def _s5(r: SteeringResults, gate: _Gate):
    text = ("The most important features (by ablation) of the wedding vector are not the "
            "obvious wedding ones (largest drop among others minus largest among wedding ones)")
    is_wedding = [bool(w) for w in r.importance_is_wedding]
    gap = top_group_gap(ablation_drops(r.importance_base, r.importance_ablated, "wedding"),
                        is_wedding)
    if gap is None:
        return claims.not_tested("S5", text, source="exploratory", reason=(
            f"the {len(is_wedding)} ablated features are all "
            f"{'wedding' if all(is_wedding) else 'non-wedding'} features by the labelling rule"))
    return _decide("S5", text, gate, source="exploratory", rule="directional",
                   effect=stats.Effect.from_items(gap), expected_sign=1,
                   numbers={"wedding features ablated": int(sum(is_wedding)),
                            "other features ablated": len(is_wedding) - int(sum(is_wedding))})


def _s6(r: SteeringResults, gate: _Gate):
    text = ("Removing irrelevant (not wedding-labelled) top features from the wedding vector "
            "improves steering")
    if not r.handpicked or not r.irrelevant:
        why = ("no wedding-labelled feature, so the labels do not separate relevant from "
               "irrelevant features" if not r.handpicked
               else "every top feature is wedding-labelled")
        return claims.not_tested("S6", text, source="exploratory", reason=why)
    return _judge_matched("S6", text, compare(r.wedding, "pruned", "orig", "wedding"), gate,
                          source="exploratory", expected_sign=1,
                          numbers={"removed": list(r.irrelevant)})


S7_TEXT = ("Sanity (the gate): the wedding vector steers at the chosen layer (wedding "
           "log-probability gain over unsteered, averaged over the coefficient sweep)")


def steering_effect(r: SteeringResults) -> stats.Effect:
    """S7's effect: the original wedding vector's gain over unsteered, per evaluation prompt."""
    return stats.Effect.from_items(gain_over_unsteered(r.wedding, "wedding"))


def verdicts(results: SteeringResults, *, min_concept_share: float) -> list[claims.Claim]:
    """Decide S1..S7 from the page's results (see the module docstring for the unit and the
    gate)."""
    effect = steering_effect(results)
    steers = stats.directional(effect, 1) == stats.REPRODUCED
    lo, hi = effect.interval()
    gate = _Gate("" if steers else (
        f"by rule: the wedding vector does not raise the wedding log-probability at layer "
        f"{results.layer} (S7: {effect.mean:+.3f} nats [{lo:.3f}, {hi:.3f}] over {effect.n} "
        f"prompts), so no decomposition of it can be judged by how it steers"))
    out = [_s1(results, gate, min_concept_share), _s2(results, gate), _s3(results, gate),
           _s4(results, gate), _s5(results, gate), _s6(results, gate)]
    out.append(claims.judge("S7", S7_TEXT, source="exploratory", rule="directional",
                            effect=effect, expected_sign=1, numbers={"layer": results.layer}))
    return out
