"""Coefficient sweeps: every (variant, coefficient) point generated in one batch, scored for
effect and cost, and compared at matched cost (the Pareto comparison of the post).

A point's effect is the mean over its samples with its standard error; the cost on neutral text
(steered delta CE) is deterministic. Two curves are compared by interpolating the reference
curve's effect at the other curve's costs (only inside the reference's cost range): the mean
difference is the effect of "A beats B at matched cost", and the root-mean-square of the
combined standard errors is its spread (for `interp.claims.verdict_from_comparison`).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence

import numpy as np

from interp.steering import actadd, evaluate, lexicons


@dataclasses.dataclass(frozen=True)
class Point:
    variant: str
    coeff: float
    vector: np.ndarray  # [P, d] before the coefficient


@dataclasses.dataclass(frozen=True)
class Task:
    """What one concept's steering is evaluated on."""

    prompt: str            # the evaluation prompt ActAdd used, e.g. "I think you're"
    lexicon: str | tuple   # concept words (name in lexicons.LEXICONS or a word tuple)
    judge: evaluate.Judge
    minus_lexicon: str | tuple | None = None  # subtracted (e.g. hate words for love - hate)


@dataclasses.dataclass
class Result:
    """Per point: summary statistics; per sample: texts and raw scores."""

    variant: str
    coeff: float
    lexicon: float
    lexicon_se: float
    judge: float
    judge_se: float
    completion_ce: float
    completion_ce_se: float
    delta_ce: float
    rel_norm: float
    texts: list[str]


def _mean_se(x) -> tuple[float, float]:
    x = np.asarray(x, np.float64)
    x = x[np.isfinite(x)]
    if len(x) == 0:
        return float("nan"), float("nan")
    return float(x.mean()), float(x.std(ddof=1) / np.sqrt(len(x))) if len(x) > 1 else float("nan")


def run(model, site: str, task: Task, points: Sequence[Point], *, n_samples: int,
        max_new_tokens: int, neutral_tokens, seed: int = 0, batch_size: int = 64,
        resid_norm: float | None = None, progress: bool = True) -> list[Result]:
    """Generate `n_samples` completions of `task.prompt` for every point (all in a few large
    batches), then score effect (lexicon, judge) and cost (completion CE, steered delta CE)."""
    if not points:
        raise ValueError("no points to run")
    deltas = np.stack([p.coeff * np.asarray(p.vector, np.float32) for p in points])  # [K, P, d]
    rows = np.repeat(deltas, n_samples, axis=0)
    prompt_ids = actadd.encode_prompt(model, task.prompt)
    new = actadd.generate(model, site, prompt_ids, rows, max_new_tokens=max_new_tokens, seed=seed,
                          batch_size=batch_size, progress=progress)
    texts = [model.tokenizer.decode([t for t in ids if t != model.cfg.eos_id]) for ids in new]
    lex = lexicons.score(texts, task.lexicon, task.minus_lexicon)
    judge, ce = evaluate.judge_and_ce(model, prompt_ids, new, task.judge)
    dce = evaluate.steered_delta_ce(model, site, deltas, neutral_tokens)
    out = []
    for k, p in enumerate(points):
        s = slice(k * n_samples, (k + 1) * n_samples)
        lm, ls = _mean_se(lex[s])
        jm, js = _mean_se(judge[s])
        cm, cs = _mean_se(ce[s])
        rel = float("nan")
        if resid_norm:
            rel = float(np.linalg.norm(deltas[k], axis=-1).max() / resid_norm)
        out.append(Result(p.variant, p.coeff, lm, ls, jm, js, cm, cs, float(dce[k]), rel, texts[s]))
    return out


def curve(results: Sequence[Result], variant: str, effect: str = "lexicon",
          cost: str = "delta_ce", baseline: str | None = "unsteered") -> dict[str, np.ndarray]:
    """One variant's points sorted by coefficient (with the shared `baseline` point, the
    coefficient-0 run, when present): coeff, effect, effect_se (nan -> 0), cost arrays."""
    names = {variant} | ({baseline} if baseline else set())
    rs = sorted((r for r in results if r.variant in names), key=lambda r: r.coeff)
    if not any(r.variant == variant for r in rs):
        raise ValueError(f"no results for variant {variant!r}")
    return {"coeff": np.array([r.coeff for r in rs]),
            "effect": np.array([getattr(r, effect) for r in rs]),
            "effect_se": np.nan_to_num(np.array([getattr(r, effect + "_se") for r in rs])),
            "cost": np.array([getattr(r, cost) for r in rs])}


def matched_comparison(a: dict, b: dict) -> dict[str, float]:
    """Effect of curve `a` minus curve `b` at matched cost (see the module docstring).

    `b`'s effect (and standard error) is linearly interpolated at each of `a`'s costs inside
    `b`'s cost range; the result has the mean difference, its spread and how many points of `a`
    were comparable. No overlap gives nan (an inconclusive verdict)."""
    order = np.argsort(b["cost"], kind="stable")
    bc, be, bs = b["cost"][order], b["effect"][order], b["effect_se"][order]
    inside = (a["cost"] >= bc[0]) & (a["cost"] <= bc[-1])
    if not inside.any():
        return {"difference": float("nan"), "spread": float("nan"), "n_matched": 0}
    diff = a["effect"][inside] - np.interp(a["cost"][inside], bc, be)
    se2 = np.nan_to_num(a["effect_se"][inside]) ** 2 + np.interp(a["cost"][inside], bc,
                                                                  np.nan_to_num(bs)) ** 2
    n = int(inside.sum())
    return {"difference": float(diff.mean()), "spread": float(np.sqrt(se2.mean() / n)),
            "n_matched": n}


def best_at_budget(c: dict, max_cost: float) -> tuple[float, float]:
    """The largest effect (and its standard error) among points with cost <= `max_cost`."""
    ok = c["cost"] <= max_cost
    if not ok.any():
        return float("nan"), float("nan")
    i = np.flatnonzero(ok)[np.argmax(c["effect"][ok])]
    return float(c["effect"][i]), float(c["effect_se"][i])
