"""A steering effect that can see small shifts: teacher-forced log-probability of a concept.

Why not count concept words in samples (ActAdd's wedding-word count): with short completions
most counts are 0, so even a vector that works gives a noisy, mostly-zero effect, and a claim
comparing two variants needs far more completions than a CPU can sample. Instead, one forward
per (prompt, vector) reads the whole next-token distribution at the prompt's last position:

    effect(prompt, v) = log P_v(next token in W+ | prompt) - log P_v(next token in W- | prompt)

where W+ is a fixed set of single-token concept words (" wedding", " bride", ...), W- an
optional opposite set (love minus hate), and P_v the model with c * v added at the prompt's
front positions (ActAdd's placement). All concepts are scored from the same forward. The
steering *gain* on a prompt is effect(prompt, c v) - effect(prompt, 0), paired on the prompt.
The model runs once up to the steering site per prompt batch and resumes from there for every
vector (the site's residual plus the delta), as `evaluate.steered_delta_ce` does for the cost.
"""

from __future__ import annotations

import dataclasses
import functools
from collections.abc import Sequence

import jax
import jax.numpy as jnp
import numpy as np
from tqdm import tqdm

from interp.steering.actadd import resume_layer
from interp.steering.evaluate import steered_delta_ce


@dataclasses.dataclass(frozen=True)
class Concept:
    """Single-token concept words whose next-token log-probability is the effect."""

    name: str
    words: tuple[str, ...]             # e.g. (" wedding", " bride"); each one token
    minus_words: tuple[str, ...] = ()  # subtracted (e.g. hate words for love - hate)


def word_ids(model, words: Sequence[str], concept: str = "") -> np.ndarray:
    """Token ids of single-token `words`; a word that is not one token is refused by name."""
    if not words:
        raise ValueError(f"concept {concept!r} has no words")
    ids = []
    for w in words:
        if not isinstance(w, str):
            raise TypeError(f"concept {concept!r}: word {w!r} is not a string")
        t = model.tokenizer.encode(w, add_bos=False)
        if len(t) != 1:
            raise ValueError(f"concept {concept!r}: {w!r} is {len(t)} tokens for {model.name} "
                             f"({t}); use single-token words (often with a leading space)")
        ids.append(int(t[0]))
    if len(set(ids)) != len(ids):
        raise ValueError(f"concept {concept!r} lists a word twice: {list(words)}")
    return np.asarray(ids, np.int32)


def _index_matrix(model, concepts: Sequence[Concept]) -> tuple[np.ndarray, np.ndarray]:
    """[2C, W] token ids (plus sets then minus sets, padded with -1) and [2C] 'set is empty'."""
    sets = [word_ids(model, c.words, c.name) for c in concepts]
    sets += [word_ids(model, c.minus_words, c.name) if c.minus_words else np.zeros(0, np.int32)
             for c in concepts]
    width = max(len(s) for s in sets)
    ids = np.full((len(sets), width), -1, np.int32)
    for i, s in enumerate(sets):
        ids[i, :len(s)] = s
    return ids, np.array([len(s) == 0 for s in sets])


@functools.partial(jax.jit, static_argnames=("model", "start"))
def _last_position_logprobs(model, params, resid, ids, start):
    """log P(next token in each id set) at the last position, resuming at layer `start`."""
    logits = model.apply(params, None, start_at_layer=start, resid=resid).logits[:, -1]
    logp = jax.nn.log_softmax(logits.astype(jnp.float32), axis=-1)          # [B, V]
    picked = jnp.where(ids[None] >= 0, logp[:, jnp.maximum(ids, 0)], -jnp.inf)  # [B, S, W]
    return jax.scipy.special.logsumexp(picked, axis=-1)                       # [B, S]


def concept_logprobs(model, site: str, prompts, deltas, concepts: Sequence[Concept], *,
                     batch_size: int = 64, progress: bool = False) -> np.ndarray:
    """effect[k, n, c] for deltas [K, P, d] (coefficient included; a zero delta is the unsteered
    model) added at positions 0..P-1 of every prompt of `prompts` [N, T] (equal-length token
    rows, BOS first, T >= P), for each concept (see the module docstring): nats."""
    prompts = np.asarray(prompts, np.int32)
    deltas = np.asarray(deltas, np.float32)
    if deltas.ndim == 2:
        deltas = deltas[None]
    if prompts.ndim != 2 or deltas.ndim != 3 or deltas.shape[-1] != model.cfg.d_model:
        raise ValueError(f"need prompts [N, T] and deltas [K, P, {model.cfg.d_model}], got "
                         f"{prompts.shape} and {deltas.shape}")
    if deltas.shape[1] > prompts.shape[1]:
        raise ValueError(f"the vectors cover {deltas.shape[1]} positions but the prompts have "
                         f"{prompts.shape[1]} tokens; ActAdd adds at the prompt's front positions")
    ids, empty = _index_matrix(model, concepts)
    start = resume_layer(model, site)
    base = np.asarray(model.forward(jnp.asarray(prompts), stop_at_layer=start).resid, np.float32)
    k, p = deltas.shape[:2]
    n = len(prompts)
    rows = [(i, j) for i in range(k) for j in range(n)]  # (delta, prompt), delta-major
    out = np.zeros((k * n, len(ids)), np.float32)
    ids_j = jnp.asarray(ids)
    for lo in tqdm(range(0, len(rows), batch_size), desc="teacher-forced", disable=not progress):
        chunk = rows[lo:lo + batch_size]
        resid = np.stack([base[j] for _, j in chunk])
        resid[:, :p] += np.stack([deltas[i] for i, _ in chunk])
        m = len(chunk)
        if m < batch_size and len(rows) > batch_size:  # one compiled shape
            resid = np.concatenate([resid, np.repeat(resid[-1:], batch_size - m, 0)])
        lp = _last_position_logprobs(model, model.params, jnp.asarray(resid), ids_j, start)
        out[lo:lo + m] = np.asarray(lp)[:m]
    c = len(concepts)
    out = np.where(empty[None], 0.0, out)  # an empty minus set subtracts nothing
    return (out[:, :c] - out[:, c:]).reshape(k, n, c)


# ----------------------------------------------------------------------------- sweeps
@dataclasses.dataclass(frozen=True)
class Measured:
    """One (variant, coefficient) point: the effect on every prompt for every concept, and its
    cost (steered delta CE on neutral text, the same for all prompts)."""

    variant: str
    coeff: float
    delta_ce: float
    rel_norm: float            # max over positions of ||c v_t|| / typical residual norm
    effect: np.ndarray         # [n_prompts, n_concepts] nats
    concepts: tuple[str, ...]

    def of(self, concept: str) -> np.ndarray:
        if concept not in self.concepts:
            raise ValueError(f"concept {concept!r} was not scored; scored: {list(self.concepts)}")
        return self.effect[:, self.concepts.index(concept)]


def run(model, site: str, prompts, points, concepts: Sequence[Concept], neutral_tokens, *,
        resid_norm: float | None = None, batch_size: int = 64,
        progress: bool = False) -> list[Measured]:
    """Score every `sweep.Point` (variant, coeff, vector [P, d]) on every prompt for every
    concept in one batched pass, and its cost on `neutral_tokens` [N, T]."""
    if not points:
        raise ValueError("no points to run")
    p = max(np.asarray(pt.vector).shape[0] for pt in points)
    deltas = np.zeros((len(points), p, model.cfg.d_model), np.float32)
    for i, pt in enumerate(points):
        v = np.asarray(pt.vector, np.float32)
        deltas[i, :len(v)] = pt.coeff * v
    effect = concept_logprobs(model, site, prompts, deltas, concepts, batch_size=batch_size,
                              progress=progress)
    cost = steered_delta_ce(model, site, deltas, neutral_tokens)
    names = tuple(c.name for c in concepts)
    out = []
    for i, pt in enumerate(points):
        rel = float("nan") if not resid_norm else float(
            np.linalg.norm(deltas[i], axis=-1).max() / resid_norm)
        out.append(Measured(pt.variant, float(pt.coeff), float(cost[i]), rel, effect[i], names))
    return out


def curve(results: Sequence[Measured], variant: str, concept: str,
          baseline: str | None = "unsteered") -> dict[str, np.ndarray]:
    """One variant's points by coefficient with the gain over the unsteered point on each
    prompt: "coeff" [K], "cost" [K], "effect" [K, n_prompts] (the shape `sweep.matched_comparison`
    takes). With `baseline`, the unsteered point (gain 0, cost 0) leads the curve."""
    base = [r for r in results if r.variant == "unsteered"]
    if not base:
        raise ValueError("no 'unsteered' point: add sweep.Point('unsteered', 0.0, vector)")
    ref = base[0].of(concept)
    rs = sorted((r for r in results if r.variant == variant), key=lambda r: r.coeff)
    if not rs:
        raise ValueError(f"no results for variant {variant!r}")
    if baseline:
        rs = base[:1] + rs
    return {"coeff": np.array([r.coeff for r in rs]),
            "cost": np.array([r.delta_ce for r in rs]),
            "effect": np.stack([r.of(concept) - ref for r in rs])}


def summary_rows(results: Sequence[Measured], concept: str) -> list[dict]:
    """Display rows: per point, the mean gain over prompts with a normal 95% interval over
    prompts (for plots and tables; verdicts use `interp.stats`), and the cost."""
    base = next((r for r in results if r.variant == "unsteered"), None)
    if base is None:
        raise ValueError("no 'unsteered' point to measure gains from")
    rows = []
    for r in results:
        g = r.of(concept) - base.of(concept)
        se = float(g.std(ddof=1) / np.sqrt(len(g))) if len(g) > 1 else float("nan")
        rows.append({"variant": r.variant, "coeff": r.coeff, "gain": float(g.mean()),
                     "ci low": float(g.mean() - 1.96 * se), "ci high": float(g.mean() + 1.96 * se),
                     "delta CE": r.delta_ce, "max ||c v_t|| / ||h_t||": r.rel_norm})
    return rows
