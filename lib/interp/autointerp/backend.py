"""The one interface every LLM backend implements, and the values it returns.

Why a single `chat` method: the explainer, the simulator and the judges only ever need "given
these chat messages, what does the model reply (and, optionally, how likely was each token)".
Keeping that the whole contract lets the local JAX model, any OpenAI-compatible HTTP server and
the on-disk transcript cache stand in for one another, and lets the cache key be the request.

A backend may also offer `slot_logprobs` (teacher-forced next-token log-probabilities at chosen
points of an assistant reply). Only a backend that runs the model itself can (chat-completions
APIs return log-probabilities of *generated* tokens only); the simulator uses it for the
"all at once" readout of Bills et al. (2023) and falls back to parsing text without it.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence
from typing import Protocol, runtime_checkable

import numpy as np

ROLES = ("system", "user", "assistant")


class BackendError(RuntimeError):
    """A backend could not answer (server down, HTTP error, malformed reply, bad request)."""


@dataclasses.dataclass(frozen=True)
class Message:
    role: str
    content: str

    def __post_init__(self):
        if self.role not in ROLES:
            raise ValueError(f"message role must be one of {ROLES}, got {self.role!r}")
        if not isinstance(self.content, str):
            raise TypeError(f"message content must be a str, got {type(self.content).__name__}")

    def to_json(self) -> dict:
        return {"role": self.role, "content": self.content}


def as_messages(messages) -> tuple[Message, ...]:
    """Accept `Message`s or OpenAI-style dicts `{"role", "content"}`; validate roles."""
    out = []
    for m in messages:
        if isinstance(m, Message):
            out.append(m)
        elif isinstance(m, dict) and set(m) >= {"role", "content"}:
            out.append(Message(m["role"], m["content"]))
        else:
            raise TypeError(f"a message must be a Message or a dict with 'role' and 'content', "
                            f"got {m!r}")
    if not out:
        raise ValueError("a chat request needs at least one message")
    return tuple(out)


@dataclasses.dataclass(frozen=True)
class TokenLogprob:
    """One generated token, its log-probability, and the most likely alternatives there."""

    token: str
    logprob: float
    top: dict[str, float] = dataclasses.field(default_factory=dict)

    def to_json(self) -> dict:
        return {"token": self.token, "logprob": self.logprob, "top": dict(self.top)}

    @classmethod
    def from_json(cls, d: dict) -> TokenLogprob:
        return cls(d["token"], float(d["logprob"]), {k: float(v) for k, v in d["top"].items()})


@dataclasses.dataclass(frozen=True)
class Completion:
    """A chat reply. `logprobs` is per generated token when the request asked for it."""

    text: str
    finish_reason: str = "stop"
    logprobs: tuple[TokenLogprob, ...] | None = None
    prompt_tokens: int | None = None
    completion_tokens: int | None = None

    def to_json(self) -> dict:
        return {"text": self.text, "finish_reason": self.finish_reason,
                "logprobs": None if self.logprobs is None else [t.to_json() for t in self.logprobs],
                "prompt_tokens": self.prompt_tokens, "completion_tokens": self.completion_tokens}

    @classmethod
    def from_json(cls, d: dict) -> Completion:
        lp = d.get("logprobs")
        return cls(d["text"], d.get("finish_reason", "stop"),
                   None if lp is None else tuple(TokenLogprob.from_json(t) for t in lp),
                   d.get("prompt_tokens"), d.get("completion_tokens"))


@dataclasses.dataclass(frozen=True)
class Sampling:
    """Sampling settings of one request; part of the transcript-cache key."""

    max_tokens: int = 64
    temperature: float = 0.0
    seed: int = 0
    top_logprobs: int | None = None  # ask for per-token log-probabilities and this many top ones

    def __post_init__(self):
        if not isinstance(self.max_tokens, int) or self.max_tokens < 1:
            raise ValueError(f"max_tokens must be a positive int, got {self.max_tokens!r}")
        if not self.temperature >= 0:
            raise ValueError(f"temperature must be >= 0, got {self.temperature!r}")
        if self.top_logprobs is not None and not 0 <= self.top_logprobs <= 20:
            raise ValueError(f"top_logprobs must be in 0..20 (the OpenAI limit), "
                             f"got {self.top_logprobs!r}")


@runtime_checkable
class Backend(Protocol):
    """`kind` ("local", "openai-compatible", ...) and `model` name the backend in cache keys."""

    kind: str
    model: str

    def chat(self, messages: Sequence[Message], sampling: Sampling) -> Completion: ...


def complete(backend: Backend, messages, *, max_tokens: int = 64, temperature: float = 0.0,
             seed: int = 0) -> str:
    """The reply text: the simplest use of a backend."""
    return backend.chat(as_messages(messages), Sampling(max_tokens, temperature, seed)).text


def supports_slot_logprobs(backend) -> bool:
    return callable(getattr(backend, "slot_logprobs", None))


def first_token_probs(backend: Backend, messages, choices: Sequence[Sequence[str]],
                      *, top: int = 20) -> np.ndarray | None:
    """Probability that the reply *starts* with each choice, renormalised over the choices.

    `choices` is a list of alternatives per option, e.g. `[["yes", " yes", "Yes"], ["no", ...]]`
    (tokenizers differ in case and leading-space conventions, so the variants' probabilities are
    summed). Reads the top log-probabilities of the first generated token, which chat-completions
    servers (OpenAI, vLLM, llama.cpp, this package's server) return with `logprobs=true`. Returns
    None when the backend gave no log-probabilities or none of the variants is among the top
    tokens; callers then fall back to parsing the text.
    """
    c = backend.chat(as_messages(messages), Sampling(max_tokens=1, temperature=0.0,
                                                     top_logprobs=top))
    if not c.logprobs:
        return None
    top_lp = c.logprobs[0].top or {c.logprobs[0].token: c.logprobs[0].logprob}
    mass = np.array([sum(np.exp(top_lp[v]) for v in set(opt) if v in top_lp) for opt in choices])
    if mass.sum() <= 0:
        return None
    return mass / mass.sum()
