"""Coefficient sweeps compared at matched cost (the Pareto comparison of the post).

A sweep is a list of `Point`s (variant, coefficient, vector); `interp.steering.teacher_forced`
scores them all in one batched pass. Prompts are the unit of replication: two curves are compared
per prompt, paired: the reference curve's effect on a prompt is interpolated at the other curve's
costs (inside the reference's cost range), and the mean difference over those costs is that
prompt's "A minus B at matched cost" (bootstrapped over prompts by `interp.experiments.steering`).
"""

from __future__ import annotations

import dataclasses

import numpy as np


@dataclasses.dataclass(frozen=True)
class Point:
    variant: str
    coeff: float
    vector: np.ndarray  # [P, d] before the coefficient


def matched_comparison(a: dict, b: dict) -> dict:
    """Effect of curve `a` minus curve `b` at matched cost, per prompt (see the module
    docstring). Curves are dicts with "cost" [n_points] and "effect" [n_points, n_prompts] (or
    [n_points]: one prompt), as `teacher_forced.curve` returns them.

    `b`'s effect on each prompt is linearly interpolated at each of `a`'s costs inside `b`'s
    cost range; "per_prompt" is the mean difference over those costs for every prompt (paired:
    the same prompt in both curves), "difference" its mean over prompts, "n_matched" how many
    points of `a` were comparable. No overlap gives nan per prompt and n_matched 0."""
    ae = np.asarray(a["effect"], np.float64).reshape(len(a["cost"]), -1)
    be = np.asarray(b["effect"], np.float64).reshape(len(b["cost"]), -1)
    if ae.shape[1] != be.shape[1]:
        raise ValueError(f"curves have {ae.shape[1]} and {be.shape[1]} prompts; compare "
                         f"variants sampled on the same prompts")
    order = np.argsort(b["cost"], kind="stable")
    bc, be = np.asarray(b["cost"])[order], be[order]
    inside = (a["cost"] >= bc[0]) & (a["cost"] <= bc[-1])
    if not inside.any():
        nan = np.full(ae.shape[1], np.nan)
        return {"per_prompt": nan, "difference": float("nan"), "n_matched": 0}
    ref = np.stack([np.interp(a["cost"][inside], bc, be[:, j]) for j in range(be.shape[1])], 1)
    per_prompt = (ae[inside] - ref).mean(0)
    return {"per_prompt": per_prompt, "difference": float(per_prompt.mean()),
            "n_matched": int(inside.sum())}

