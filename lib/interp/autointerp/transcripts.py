"""Every LLM request and reply, cached on disk, so a notebook re-executes without the backend.

The key is a hash of (backend kind, model, request, sampling settings): nothing about *where*
the backend runs (URL) or who pays for it (API key) enters it, so a transcript recorded against
a remote API replays on a machine with no network and no key. Each entry is one JSON file that
also stores the request in full, which makes transcripts auditable and lets a (vanishingly
unlikely) hash collision be detected instead of silently returning another prompt's reply.

`offline=True` (or `INTERP_AUTOINTERP_OFFLINE=1`) turns a cache miss into an error instead of a
backend call: the way to prove a re-execution used the transcripts only.
"""

from __future__ import annotations

import json
import os
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from interp.autointerp.backend import (
    Backend,
    BackendError,
    Completion,
    Message,
    Sampling,
    as_messages,
    supports_slot_logprobs,
)
from interp.cache import atomic_write_bytes, bytes_sha256, cache_root, content_hash

OFFLINE_ENV = "INTERP_AUTOINTERP_OFFLINE"
FORMAT = 1


class TranscriptMiss(BackendError):
    """Offline mode and the request is not in the transcript cache."""


def _entry_sha256(request, reply) -> str:
    """Checksum of a cached exchange: a flipped byte in a stored reply must not be served as
    the model's answer."""
    return bytes_sha256(json.dumps([request, reply], sort_keys=True).encode())


class TranscriptCorrupt(BackendError):
    """A cache file exists but cannot be read back."""


class CachedBackend:
    """Wrap a backend; answer repeated requests from disk. Counts calls that reached it."""

    def __init__(self, inner: Backend, directory: str | os.PathLike | None = None, *,
                 offline: bool | None = None):
        self.inner = inner
        self.kind, self.model = inner.kind, inner.model
        self.directory = Path(directory) if directory is not None else cache_root() / "llm"
        if offline is None:
            offline = os.environ.get(OFFLINE_ENV, "") not in ("", "0", "false", "no")
        self.offline = offline
        self.hits = 0
        self.misses = 0  # requests that were sent to the inner backend

    def __repr__(self) -> str:
        return (f"CachedBackend({self.inner!r}, directory={str(self.directory)!r}, "
                f"offline={self.offline})")

    # -- keys and files -------------------------------------------------------------------------
    def _path(self, request: dict) -> Path:
        key = content_hash(FORMAT, self.kind, self.model, request, length=32)
        return self.directory / key[:2] / f"{key}.json"

    def _lookup(self, path: Path, request: dict):
        if not path.exists():
            return None
        try:
            entry = json.loads(path.read_text())
            stored = entry["request"]
            reply = entry["reply"]
            recorded = entry.get("sha256")
        except (OSError, ValueError, KeyError, TypeError) as e:
            raise TranscriptCorrupt(f"transcript cache file {path} is unreadable ({e}); delete it "
                                    "to re-ask the backend") from None
        if stored != json.loads(json.dumps(request)):
            raise TranscriptCorrupt(f"transcript cache file {path} holds a different request "
                                    "(hash collision or edited file); delete it")
        if recorded is None:  # written before checksums: keep the reply, add its checksum
            self._store(path, stored, reply)
        elif recorded != _entry_sha256(stored, reply):
            raise TranscriptCorrupt(f"transcript cache file {path} fails its sha256 check (a "
                                    "damaged or edited reply); delete it to re-ask the backend")
        return reply

    def _store(self, path: Path, request: dict, reply) -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        entry = {"format": FORMAT, "kind": self.kind, "model": self.model, "request": request,
                 "reply": reply, "sha256": _entry_sha256(request, reply)}
        atomic_write_bytes(path, json.dumps(entry, indent=1).encode())

    def _answer(self, request: dict, compute):
        path = self._path(request)
        reply = self._lookup(path, request)
        if reply is not None:
            self.hits += 1
            return reply
        if self.offline:
            raise TranscriptMiss(f"offline: no cached reply from {self.kind}:{self.model} for "
                                 f"this request (would be {path}); run once with the backend "
                                 f"available, or unset {OFFLINE_ENV}")
        self.misses += 1
        reply = compute()
        self._store(path, request, reply)
        return reply

    # -- the Backend interface ----------------------------------------------------------------
    def chat(self, messages: Sequence[Message], sampling: Sampling) -> Completion:
        messages = as_messages(messages)
        request = {"op": "chat", "messages": [m.to_json() for m in messages],
                   "sampling": {"max_tokens": sampling.max_tokens,
                                "temperature": sampling.temperature, "seed": sampling.seed,
                                "top_logprobs": sampling.top_logprobs}}
        reply = self._answer(request, lambda: self.inner.chat(messages, sampling).to_json())
        return Completion.from_json(reply)

    def __getattr__(self, name):
        # slot_logprobs exists exactly when the inner backend has it (see supports_slot_logprobs)
        if name == "slot_logprobs" and "inner" in vars(self) and supports_slot_logprobs(self.inner):
            return self._slot_logprobs
        raise AttributeError(name)

    def _slot_logprobs(self, messages: Sequence[Message], segments: Sequence[str],
                       choices: Sequence[str]) -> np.ndarray:
        messages = as_messages(messages)
        request = {"op": "slot_logprobs", "messages": [m.to_json() for m in messages],
                   "segments": list(segments), "choices": list(choices)}
        reply = self._answer(request, lambda: np.asarray(
            self.inner.slot_logprobs(messages, segments, choices)).tolist())
        return np.asarray(reply, dtype=np.float64)
