"""Activation records: the contexts a latent is explained and scored on.

A record is one text excerpt as token strings with the latent's activation on each token. For
each latent we draw (Bills et al. 2023; Bricken et al. 2023 "Towards Monosemanticity"):

* **top** contexts, by the latent's maximum activation in the context;
* **quantile** contexts: the other activating contexts, stratified over equal-width intervals of
  their maximum activation (Anthropic's "2 from each of 12 intervals"), so that low-activation
  behaviour is seen (an empty interval contributes nothing);
* **random** contexts drawn uniformly from the whole set (mostly non-activating for a sparse
  latent): the negatives of top-and-random scoring.

The explainer sees a random subset of the top contexts; scoring uses the *other* top contexts plus
random ones (and quantile ones), so an explanation is never scored on the examples it was made from.
Every random choice takes a seed.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Sequence

import numpy as np

SOURCES = ("top", "quantile", "random")


@dataclasses.dataclass(frozen=True, eq=False)
class Record:
    tokens: tuple[str, ...]
    acts: np.ndarray  # [T] float, same length as tokens
    source: str = "top"  # one of SOURCES

    def __post_init__(self):
        acts = np.asarray(self.acts, dtype=np.float64)
        if acts.ndim != 1 or len(acts) != len(self.tokens):
            raise ValueError(f"record has {len(self.tokens)} tokens but activations of shape "
                             f"{acts.shape}")
        if not np.all(np.isfinite(acts)):
            raise ValueError("record activations contain NaN or inf")
        if self.source not in SOURCES:
            raise ValueError(f"record source must be one of {SOURCES}, got {self.source!r}")
        object.__setattr__(self, "tokens", tuple(self.tokens))
        object.__setattr__(self, "acts", acts)

    @property
    def text(self) -> str:
        return "".join(self.tokens)

    @property
    def max_act(self) -> float:
        return float(self.acts.max(initial=0.0))


@dataclasses.dataclass(frozen=True)
class LatentExamples:
    latent: int
    top: tuple[Record, ...]
    quantile: tuple[Record, ...]
    random: tuple[Record, ...]
    max_act: float  # over every context, the scale the explainer's 0-10 numbers refer to
    frequency: float  # fraction of tokens where the latent is active (> 0)


@dataclasses.dataclass(frozen=True)
class Split:
    explain: tuple[Record, ...]  # shown to the explainer
    score: tuple[Record, ...]  # held out: unseen top + random (+ quantile) records

    def by_source(self, source: str) -> tuple[Record, ...]:
        return tuple(r for r in self.score if r.source == source)


def discretise(acts, max_act: float, scale: int = 10) -> np.ndarray:
    """Integers 0..scale: `floor(scale * relu(a) / max_act)`, the maximum mapping to `scale`.

    Bills et al.'s normalisation (neuron-explainer `format_activation_records`): per latent, the
    maximum over its records becomes 10 and negative values become 0.
    """
    a = np.maximum(np.asarray(acts, dtype=np.float64), 0.0)
    if max_act <= 0:
        return np.zeros(a.shape, dtype=np.int64)
    return np.clip(np.floor(scale * a / max_act + 1e-9), 0, scale).astype(np.int64)


def token_strings(decode: Callable[[list[int]], str], ids: Sequence[int]) -> tuple[str, ...]:
    """Each token id decoded on its own (what the explainer is shown for that position)."""
    return tuple(decode([int(i)]) for i in ids)


def select_examples(acts, tokens: Sequence[Sequence[str]], latent: int = 0, *, n_top: int = 20,
                    n_quantiles: int = 4, per_quantile: int = 2, n_random: int = 10,
                    seed: int = 0) -> LatentExamples:
    """Pick top, quantile-stratified and random contexts from `acts [n_contexts, T]`.

    `tokens[i][t]` is the string of token t of context i. Contexts are disjoint across groups.
    """
    acts = np.asarray(acts, dtype=np.float64)
    if acts.ndim != 2:
        raise ValueError(f"acts must be [n_contexts, T], got shape {acts.shape}")
    if len(tokens) != acts.shape[0] or any(len(t) != acts.shape[1] for t in tokens):
        raise ValueError("tokens must have one string per activation: "
                         f"{acts.shape[0]} contexts x {acts.shape[1]} tokens")
    rng = np.random.default_rng([seed, latent])
    peak = acts.max(axis=1)
    active = np.flatnonzero(peak > 0)
    order = active[np.argsort(-peak[active], kind="stable")]
    top_idx = order[:n_top]
    rest = order[n_top:]
    quant_idx: list[int] = []
    if len(rest) and n_quantiles > 0 and per_quantile > 0:
        edges = np.linspace(peak[rest].min(), peak[rest].max(), n_quantiles + 1)
        bins = np.clip(np.searchsorted(edges, peak[rest], side="right") - 1, 0, n_quantiles - 1)
        for q in range(n_quantiles):
            members = rest[bins == q]
            take = min(per_quantile, len(members))
            quant_idx += list(rng.choice(members, take, replace=False)) if take else []
    used = set(top_idx.tolist()) | set(int(i) for i in quant_idx)
    pool = np.array([i for i in range(acts.shape[0]) if i not in used], dtype=np.int64)
    rand_idx = rng.choice(pool, min(n_random, len(pool)), replace=False) if len(pool) else []

    def recs(idx, source):
        return tuple(Record(tokens[i], acts[i], source) for i in idx)

    return LatentExamples(latent, recs(top_idx, "top"), recs(quant_idx, "quantile"),
                          recs(rand_idx, "random"), float(peak.max(initial=0.0)),
                          float(np.mean(acts > 0)))


def split(examples: LatentExamples, *, n_explain: int = 5, n_score_top: int = 5,
          n_score_random: int = 5, include_quantile: bool = True, seed: int = 0) -> Split:
    """Explain on `n_explain` random top records; score on other top records plus random ones."""
    rng = np.random.default_rng([seed, examples.latent, 1])
    top = list(examples.top)
    if len(top) < n_explain + 1:
        raise ValueError(f"latent {examples.latent} has {len(top)} activating contexts; need at "
                         f"least {n_explain + 1} to explain on {n_explain} and score on the rest")
    perm = rng.permutation(len(top))
    explain = tuple(top[i] for i in sorted(perm[:n_explain]))
    held = [top[i] for i in sorted(perm[n_explain:])][:n_score_top]
    score = (*held, *(examples.quantile if include_quantile else ()),
             *examples.random[:n_score_random])
    return Split(explain, tuple(score))

