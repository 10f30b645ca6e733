"""The local JAX model as a chat backend: the offline default (SmolLM2-135M-Instruct).

Chat messages are rendered with the ChatML template SmolLM2-Instruct was tuned on
(`<|im_start|>role\\ncontent<|im_end|>\\n`, then `<|im_start|>assistant\\n` to open the reply);
generation stops at `<|im_end|>`. The tiny random-init twins (`"tiny-llama"`) use the same code
path with a byte tokenizer, which is what makes them useful in fast tests.

Log-probabilities come from one extra teacher-forced forward pass (prompt + reply), padded to a
multiple of 64 tokens so that requests of similar length share one compiled program (the model is
causal, so right padding cannot change earlier positions). The same pass gives `slot_logprobs`,
the "all at once" simulation readout: distributions at many points of a forced reply for the
price of one forward.
"""

from __future__ import annotations

from collections.abc import Sequence

import jax
import numpy as np

from interp import models
from interp.autointerp.backend import Completion, Message, Sampling, TokenLogprob, as_messages

BUCKET = 64


def chatml(messages: Sequence[Message], *, open_reply: bool = True) -> str:
    """Render messages with ChatML (SmolLM2-Instruct's template), ending with an open reply."""
    text = "".join(f"<|im_start|>{m.role}\n{m.content}<|im_end|>\n" for m in messages)
    return text + ("<|im_start|>assistant\n" if open_reply else "")


class LocalBackend:
    """Serve an `interp.models.Model` (or a model name for `interp.models.load`) as a backend."""

    kind = "local"

    def __init__(self, model):
        if isinstance(model, str):
            model = models.load(model)
        self.lm = model
        self.model = model.name
        tok = model.tokenizer
        stops = {model.cfg.eos_id} if model.cfg.eos_id is not None else set()
        end = tok.encode("<|im_end|>", parse_special=True, add_bos=False)
        if len(end) == 1:
            stops.add(end[0])
        self.stop_ids = tuple(sorted(stops))

    def __repr__(self) -> str:
        return f"LocalBackend(model={self.model!r})"

    # -- tokens -----------------------------------------------------------------------------
    def prompt_ids(self, messages: Sequence[Message]) -> list[int]:
        return self.lm.tokenizer.encode(chatml(as_messages(messages)), parse_special=True)

    def _check_length(self, n: int) -> None:
        if n > self.lm.cfg.context_length:
            raise ValueError(f"request of {n} tokens exceeds {self.model}'s context length "
                             f"{self.lm.cfg.context_length}; shorten the prompt")

    def _log_probs(self, ids: Sequence[int], rows: Sequence[int]) -> np.ndarray:
        """log p(next token | ids[:r+1]) for each r in rows: `[len(rows), vocab]`."""
        self._check_length(len(ids))
        if any(not 0 <= r < len(ids) for r in rows):
            raise IndexError(f"rows must index the {len(ids)} given tokens, got {list(rows)}")
        padded = -(-len(ids) // BUCKET) * BUCKET
        padded = min(padded, self.lm.cfg.context_length)
        pad_id = self.stop_ids[0] if self.stop_ids else 0
        tokens = list(ids) + [pad_id] * (padded - len(ids))
        logits = self.lm.forward([tokens]).logits[0]
        picked = np.asarray(jax.nn.log_softmax(logits[np.asarray(rows)], axis=-1))
        return picked.astype(np.float64)

    # -- the Backend interface ----------------------------------------------------------------
    def chat(self, messages: Sequence[Message], sampling: Sampling) -> Completion:
        ids = self.prompt_ids(messages)
        self._check_length(len(ids) + sampling.max_tokens)
        if sampling.max_tokens == 1 and sampling.temperature == 0:
            return self._one_greedy_token(ids, sampling)
        new = self.lm.generate(ids, max_new_tokens=sampling.max_tokens,
                               temperature=sampling.temperature, seed=sampling.seed,
                               stop_tokens=self.stop_ids)
        stopped = bool(new) and new[-1] in self.stop_ids
        content = new[:-1] if stopped else new
        text = self.lm.tokenizer.decode(content)
        logprobs = None
        if sampling.top_logprobs is not None and new:
            rows = list(range(len(ids) - 1, len(ids) - 1 + len(new)))
            lp = self._log_probs(ids + new, rows)
            logprobs = tuple(self._token_entry(lp[i], new[i], sampling.top_logprobs)
                             for i in range(len(new)))
        return Completion(text, "stop" if stopped else "length", logprobs, len(ids), len(new))

    def _one_greedy_token(self, ids: list[int], sampling: Sampling) -> Completion:
        """One greedy token from one bucketed forward pass: what yes/no judging needs. (The
        general path, `Model.generate`, compiles its prefill for every distinct prompt length.)"""
        row = self._log_probs(ids, [len(ids) - 1])[0]
        allowed = row.copy()
        banned = [i for i in self.lm.never_sample if i not in self.stop_ids]
        allowed[banned] = -np.inf
        tok = int(np.argmax(allowed))
        stopped = tok in self.stop_ids
        text = "" if stopped else self.lm.tokenizer.decode([tok])
        logprobs = None
        if sampling.top_logprobs is not None:
            logprobs = (self._token_entry(row, tok, sampling.top_logprobs),)
        return Completion(text, "stop" if stopped else "length", logprobs, len(ids), 1)

    def _token_entry(self, row: np.ndarray, token_id: int, k: int) -> TokenLogprob:
        dec = self.lm.tokenizer.decode
        top: dict[str, float] = {}
        for i in np.argsort(-row)[:k]:
            s = dec([int(i)])
            top[s] = float(np.logaddexp(top[s], row[i])) if s in top else float(row[i])
        return TokenLogprob(dec([int(token_id)]), float(row[token_id]), top)

    def slot_logprobs(self, messages: Sequence[Message], segments: Sequence[str],
                      choices: Sequence[str]) -> np.ndarray:
        """Teacher-force the reply `"".join(segments)`; after each segment, the log-probability
        of each single-token `choice` as the next token: `[len(segments), len(choices)]`.

        Segments are tokenized separately so that every slot falls on a token boundary.
        """
        tok = self.lm.tokenizer
        choice_ids = []
        for c in choices:
            cid = tok.encode(c, add_bos=False)
            if len(cid) != 1:
                raise ValueError(f"choice {c!r} is {len(cid)} tokens for {self.model}; "
                                 "slot_logprobs needs single-token choices")
            choice_ids.append(cid[0])
        ids = self.prompt_ids(messages)
        rows = []
        for seg in segments:
            seg_ids = tok.encode(seg, add_bos=False)
            if not seg_ids:
                raise ValueError("slot_logprobs got an empty segment")
            ids += seg_ids
            rows.append(len(ids) - 1)
        return self._log_probs(ids, rows)[:, choice_ids]
