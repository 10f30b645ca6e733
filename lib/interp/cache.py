"""Content-addressed cache folders for expensive artifacts (weights, activations, SAEs).

Everything costly is stored under `cache_root()/<kind>/<hash>/`, where the hash covers
everything that determines the artifact, so two notebooks asking for the same thing share
it and a change of any input gives a new entry instead of a stale one. The root is
`$INTERP_CACHE` if set, else `~/.cache/interp`.
"""

from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path
from typing import Any

CACHE_ENV = "INTERP_CACHE"


def cache_root() -> Path:
    root = Path(os.environ.get(CACHE_ENV) or Path.home() / ".cache" / "interp")
    root.mkdir(parents=True, exist_ok=True)
    return root


def content_hash(*parts: Any, length: int = 16) -> str:
    """A stable hex digest of JSON-serialisable parts (dict keys are sorted)."""
    blob = json.dumps(parts, sort_keys=True, default=str).encode()
    return hashlib.sha256(blob).hexdigest()[:length]


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
