"""Content-addressed cache folders for expensive artifacts (weights, activations, SAEs).

Everything costly is stored under `cache_root()/<kind>/<hash>/`, where the hash covers
everything that determines the artifact, so two notebooks asking for the same thing share
it and a change of any input gives a new entry instead of a stale one. The root is
`$INTERP_CACHE` if set, else `~/.cache/interp`.

Every artifact a notebook reloads carries a sha256 written with it and checked when it is read
back; a file that fails the check raises `CorruptCacheError`, whose message names the file and
what to delete so the next call recomputes it (nothing is silently recomputed or trusted).
"""

from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path
from typing import Any

CACHE_ENV = "INTERP_CACHE"


class CorruptCacheError(ValueError):
    """A cached artifact is unreadable, incomplete or fails its checksum. The message names
    the file and what to delete so that the next call recomputes it."""

    def __init__(self, path: str | os.PathLike, problem: str, *,
                 delete: str | os.PathLike | None = None, then: str = "to recompute it"):
        self.path, self.problem = Path(path), problem
        self.delete = Path(delete) if delete is not None else self.path
        super().__init__(f"{self.path}: {problem}. Delete {self.delete} {then}.")


def cache_root() -> Path:
    root = Path(os.environ.get(CACHE_ENV) or Path.home() / ".cache" / "interp")
    root.mkdir(parents=True, exist_ok=True)
    return root


def content_hash(*parts: Any, length: int = 16) -> str:
    """A stable hex digest of JSON-serialisable parts (dict keys are sorted)."""
    blob = json.dumps(parts, sort_keys=True, default=str).encode()
    return hashlib.sha256(blob).hexdigest()[:length]


def bytes_sha256(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def file_sha256(path: str | os.PathLike, chunk: int = 1 << 20) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        while block := f.read(chunk):
            h.update(block)
    return h.hexdigest()


def cache_dir(kind: str, key: str) -> Path:
    """The folder for one cached artifact, created if missing."""
    path = cache_root() / kind / key
    path.mkdir(parents=True, exist_ok=True)
    return path


def atomic_write_bytes(path: str | os.PathLike, data: bytes) -> None:
    """Write to a temporary file then rename, so a crash never leaves half a file."""
    path = Path(path)
    tmp = path.with_name(f".{path.name}.tmp-{os.getpid()}")
    with open(tmp, "wb") as f:
        f.write(data)
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, path)


def write_checked_json(path: str | os.PathLike, value: Any) -> None:
    """Atomically write `value` as JSON together with the sha256 of its canonical encoding,
    so `read_checked_json` notices any later change of the file."""
    payload = json.dumps(value, sort_keys=True)
    record = {"sha256": bytes_sha256(payload.encode()), "value": json.loads(payload)}
    atomic_write_bytes(path, json.dumps(record, indent=1, sort_keys=True).encode())


def read_checked_json(path: str | os.PathLike, *, delete: str | os.PathLike | None = None,
                      then: str = "to recompute it") -> Any:
    """The value written by `write_checked_json`; `CorruptCacheError` (naming `delete`, default
    the file itself) if the file is unreadable, lacks its checksum or fails it."""
    path = Path(path)

    def corrupt(problem):
        return CorruptCacheError(path, problem, delete=delete, then=then)

    try:
        record = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as e:
        raise corrupt(f"unreadable JSON ({e})") from e
    if not isinstance(record, dict) or set(record) != {"sha256", "value"}:
        raise corrupt("no checksum (an older or foreign file)")
    payload = json.dumps(record["value"], sort_keys=True)
    if bytes_sha256(payload.encode()) != record["sha256"]:
        raise corrupt("contents fail their sha256 check")
    return record["value"]
