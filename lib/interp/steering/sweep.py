"""Coefficient sweeps: every (variant, coefficient) point generated in one batch, scored for
effect and cost, and compared at matched cost (the Pareto comparison of the post).

Prompts are the unit of replication: a task has one or more evaluation prompts, every point is
sampled `n_samples` times on each, and a point's effect is kept per prompt (the mean over that
prompt's completions). Completions of one prompt share it, so their spread says nothing about
another prompt; the point's standard error is over prompts. The cost on neutral text (steered
delta CE) is deterministic. Two curves are compared per prompt, paired: the reference curve's
effect on a prompt is interpolated at the other curve's costs (inside the reference's cost
range), and the mean difference over those costs is that prompt's "A minus B at matched cost"
(bootstrapped over prompts by `interp.experiments.steering`).
"""

from __future__ import annotations

import dataclasses
import warnings
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

    prompt: str | tuple[str, ...]  # evaluation prompt(s); ActAdd's first, e.g. "I think you're"
    lexicon: str | tuple   # concept words (name in lexicons.LEXICONS or a word tuple)
    judge: evaluate.Judge
    minus_lexicon: str | tuple | None = None  # subtracted (e.g. hate words for love - hate)

    @property
    def prompts(self) -> tuple[str, ...]:
        return (self.prompt,) if isinstance(self.prompt, str) else tuple(self.prompt)


@dataclasses.dataclass
class Result:
    """Per point: the mean over prompts with its standard error over prompts (nan with one
    prompt), the per-prompt means, and the texts (prompt-major, `n_samples` per prompt)."""

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
    lexicon_by_prompt: np.ndarray | None = None  # [n_prompts] mean over each prompt's samples
    judge_by_prompt: np.ndarray | None = None


def _mean_se(x) -> tuple[float, float]:
    x = np.asarray(x, np.float64)
    x = x[np.isfinite(x)]
    if len(x) == 0:
        return float("nan"), float("nan")
    return float(x.mean()), float(x.std(ddof=1) / np.sqrt(len(x))) if len(x) > 1 else float("nan")


def _per_prompt(values: np.ndarray, n_points: int, n_samples: int) -> np.ndarray:
    """[n_prompts, n_points * n_samples] per-completion values -> [n_points, n_prompts] means
    over each prompt's completions (nan completions, e.g. empty CE, ignored)."""
    v = values.reshape(values.shape[0], n_points, n_samples)
    with np.errstate(invalid="ignore"), warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)  # an all-nan prompt stays nan
        return np.nanmean(v, axis=-1).T


def _generate_on(model, site, task, prompt, deltas, *, n_samples, max_new_tokens, seed,
                 batch_size, progress):
    """(texts, lexicon scores, judge probabilities, completion CEs) of `n_samples` completions
    per delta on one prompt, rows point-major."""
    prompt_ids = actadd.encode_prompt(model, prompt)
    rows = np.repeat(deltas, n_samples, axis=0)
    new = actadd.generate(model, site, prompt_ids, rows, max_new_tokens=max_new_tokens, seed=seed,
                          batch_size=batch_size, progress=progress)
    texts = [model.tokenizer.decode([t for t in ids if t != model.cfg.eos_id]) for ids in new]
    lex = lexicons.score(texts, task.lexicon, task.minus_lexicon)
    judge, ce = evaluate.judge_and_ce(model, prompt_ids, new, task.judge)
    return texts, lex, judge, ce


def run(model, site: str, task: Task, points: Sequence[Point], *, n_samples: int,
        max_new_tokens: int, neutral_tokens, seed: int = 0, batch_size: int = 64,
        resid_norm: float | None = None, progress: bool = True) -> list[Result]:
    """Generate `n_samples` completions of each of `task.prompts` for every point (one batched
    call per prompt, the same seed on every prompt), then score effect (lexicon, judge) per
    prompt and cost (completion CE, steered delta CE)."""
    if not points:
        raise ValueError("no points to run")
    deltas = np.stack([p.coeff * np.asarray(p.vector, np.float32) for p in points])  # [K, P, d]
    per = [_generate_on(model, site, task, prompt, deltas, n_samples=n_samples,
                        max_new_tokens=max_new_tokens, seed=seed, batch_size=batch_size,
                        progress=progress) for prompt in task.prompts]
    k = len(points)
    lex, judge, ce = (_per_prompt(np.stack([x[i] for x in per]), k, n_samples) for i in (1, 2, 3))
    dce = evaluate.steered_delta_ce(model, site, deltas, neutral_tokens)
    out = []
    for i, p in enumerate(points):
        texts = [t for x in per for t in x[0][i * n_samples:(i + 1) * n_samples]]
        rel = float("nan")
        if resid_norm:
            rel = float(np.linalg.norm(deltas[i], axis=-1).max() / resid_norm)
        out.append(Result(p.variant, p.coeff, *_mean_se(lex[i]), *_mean_se(judge[i]),
                          *_mean_se(ce[i]), float(dce[i]), rel, texts, lex[i], judge[i]))
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


def per_prompt_curve(results: Sequence[Result], variant: str, effect: str = "lexicon",
                     baseline: str | None = "unsteered") -> dict[str, np.ndarray]:
    """`curve` with the per-prompt effects: "effect" is [n_points, n_prompts]."""
    c = curve(results, variant, effect, baseline=baseline)
    names = {variant} | ({baseline} if baseline else set())
    rs = sorted((r for r in results if r.variant in names), key=lambda r: r.coeff)
    by_prompt = [getattr(r, effect + "_by_prompt") for r in rs]
    if any(v is None for v in by_prompt):
        raise ValueError(f"variant {variant!r} has no per-prompt {effect}; run it with sweep.run")
    return {**c, "effect": np.stack([np.asarray(v, np.float64) for v in by_prompt])}


def matched_comparison(a: dict, b: dict) -> dict:
    """Effect of curve `a` minus curve `b` at matched cost, per prompt (see the module
    docstring). Curves come from `per_prompt_curve` ("effect" [n_points, n_prompts]) or `curve`
    ("effect" [n_points]: one prompt).

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

