"""Tokenise documents and pack them into fixed-length contexts that start with BOS.

Every context is `[BOS] + (T-1)` tokens cut from one stream in which the documents follow each
other, separated by `separator_ids` (default: the tokenisation of a blank line, so no special
token appears mid-context). Fixed-length rows let the harvester run one compiled forward pass;
the leading BOS matches how both models were trained, and puts the one position whose residual
norm is tens to hundreds of times larger at a known place (column 0), where the activation
store can drop it. This follows the SAE-training setups of Bricken et al. (2023) and the GDM
Progress Update #1 (contexts of fixed length, each starting with BOS).

A tokenizer is any object with `encode(text) -> list[int]` and a BOS id (attribute `bos_id`
or `bos_token_id`, or passed explicitly); `interp.models` builds them from the GGUF files.
"""

from __future__ import annotations

import io
import warnings
from collections.abc import Callable, Iterable, Sequence
from pathlib import Path

import numpy as np

from interp.cache import atomic_write_bytes, bytes_sha256, cache_dir, content_hash
from interp.data import corpus as corpus_mod

PROBE_TEXT = ("The quick brown fox jumps over the lazy dog. It's 1865; Ahab's ship, the Pequod, "
              "sails on\n\n\u201cCall me Ishmael,\u201d he said \u2014 100% sure!")


def bos_id_of(tokenizer, bos_id: int | None = None) -> int:
    if bos_id is not None:
        return int(bos_id)
    for name in ("bos_id", "bos_token_id", "bos"):
        value = getattr(tokenizer, name, None)
        if isinstance(value, (int, np.integer)):
            return int(value)
    raise ValueError(f"{type(tokenizer).__name__} has no integer bos_id/bos_token_id; "
                     "pass bos_id= explicitly")


def _encode_fn(tokenizer) -> Callable[[str], Sequence[int]]:
    encode = getattr(tokenizer, "encode", None)
    if encode is None:
        raise TypeError(f"{type(tokenizer).__name__} has no encode(text) method")

    def run(text: str) -> Sequence[int]:
        ids = encode(text)
        return getattr(ids, "ids", ids)  # a `tokenizers.Encoding` carries its ids in .ids

    return run


def tokenizer_fingerprint(tokenizer, bos_id: int | None = None) -> str:
    """Identify a tokenizer by what it does: its explicit `fingerprint` if it has one, else a
    hash of its class, BOS id and its encoding of a probe text covering tricky characters."""
    explicit = getattr(tokenizer, "fingerprint", None)
    if isinstance(explicit, str):
        return explicit
    ids = [int(i) for i in _encode_fn(tokenizer)(PROBE_TEXT)]
    return content_hash(type(tokenizer).__qualname__, bos_id_of(tokenizer, bos_id), ids)


def pack(texts: Iterable[str], tokenizer, context_length: int, *,
         max_contexts: int | None = None, bos_id: int | None = None,
         separator_ids: Sequence[int] | None = None, progress: bool = False) -> np.ndarray:
    """Pack `texts` into an int32 array [N, context_length], each row starting with BOS.

    Stops after `max_contexts` rows (only as many documents as needed are tokenised); the final
    partial row is dropped so every row is full. A BOS that the tokenizer itself prepends to a
    document is removed, so BOS occurs only in column 0.
    """
    if context_length < 2:
        raise ValueError(f"context_length must be at least 2 (BOS + 1 token), got {context_length}")
    if max_contexts is not None and max_contexts < 1:
        raise ValueError(f"max_contexts must be positive, got {max_contexts}")
    bos = bos_id_of(tokenizer, bos_id)
    encode = _encode_fn(tokenizer)
    if separator_ids is None:
        separator_ids = [i for i in encode("\n\n") if i != bos]
    body = context_length - 1
    rows: list[np.ndarray] = []
    buffer: list[int] = []
    bar = None
    if progress:
        from tqdm import tqdm
        bar = tqdm(total=max_contexts, desc="pack contexts", unit="ctx")
    for text in texts:
        ids = [int(i) for i in encode(text)]
        if ids and ids[0] == bos:
            ids = ids[1:]
        if not ids:
            continue
        if buffer or rows:
            buffer.extend(separator_ids)
        buffer.extend(ids)
        while len(buffer) >= body:
            rows.append(np.array([bos, *buffer[:body]], dtype=np.int32))
            del buffer[:body]
            if bar is not None:
                bar.update(1)
            if max_contexts is not None and len(rows) >= max_contexts:
                break
        if max_contexts is not None and len(rows) >= max_contexts:
            break
    if bar is not None:
        bar.close()
    if not rows:
        raise ValueError(f"the texts gave fewer than {body} tokens: not even one context of "
                         f"length {context_length}")
    return np.stack(rows)


def packed_split(split: str, tokenizer, context_length: int, n_contexts: int, *,
                 corpus=None, bos_id: int | None = None, progress: bool = True) -> np.ndarray:
    """`n_contexts` packed rows of a corpus split, cached by (corpus revision, tokenizer,
    context length, count) so notebooks asking for the same tokens tokenise once."""
    corpus = corpus_mod.load() if corpus is None else corpus
    key = content_hash("packed", corpus.revision, split, tokenizer_fingerprint(tokenizer, bos_id),
                       context_length, n_contexts)
    path = cache_dir("tokens", key) / "tokens.npy"
    cached = _load_checked_tokens(path, (n_contexts, context_length))
    if cached is not None:
        return cached
    tokens = pack(corpus.texts(split), tokenizer, context_length, max_contexts=n_contexts,
                  bos_id=bos_id, progress=progress)
    if len(tokens) < n_contexts:
        raise ValueError(f"split {split!r} of corpus {corpus.revision} has only {len(tokens)} "
                         f"contexts of length {context_length}; asked for {n_contexts}")
    buffer = io.BytesIO()
    np.save(buffer, tokens)
    data = buffer.getvalue()
    atomic_write_bytes(path, data)
    atomic_write_bytes(_checksum_path(path), bytes_sha256(data).encode())  # written last
    return tokens


def _checksum_path(path: Path) -> Path:
    return path.with_name(path.name + ".sha256")


def _load_checked_tokens(path: Path, shape: tuple[int, int]) -> np.ndarray | None:
    """The cached tokens if present and intact; None (with a warning naming the file when it
    was damaged) so the caller re-packs them: packed tokens are cheap to derive again, and a
    flipped byte must never reach a model as a wrong token id."""
    if not path.exists():
        return None
    try:
        data = path.read_bytes()
        recorded = _checksum_path(path).read_text(encoding="utf-8").strip()
    except OSError:
        recorded, data = None, b""
    if recorded != bytes_sha256(data):
        warnings.warn(f"{path}: cached packed tokens fail their sha256 check (or have none); "
                      f"re-packing them", stacklevel=3)
        return None
    tokens = np.load(io.BytesIO(data))
    return tokens if tokens.shape == shape else None
