"""Scores of an explanation: simulation, detection and fuzzing, with their chance levels.

* **Simulation** (Bills et al. 2023): Pearson correlation between simulated and true activations
  over all tokens of the held-out records. Reported on the top-and-random mix (the standard
  score), on top records only and on random records only (claim A-3 compares the first two).
  1 for a perfect simulator, about 0 for an unrelated one; NaN when either side is constant.
* **Detection** (Paulo et al. 2024, delphi): a judge sees the explanation and one held-out
  context and says whether the latent fires in it. Activating contexts (top/quantile records
  with an active token) are positives, random non-activating ones negatives.
* **Fuzzing** (same source): in activating contexts, either the truly active tokens or as many
  randomly chosen inactive tokens are marked; the judge says whether the marks are right.

Detection and fuzzing report balanced accuracy (0.5 = chance whatever the class balance) and,
when the judge gives probabilities, AUROC (0.5 = chance; ties count a half).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence

import numpy as np

from interp.autointerp.backend import Backend, BackendError, Sampling, first_token_probs
from interp.autointerp.prompts import NO, YES, detection_messages, fuzzing_messages, parse_yes_no
from interp.autointerp.records import Record
from interp.autointerp.simulate import quoted_tokens


def pearson(a, b) -> float:
    a = np.asarray(a, dtype=np.float64).ravel()
    b = np.asarray(b, dtype=np.float64).ravel()
    if a.shape != b.shape:
        raise ValueError(f"pearson: shapes differ ({a.shape} vs {b.shape})")
    a, b = a - a.mean(), b - b.mean()
    denom = np.sqrt((a @ a) * (b @ b))
    return float(a @ b / denom) if denom > 0 else float("nan")


def simulation_scores(simulated: Sequence[np.ndarray], records: Sequence[Record]) -> dict:
    """Correlation scores: `top_and_random` (all held-out records), `top`, `random`."""
    if len(simulated) != len(records):
        raise ValueError(f"{len(simulated)} simulations for {len(records)} records")
    for s, r in zip(simulated, records):
        if len(s) != len(r.tokens):
            raise ValueError(f"a simulation has {len(s)} values for {len(r.tokens)} tokens")

    def corr(keep):
        idx = [i for i, r in enumerate(records) if keep(r)]
        if not idx:
            return float("nan")
        return pearson(np.concatenate([simulated[i] for i in idx]),
                       np.concatenate([records[i].acts for i in idx]))

    return {"top_and_random": corr(lambda r: True),
            "top": corr(lambda r: r.source != "random"),
            "random": corr(lambda r: r.source == "random")}


# Finer groups of held-out records, to see *where* an explanation works: on the held-out top
# records only, on the lower-activation (quantile) records only, and on everything below the top
# (quantile + random), which is where an explanation over-fitted to the top examples fails.
SOURCE_GROUPS = {"top_only": ("top",), "quantile": ("quantile",),
                 "below_top": ("quantile", "random")}


def correlation_by_source(simulated: Sequence[np.ndarray], records: Sequence[Record],
                          groups: dict[str, tuple[str, ...]] | None = None) -> dict:
    """Pearson correlation of simulated and true activations within groups of record sources
    (`SOURCE_GROUPS` by default); NaN for an empty group or constant activations."""
    if len(simulated) != len(records):
        raise ValueError(f"{len(simulated)} simulations for {len(records)} records")
    out = {}
    for name, sources in (groups or SOURCE_GROUPS).items():
        idx = [i for i, r in enumerate(records) if r.source in sources]
        out[name] = (pearson(np.concatenate([simulated[i] for i in idx]),
                             np.concatenate([records[i].acts for i in idx]))
                     if idx else float("nan"))
    return out


# -- classification tasks ----------------------------------------------------------------------

@dataclasses.dataclass(frozen=True)
class Item:
    """One yes/no question: a record, the tokens marked (fuzzing only), and the true answer."""

    record: Record
    label: bool
    marked: tuple[bool, ...] | None = None


def detection_items(records: Sequence[Record]) -> list[Item]:
    """Positives: records where the latent fires; negatives: random records where it does not.
    (Random records that happen to activate are positives too: the label is the truth.)"""
    return [Item(r, bool(r.max_act > 0)) for r in records]


def fuzzing_items(records: Sequence[Record], *, seed: int = 0) -> list[Item]:
    """For every activating record, one correctly marked and one fuzzed copy (same number of
    marks on inactive tokens). Records without enough inactive tokens get no fuzzed copy."""
    rng = np.random.default_rng(seed)
    items = []
    for r in records:
        active = r.acts > 0
        k = int(active.sum())
        if k == 0:
            continue
        items.append(Item(r, True, tuple(bool(a) for a in active)))
        inactive = np.flatnonzero(~active)
        if len(inactive) >= k:
            wrong = np.zeros(len(active), bool)
            wrong[rng.choice(inactive, k, replace=False)] = True
            items.append(Item(r, False, tuple(bool(w) for w in wrong)))
    return items


def balanced_accuracy(labels, predictions) -> float:
    y = np.asarray(labels, bool)
    p = np.asarray(predictions, bool)
    if y.all() or not y.any():
        raise ValueError("balanced accuracy needs both positive and negative items")
    return float(0.5 * (np.mean(p[y]) + np.mean(~p[~y])))


def auroc(labels, scores) -> float:
    """Probability that a random positive outscores a random negative (Mann-Whitney U)."""
    y = np.asarray(labels, bool)
    s = np.asarray(scores, dtype=np.float64)
    pos, neg = s[y], s[~y]
    if len(pos) == 0 or len(neg) == 0:
        raise ValueError("AUROC needs both positive and negative items")
    greater = (pos[:, None] > neg[None, :]).sum()
    ties = (pos[:, None] == neg[None, :]).sum()
    return float((greater + 0.5 * ties) / (len(pos) * len(neg)))


def classification_scores(labels, probabilities) -> dict:
    p = np.asarray(probabilities, dtype=np.float64)
    return {"balanced_accuracy": balanced_accuracy(labels, p > 0.5), "auroc": auroc(labels, p),
            "n": int(len(p))}


def score_items(judge, explanation: str, items: Sequence[Item]) -> dict:
    """Ask `judge` about every item; balanced accuracy and AUROC against the true labels."""
    probs = judge.judge(explanation, items)
    return classification_scores([it.label for it in items], probs)


# -- judges ------------------------------------------------------------------------------------

class LLMJudge:
    """Answer yes/no questions with a backend.

    Where the backend returns log-probabilities (the local model, OpenAI, vLLM, llama.cpp, this
    package's server), the answer is P(yes) / (P(yes) + P(no)) of the first reply token, summed
    over spellings (" yes", "Yes", ...): a graded score even from a small model whose greedy
    answer is nearly always the same word. Otherwise the reply text is parsed: yes -> 1, no -> 0,
    anything else -> 0.5 (counted in `unparsed`). A server that rejects the `logprobs` request
    (HTTP 400/422) switches the judge to text answers for good.
    """

    def __init__(self, backend: Backend, *, use_logprobs: bool = True):
        self.backend, self.use_logprobs = backend, use_logprobs
        self.unparsed = 0

    def _messages(self, explanation: str, item: Item):
        if item.marked is None:
            return detection_messages(explanation, item.record)
        return fuzzing_messages(explanation, item.record.tokens, item.marked)

    def judge(self, explanation: str, items: Sequence[Item]) -> np.ndarray:
        out = []
        for it in items:
            msgs = self._messages(explanation, it)
            p = None
            if self.use_logprobs:
                try:
                    p = first_token_probs(self.backend, msgs, [YES, NO])
                except BackendError as e:
                    if "HTTP 400" not in str(e) and "HTTP 422" not in str(e):
                        raise
                    self.use_logprobs = False
            if p is not None:
                out.append(float(p[0]))
                continue
            answer = parse_yes_no(self.backend.chat(msgs, Sampling(max_tokens=4)).text)
            self.unparsed += answer is None
            out.append(0.5 if answer is None else float(answer))
        return np.asarray(out)


class LexicalJudge:
    """Rule-based: yes when a token quoted in the explanation is in the context (detection) or
    every marked token is (fuzzing). The partner of `TopTokensExplainer`."""

    def judge(self, explanation: str, items: Sequence[Item]) -> np.ndarray:
        words = quoted_tokens(explanation)
        out = []
        for it in items:
            toks = [t.strip().lower() for t in it.record.tokens]
            if it.marked is None:
                out.append(float(any(t in words for t in toks)))
            else:
                marked = [t for t, m in zip(toks, it.marked) if m]
                out.append(float(bool(marked) and all(t in words for t in marked)))
        return np.asarray(out)
