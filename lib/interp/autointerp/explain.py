"""Explainers: records in, one short explanation out. An LLM one and a rule-based baseline.

`TopTokensExplainer` is the "top-token list" heuristic of the pipeline spec: it needs no LLM and
tells how much of any LLM score is plain lexical matching, so notebooks report it alongside.
Explanation baselines (`random_explanation`, `other_latent_explanations`) give scores a floor.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Sequence

import numpy as np

from interp.autointerp.backend import Backend, Sampling
from interp.autointerp.prompts import explainer_messages, parse_explanation
from interp.autointerp.records import Record


class LLMExplainer:
    """Ask a backend to explain (Bills et al. 2023's token<tab>activation prompt)."""

    def __init__(self, backend: Backend, *, max_tokens: int = 48, temperature: float = 0.0,
                 seed: int = 0, scale: int = 10, few_shot: bool = True,
                 list_top_tokens: bool = True):
        self.backend, self.scale = backend, scale
        self.prompt_options = {"few_shot": few_shot, "list_top_tokens": list_top_tokens}
        self.sampling = Sampling(max_tokens=max_tokens, temperature=temperature, seed=seed)

    def explain(self, records: Sequence[Record], max_act: float | None = None) -> str:
        msgs = explainer_messages(records, max_act=max_act, scale=self.scale,
                                  **self.prompt_options)
        return parse_explanation(self.backend.chat(msgs, self.sampling).text)


def top_tokens(records: Sequence[Record], k: int = 5) -> list[str]:
    """Tokens with the highest mean activation where the latent is active (ties by count)."""
    total: dict[str, float] = defaultdict(float)
    count: dict[str, int] = defaultdict(int)
    for r in records:
        for t, a in zip(r.tokens, r.acts):
            if a > 0 and t.strip():
                key = t.strip()
                total[key] += float(a)
                count[key] += 1
    ranked = sorted(total, key=lambda t: (-total[t] / count[t], -count[t], t))
    return ranked[:k]


def tokens_explanation(tokens: Sequence[str]) -> str:
    return "the tokens " + ", ".join(f'"{t}"' for t in tokens)


class TopTokensExplainer:
    """Rule-based: 'the tokens "a", "b", ...' for the top-k tokens by mean activation."""

    def __init__(self, k: int = 5):
        self.k = k

    def explain(self, records: Sequence[Record], max_act: float | None = None) -> str:
        return tokens_explanation(top_tokens(records, self.k))


def random_explanation(records: Sequence[Record], k: int = 5, seed: int = 0) -> str:
    """Baseline: the same form as `TopTokensExplainer`'s, with k tokens drawn uniformly from
    `records` (pass contexts of the corpus, not of the latent)."""
    pool = sorted({t.strip() for r in records for t in r.tokens if t.strip()})
    if not pool:
        raise ValueError("random_explanation needs records with non-blank tokens")
    rng = np.random.default_rng(seed)
    return tokens_explanation(list(rng.choice(pool, min(k, len(pool)), replace=False)))


def other_latent_explanations(explanations: Sequence[str], seed: int = 0) -> list[str]:
    """Baseline: give each latent the explanation of another latent (a random derangement)."""
    n = len(explanations)
    if n < 2:
        raise ValueError("the other-latent baseline needs at least two explanations")
    rng = np.random.default_rng(seed)
    perm = rng.permutation(n)
    while np.any(perm == np.arange(n)):  # rejection sampling: ~e tries on average
        perm = rng.permutation(n)
    return [explanations[i] for i in perm]
