"""Simulators: an explanation and records in, predicted per-token activations out.

`LLMSimulator` has two readouts:

* **logprobs** ("all at once", Bills et al. 2023): when the backend can teacher-force a reply
  (`slot_logprobs`, the local JAX model), the reply lists every token followed by its activation,
  and the prediction at each token is the expected value of the digit distribution there. A
  135M-parameter model rarely writes a well-formed list of 64 numbers, but its digit
  distributions still carry the signal, and one forward pass scores a whole record.
* **text**: otherwise (chat APIs, which give log-probabilities of generated tokens only) it asks
  for a JSON list of integers and parses it (`prompts.parse_simulation`); malformed replies are
  counted in `parse_failures`.

Measured caveat: SmolLM2-135M-Instruct's digit distributions barely depend on the explanation
(on one 21-token text, correlation with a "cat" latent was 0.04 for the right explanation and
-0.04 for a wrong one), so local-model simulation scores sit at chance; they become meaningful
with a capable simulator behind `OpenAICompatible` (or a larger local model).

`LexicalSimulator` is the rule-based partner of `TopTokensExplainer`: it predicts the maximum on
tokens whose text is quoted in the explanation and 0 elsewhere.
"""

from __future__ import annotations

import re
from collections.abc import Sequence

import numpy as np

from interp.autointerp.backend import Backend, Sampling, supports_slot_logprobs
from interp.autointerp.prompts import (
    parse_simulation,
    simulation_messages,
    simulation_transcript,
    simulation_transcript_batch,
)
from interp.autointerp.records import Record

METHODS = ("auto", "logprobs", "text")


class LLMSimulator:
    def __init__(self, backend: Backend, *, method: str = "auto", scale: int | None = None,
                 max_tokens: int | None = None, batch_records: bool = False):
        if method not in METHODS:
            raise ValueError(f"method must be one of {METHODS}, got {method!r}")
        if method == "auto":
            method = "logprobs" if supports_slot_logprobs(backend) else "text"
        if method == "logprobs" and not supports_slot_logprobs(backend):
            raise ValueError(f"backend {backend!r} offers no slot_logprobs; use method='text'")
        self.backend, self.method = backend, method
        self.scale = scale if scale is not None else (9 if method == "logprobs" else 10)
        if method == "logprobs" and self.scale > 9:
            raise ValueError("the logprobs readout needs scale <= 9 (one digit per level)")
        if batch_records and method != "logprobs":
            raise ValueError("batch_records needs the logprobs readout")
        self.max_tokens = max_tokens
        self.batch_records = batch_records  # all records in one request (logprobs only)
        self.parse_failures = 0

    def simulate(self, explanation: str, records: Sequence[Record]) -> list[np.ndarray]:
        if self.batch_records and records:
            msgs, segments = simulation_transcript_batch(explanation, records, scale=self.scale)
            expected = self._expected_levels(msgs, segments)
            bounds = np.cumsum([0] + [len(r.tokens) for r in records])
            return [expected[a:b] for a, b in zip(bounds[:-1], bounds[1:])]
        return [self._one(explanation, r) for r in records]

    def _expected_levels(self, msgs, segments) -> np.ndarray:
        """Expected digit at every slot: sum_d d * p(d), p renormalised over the digits."""
        digits = [str(d) for d in range(self.scale + 1)]
        lp = np.asarray(self.backend.slot_logprobs(msgs, segments, digits))
        p = np.exp(lp - lp.max(axis=1, keepdims=True))
        p /= p.sum(axis=1, keepdims=True)
        return p @ np.arange(self.scale + 1, dtype=np.float64)

    def _one(self, explanation: str, record: Record) -> np.ndarray:
        if self.method == "logprobs":
            msgs, segments = simulation_transcript(explanation, record, scale=self.scale)
            return self._expected_levels(msgs, segments)
        msgs = simulation_messages(explanation, record, scale=self.scale)
        budget = self.max_tokens or 8 + 4 * len(record.tokens)
        text = self.backend.chat(msgs, Sampling(max_tokens=budget)).text
        pred, ok = parse_simulation(text, len(record.tokens), scale=self.scale)
        self.parse_failures += not ok
        return pred


def quoted_tokens(explanation: str) -> set[str]:
    """Strings in double quotes in an explanation, lower-cased and stripped."""
    return {q.strip().lower() for q in re.findall(r'"([^"]+)"', explanation) if q.strip()}


class LexicalSimulator:
    """Predict `scale` where the token (stripped, lower-cased) is quoted in the explanation."""

    def __init__(self, scale: int = 10):
        self.scale = scale

    def simulate(self, explanation: str, records: Sequence[Record]) -> list[np.ndarray]:
        words = quoted_tokens(explanation)
        return [np.array([self.scale * float(t.strip().lower() in words) for t in r.tokens])
                for r in records]
