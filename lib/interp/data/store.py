"""On-disk activation store: harvest once, train many SAEs from shuffled float32 batches.

Harvesting runs a jittable `activation_fn(tokens[B, T]) -> {site: array[B, T, d]}` over packed
contexts and appends the results, cast to float16 or bfloat16 on the device, to shard files:

    <store>/manifest.json             spec, sites, dtype, token count, per-shard sha256
    <store>/tokens/shard-00000.bin    int32 [contexts, T]          (for max-activating examples)
    <store>/tokens/shard-00000.json   the shard's own record: spec key, file sizes and sha256
    <store>/<site>/shard-00000.bin    dtype [contexts, T, d_site]

Why this shape:
- *Bounded memory.* Each batch is written straight to the open shard file and hashed
  incrementally, so resident memory is one batch plus one in flight, however long the harvest.
- *Resumable.* A shard becomes visible (renamed from a `.partial` file and recorded in the
  manifest) only when complete; an interrupted harvest restarts at the first unrecorded shard.
  Shard boundaries depend only on `contexts_per_shard`, not on batch size or device count, so a
  resumed store is the same as an uninterrupted one.
- *Checked.* Every shard's size and SHA-256 are in the manifest; sizes are checked on every
  read and the SHA-256 the first time a process reads a shard (again if the file changes), which
  costs about as much as reading the file. A corrupt or truncated shard is reported by name and
  harvesting again with `verify=True` rebuilds exactly the bad shards. A damaged manifest is
  reported by `ActivationStore` and rebuilt by `harvest` from the per-shard records, keeping
  every shard whose checksum still matches.
- *Shared.* By default the store lives in `cache_dir("activations", key)` where the key hashes
  everything that determines it (model id, sites, tokens, corpus revision, dtype, shard size), so
  two notebooks asking for the same activations share one harvest.
- *Data parallel.* With several devices (or CPU devices forced with
  `XLA_FLAGS=--xla_force_host_platform_device_count=N`) each batch is split across them with a
  `jax.sharding.NamedSharding` over a 1-D mesh of this process's devices.
- *Several processes.* `harvest_part` lets each of n processes write every n-th shard (with its
  record) into the same folder at once; `complete_harvest` then writes the manifest from the
  records. A part that died is rerun and skips its shards already on disk (`interp.distributed`).

Reading serves float32 batches through a shuffle buffer, optionally without the BOS position
(column 0), whose residual norm is tens to hundreds of times that of other tokens and would
otherwise dominate an SAE's reconstruction loss (GDM Progress Update #1; Anthropic, "Towards
Monosemanticity", 2023).
"""

from __future__ import annotations

import fcntl
import functools
import hashlib
import json
import os
import re
import warnings
from collections.abc import Callable, Iterator, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path

import ml_dtypes
import numpy as np

from interp.cache import atomic_write_bytes, cache_dir, content_hash

FORMAT_VERSION = 1
STORAGE_DTYPES = {"float16": np.dtype(np.float16), "bfloat16": np.dtype(ml_dtypes.bfloat16)}
TOKENS = "tokens"
DEFAULT_SHARD_BYTES = 64 << 20


REPAIR_ADVICE = ("call the same harvest again with verify=True (interp.data.store.harvest(..., "
                 "verify=True) or interp.lm_sae.activations(..., verify=True)) to rebuild exactly "
                 "the bad shards")


class CorruptStoreError(ValueError):
    """The store folder is damaged (manifest unreadable or inconsistent, or bad shards); the
    message names the folder and how to repair it."""


class CorruptShardError(CorruptStoreError, RuntimeError):
    """One or more shard files are missing, truncated or fail their checksum.
    (Also a RuntimeError, what it was before `CorruptStoreError` existed.)"""

    def __init__(self, store: Path, problems: dict[str, str]):
        self.store = Path(store)
        self.problems = problems
        listing = "; ".join(f"{name}: {why}" for name, why in sorted(problems.items()))
        super().__init__(f"activation store {store}: {len(problems)} bad shard file(s): {listing}. "
                         f"To repair, {REPAIR_ADVICE}; or delete {store}.")


class StoreMismatchError(ValueError):
    """An existing store folder was written for a different spec."""


class UnknownStoreSiteError(KeyError, ValueError):
    """A site the store does not hold; the message lists the ones it does."""

    def __str__(self) -> str:  # KeyError would repr() the message
        return str(self.args[0])


class IncompleteStoreError(RuntimeError):
    """The store's harvest was interrupted; calling `harvest` again resumes it."""


@dataclass(frozen=True)
class StoreSpec:
    """Everything that determines a store's contents; its hash names the cache folder.

    `model` must identify the activation function completely (architecture, weights, any
    intervention), e.g. "smollm2-135m@<weights sha>"; the store cannot check this for you.
    """

    model: str
    sites: dict[str, int]  # site -> feature dimension d
    corpus_revision: str
    tokens_sha256: str
    n_contexts: int
    context_length: int
    dtype: str
    contexts_per_shard: int
    format: int = field(default=FORMAT_VERSION)

    def key(self) -> str:
        return content_hash("activation-store", asdict(self))

    @property
    def n_shards(self) -> int:
        return -(-self.n_contexts // self.contexts_per_shard)

    def shard_range(self, index: int) -> tuple[int, int]:
        start = index * self.contexts_per_shard
        return start, min(start + self.contexts_per_shard, self.n_contexts)


def _dir_name(site: str) -> str:
    return re.sub(r"[^A-Za-z0-9_.\-]", "_", site)


def _shard_name(owner: str, index: int) -> str:
    return f"{_dir_name(owner)}/shard-{index:05d}.bin"


def _shard_index(name: str) -> int:
    return int(name.rsplit("-", 1)[1].split(".")[0])


def _record_name(index: int) -> str:
    return f"{TOKENS}/shard-{index:05d}.json"


def _sha256(data: bytes | memoryview) -> str:
    return hashlib.sha256(data).hexdigest()


def _is_sha256(value) -> bool:
    return isinstance(value, str) and re.fullmatch(r"[0-9a-f]{64}", value) is not None


def _row_bytes(spec: StoreSpec, owner: str) -> int:
    if owner == TOKENS:
        return spec.context_length * 4
    return spec.context_length * spec.sites[owner] * STORAGE_DTYPES[spec.dtype].itemsize


# --- harvesting --------------------------------------------------------------------------------

def _call(activation_fn: Callable, params, tokens):
    return activation_fn(tokens) if params is None else activation_fn(params, tokens)


def _compile(activation_fn: Callable, params, sites: Sequence[str], dtype: np.dtype):
    """jit the function (cast on device); with several devices, the batch is split across them
    and the parameters replicated. Parameters are jit *arguments*, not closure constants, so
    XLA does not spend minutes constant-folding a model's weights into the program."""
    import jax
    from jax.sharding import Mesh, NamedSharding, PartitionSpec

    cast = _jitted(activation_fn, tuple(sites), np.dtype(dtype).name)
    devices = jax.local_devices()  # under jax.distributed each process harvests its own shards
    if len(devices) == 1:
        return cast, params, 1, None
    mesh = Mesh(np.array(devices), ("data",))
    params = jax.device_put(params, NamedSharding(mesh, PartitionSpec()))
    return cast, params, len(devices), NamedSharding(mesh, PartitionSpec("data"))


@functools.lru_cache(maxsize=4)
def _jitted(activation_fn: Callable, sites: tuple[str, ...], dtype_name: str):
    """One jitted wrapper per function, so a second harvest in the process skips compiling."""
    import jax

    dtype = STORAGE_DTYPES[dtype_name]

    def cast(params, tokens):
        out = _call(activation_fn, params, tokens)
        return {s: out[s].astype(dtype) for s in sites}

    return jax.jit(cast)


def _probe_sites(activation_fn: Callable, params, context_length: int,
                 sites: Sequence[str] | None) -> dict[str, int]:
    import jax
    import jax.numpy as jnp

    shapes = jax.eval_shape(lambda t: _call(activation_fn, params, t),
                            jax.ShapeDtypeStruct((2, context_length), jnp.int32))
    if not isinstance(shapes, dict) or not shapes:
        raise TypeError("activation_fn must return a non-empty dict {site: array[B, T, d]}")
    names = sorted(shapes) if sites is None else list(sites)
    missing = [s for s in names if s not in shapes]
    if missing:
        raise KeyError(f"activation_fn does not return sites {missing}; "
                       f"it returns {sorted(shapes)}")
    if TOKENS in names or len({_dir_name(s) for s in names} | {TOKENS}) != len(names) + 1:
        raise ValueError(f"site names {names} collide with each other or with {TOKENS!r} on disk")
    dims = {}
    for s in names:
        shape = shapes[s].shape
        if len(shape) != 3 or shape[:2] != (2, context_length):
            raise ValueError(f"site {s!r} has shape {shape} for tokens (2, {context_length}); "
                             "expected (B, T, d)")
        dims[s] = int(shape[2])
    return dims


def make_spec(activation_fn: Callable, tokens: np.ndarray, *, model: str, corpus_revision: str,
              dtype: str = "bfloat16", sites: Sequence[str] | None = None,
              contexts_per_shard: int | None = None,
              shard_bytes: int = DEFAULT_SHARD_BYTES, params=None) -> StoreSpec:
    """The spec (and so the cache key) of a harvest, without running the model."""
    if dtype not in STORAGE_DTYPES:
        raise ValueError(f"unknown storage dtype {dtype!r}; choose one of {sorted(STORAGE_DTYPES)}")
    tokens = np.ascontiguousarray(tokens, dtype=np.int32)
    if tokens.ndim != 2 or tokens.shape[0] == 0 or tokens.shape[1] < 2:
        raise ValueError(f"tokens must be a non-empty [contexts, T>=2] array, got {tokens.shape}")
    n, t = tokens.shape
    dims = _probe_sites(activation_fn, params, t, sites)
    if contexts_per_shard is None:
        widest = max(dims.values()) * t * STORAGE_DTYPES[dtype].itemsize
        contexts_per_shard = max(1, shard_bytes // widest)
    if contexts_per_shard < 1:
        raise ValueError(f"contexts_per_shard must be positive, got {contexts_per_shard}")
    return StoreSpec(model=model, sites=dims, corpus_revision=corpus_revision,
                     tokens_sha256=_sha256(tokens.tobytes()), n_contexts=n, context_length=t,
                     dtype=dtype, contexts_per_shard=int(min(contexts_per_shard, n)))


def _new_manifest(spec: StoreSpec) -> dict:
    return {"format": FORMAT_VERSION, "spec": asdict(spec), "model": spec.model,
            "sites": spec.sites, "corpus_revision": spec.corpus_revision, "dtype": spec.dtype,
            "n_contexts": spec.n_contexts, "context_length": spec.context_length,
            "token_count": spec.n_contexts * spec.context_length,
            "contexts_per_shard": spec.contexts_per_shard, "n_shards": spec.n_shards,
            "shards": {}, "complete": False}


def _write_manifest(path: Path, manifest: dict) -> None:
    atomic_write_bytes(path / "manifest.json", json.dumps(manifest, indent=1).encode())


def _spec_json(spec: StoreSpec) -> dict:
    return json.loads(json.dumps(asdict(spec)))


def _damaged(path: Path, why: str) -> str:
    return (f"activation store {path}: manifest.json is damaged ({why}). Call the same harvest "
            "again (interp.data.store.harvest or interp.lm_sae.activations) to rebuild it, keeping "
            f"every shard whose checksum still matches; or delete {path}.")


def _parse_manifest(path: Path) -> tuple[dict | None, str | None]:
    """(the parsed manifest, None), or (None, why it is not a JSON object)."""
    try:
        manifest = json.loads((path / "manifest.json").read_text(encoding="utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError) as e:
        return None, f"not valid JSON: {e}"
    if not isinstance(manifest, dict):
        return None, f"a JSON {type(manifest).__name__}, not an object"
    return manifest, None


def _spec_from_json(value) -> StoreSpec | None:
    """The spec a manifest records, or None if it is not a well-formed spec."""
    if not isinstance(value, dict):
        return None
    try:
        spec = StoreSpec(**value)
    except TypeError:
        return None
    ints = (spec.n_contexts, spec.context_length, spec.contexts_per_shard)
    well_formed = (all(type(n) is int and n > 0 for n in ints)
                   and isinstance(spec.sites, dict) and spec.dtype in STORAGE_DTYPES
                   and all(isinstance(k, str) and type(d) is int and d > 0
                           for k, d in spec.sites.items()))
    return spec if well_formed else None


def _entry_problem(spec: StoreSpec, index: int, entry) -> str | None:
    """Why a manifest's record of shard `index` is unusable, or None if it is well formed."""
    if entry is None:
        return "no entry"
    start, stop = spec.shard_range(index)
    if not isinstance(entry, dict) or entry.get("contexts") != [start, stop]:
        return f"entry does not cover contexts [{start}, {stop})"
    files = entry.get("files")
    expected = {_shard_name(o, index): (stop - start) * _row_bytes(spec, o)
                for o in (TOKENS, *spec.sites)}
    if not isinstance(files, dict) or set(files) != set(expected):
        return f"entry lists files {sorted(files) if isinstance(files, dict) else files!r}"
    for name, size in expected.items():
        f = files[name]
        if not isinstance(f, dict) or f.get("bytes") != size or not _is_sha256(f.get("sha256")):
            return f"entry of {name} lacks its size ({size}) or sha256"
    return None


def _manifest_problem(manifest: dict, spec: StoreSpec) -> str | None:
    """Why a parsed manifest (of `spec`) cannot be trusted, or None."""
    if manifest.get("format") != FORMAT_VERSION:
        return f"format {manifest.get('format')!r}, but its spec says {FORMAT_VERSION}"
    shards = manifest.get("shards")
    if not isinstance(shards, dict) or not isinstance(manifest.get("complete"), bool):
        return "no 'shards' object or 'complete' flag"
    unknown = sorted(set(shards) - {str(i) for i in range(spec.n_shards)})
    if unknown:
        return f"shard entries {unknown} outside 0..{spec.n_shards - 1}"
    for key, entry in sorted(shards.items()):
        why = _entry_problem(spec, int(key), entry)
        if why:
            return f"shard {key}: {why}"
    missing = [i for i in range(spec.n_shards) if str(i) not in shards]
    if manifest["complete"] and missing:
        return (f"marked complete but has no entry for shard(s) {_ranges(missing)} "
                f"of {spec.n_shards}")
    return None


def _ranges(indices: list[int]) -> str:
    shown = ", ".join(map(str, indices[:8]))
    return shown + (f", ... ({len(indices)} in all)" if len(indices) > 8 else "")


def _check_file(path: Path, name: str, entry: dict, full: bool) -> str | None:
    file = path / name
    if not file.exists():
        return "missing"
    size = file.stat().st_size
    if size != entry["bytes"]:
        return f"truncated or padded ({size} bytes, expected {entry['bytes']})"
    if full:
        with open(file, "rb") as f:
            digest = hashlib.file_digest(f, "sha256").hexdigest()
        if digest != entry["sha256"]:
            return (f"checksum mismatch (sha256 {digest[:12]}..., "
                    f"expected {entry['sha256'][:12]}...)")
    return None


def check_shards(path: Path, manifest: dict, full: bool = True) -> dict[str, str]:
    """{shard file name: problem} for every recorded shard file that is bad."""
    problems = {}
    for shard in manifest["shards"].values():
        for name, entry in shard["files"].items():
            why = _check_file(path, name, entry, full)
            if why:
                problems[name] = why
    return problems


def harvest(activation_fn: Callable, tokens: np.ndarray, *, model: str, corpus_revision: str,
            dtype: str = "bfloat16", sites: Sequence[str] | None = None, batch_size: int = 8,
            contexts_per_shard: int | None = None, shard_bytes: int = DEFAULT_SHARD_BYTES,
            path: str | os.PathLike | None = None, verify: bool = False, progress: bool = True,
            on_shard: Callable[[int], None] | None = None, params=None) -> ActivationStore:
    """Harvest (or resume, or reuse) the store of `activation_fn` on packed `tokens`.

    `activation_fn(tokens[B, T]) -> {site: [B, T, d]}` must be jittable and deterministic;
    with `params` (a pytree, e.g. model weights) it is called as `activation_fn(params, tokens)`
    and the weights are passed to the compiled function instead of baked into it.
    Without `path` the store goes to the content-addressed cache. With `verify=True` every
    existing shard is re-hashed and bad ones are harvested again (the repair path).
    `on_shard(i)` is called after shard i is committed (progress hooks, tests of resumption).
    """
    tokens, spec, path = _prepare(activation_fn, tokens, model=model,
                                  corpus_revision=corpus_revision, dtype=dtype, sites=sites,
                                  batch_size=batch_size, contexts_per_shard=contexts_per_shard,
                                  shard_bytes=shard_bytes, path=path, params=params)
    # One harvester per store: a second process asking for the same store waits, then reuses it.
    with open(path / ".lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        return _harvest_locked(activation_fn, params, tokens, spec, path, batch_size=batch_size,
                               verify=verify, progress=progress, on_shard=on_shard)


def _prepare(activation_fn, tokens, *, batch_size: int, path, params, **spec_args):
    """(int32 tokens, spec, the store folder, created)."""
    tokens = np.ascontiguousarray(tokens, dtype=np.int32)
    spec = make_spec(activation_fn, tokens, params=params, **spec_args)
    if batch_size < 1:
        raise ValueError(f"batch_size must be positive, got {batch_size}")
    path = Path(path) if path is not None else cache_dir("activations", spec.key())
    path.mkdir(parents=True, exist_ok=True)
    return tokens, spec, path


def harvest_part(activation_fn: Callable, tokens: np.ndarray, *, part: int, parts: int,
                 batch_size: int = 8, path: str | os.PathLike | None = None,
                 verify: bool = False, progress: bool = True,
                 on_shard: Callable[[int], None] | None = None, params=None,
                 **spec_args) -> StoreSpec:
    """Part `part` of `parts` of a harvest that several processes run at once into one folder:
    shards part, part + parts, part + 2 * parts, ... with their per-shard records, and no
    manifest (`complete_harvest` writes it once every part has returned). Shards already on
    disk (recorded, right size; full checksum with `verify=True`) are skipped, so a process
    that died is simply started again. Other arguments as `harvest`; returns the spec."""
    if not (isinstance(parts, int) and isinstance(part, int) and 0 <= part < parts):
        raise ValueError(f"harvest_part: need 0 <= part < parts, got part={part!r}, "
                         f"parts={parts!r}")
    tokens, spec, path = _prepare(activation_fn, tokens, batch_size=batch_size, path=path,
                                  params=params, **spec_args)
    # Parts share the store (a shared lock: a plain `harvest` waits for all of them), and one
    # process per part (an exclusive lock on the part).
    with open(path / ".lock", "w") as lock, \
            open(path / f".lock-part-{part}-of-{parts}", "w") as own:
        fcntl.flock(lock, fcntl.LOCK_SH)
        fcntl.flock(own, fcntl.LOCK_EX)
        _harvest_locked(activation_fn, params, tokens, spec, path, batch_size=batch_size,
                        verify=verify, progress=progress, on_shard=on_shard, part=part,
                        parts=parts)
    return spec


def complete_harvest(spec: StoreSpec, path: str | os.PathLike | None = None, *,
                     verify: bool = False, processes: int | None = None) -> ActivationStore:
    """Write the manifest of a store harvested by `harvest_part`s, from the per-shard records
    (a record is written after its shard's files, so it is the latest word on that shard), and
    mark it complete. IncompleteStoreError, naming the missing shards and the parts that owe
    them, if a part has not finished: run that part again, then this."""
    path = Path(path) if path is not None else cache_dir("activations", spec.key())
    with open(path / ".lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        manifest = _sound_manifest(path, spec) or _new_manifest(spec)
        for index in range(spec.n_shards):
            entry = _read_record(path, spec, index)
            if entry is not None:
                manifest["shards"][str(index)] = entry
        for name in check_shards(path, manifest, full=verify):
            manifest["shards"].pop(str(_shard_index(name)), None)
        missing = [i for i in range(spec.n_shards) if str(i) not in manifest["shards"]]
        manifest["complete"] = not missing
        if processes is not None:
            manifest["harvest"] = {**manifest.get("harvest", {}), "processes": processes}
        _write_manifest(path, manifest)
    if missing:
        owed = "" if processes is None else " (owed by part(s) " + _ranges(
            sorted({i % processes for i in missing})) + f" of {processes})"
        raise IncompleteStoreError(f"{path}: shard(s) {_ranges(missing)} of {spec.n_shards} are "
                                   f"not on disk{owed}; run the harvest again to finish them")
    return ActivationStore(path)


def _sound_manifest(path: Path, spec: StoreSpec) -> dict | None:
    """The folder's manifest if it is readable, of `spec` and consistent; None if it is absent
    or damaged; StoreMismatchError if it belongs to another (well-formed) spec."""
    if not (path / "manifest.json").exists():
        return None
    manifest, _ = _parse_manifest(path)
    if manifest is None:
        return None
    old = manifest.get("spec")
    if old != _spec_json(spec):
        if _spec_from_json(old) is not None:
            raise StoreMismatchError(f"{path} holds a store with a different spec; use another "
                                     "path or delete it")
        return None
    return manifest if _manifest_problem(manifest, spec) is None else None


def _part_shards(path: Path, spec: StoreSpec, part: int, parts: int, verify: bool) -> dict:
    """{index: entry} of this part's shards already on disk: in a sound manifest or their own
    record, with files of the right size (and checksum with `verify`)."""
    manifest = _sound_manifest(path, spec)
    shards = {}
    for index in range(part, spec.n_shards, parts):
        entry = _read_record(path, spec, index)
        if entry is None and manifest is not None:
            entry = manifest["shards"].get(str(index))
        if entry is not None:
            shards[str(index)] = entry
    for name in check_shards(path, {"shards": shards}, full=verify):
        shards.pop(str(_shard_index(name)), None)
    return shards


def _harvest_locked(activation_fn, params, tokens, spec: StoreSpec, path: Path, *,
                    batch_size: int, verify: bool, progress: bool, on_shard, part: int = 0,
                    parts: int = 1) -> ActivationStore | None:
    from tqdm import tqdm

    dtype = spec.dtype
    if parts > 1:  # one of several processes: the manifest is left to complete_harvest
        manifest = {"shards": _part_shards(path, spec, part, parts, verify)}
    else:
        manifest = _manifest_for_harvest(path, spec)
        bad = check_shards(path, manifest, full=verify)
        for name in bad:
            manifest["shards"].pop(str(_shard_index(name)), None)
        complete = len(manifest["shards"]) == spec.n_shards
        if bad or complete != manifest["complete"]:
            manifest["complete"] = complete
            _write_manifest(path, manifest)
        if manifest["complete"]:
            return ActivationStore(path)
    for stale in path.glob("*/.*.partial"):
        if _shard_index(stale.name) % parts == part:  # not another part's shard in progress
            stale.unlink()

    owners = [TOKENS, *spec.sites]
    for owner in owners:
        (path / _dir_name(owner)).mkdir(exist_ok=True)
    storage = STORAGE_DTYPES[dtype]
    todo = [i for i in range(part, spec.n_shards, parts) if str(i) not in manifest["shards"]]
    if todo:
        import jax

        fn, params, n_devices, sharding = _compile(activation_fn, params, list(spec.sites),
                                                   storage)
        padded = -(-batch_size // n_devices) * n_devices
        manifest["harvest"] = {"devices": n_devices, "batch_size": padded,
                               "backend": jax.default_backend()}
        bar = tqdm(total=sum(np.subtract(*spec.shard_range(i)[::-1]) for i in todo),
                   desc=f"harvest {len(spec.sites)} site(s)", unit="ctx", disable=not progress)
        for index in todo:
            start, stop = spec.shard_range(index)
            files = {o: path / f".{Path(_shard_name(o, index)).name}.partial" for o in owners}
            handles = {o: open(f.parent / _dir_name(o) / f.name, "wb") for o, f in files.items()}
            hashers = {o: hashlib.sha256() for o in owners}

            def write(owner: str, array: np.ndarray) -> None:
                data = np.ascontiguousarray(array).view(np.uint8).data
                handles[owner].write(data)
                hashers[owner].update(data)

            def launch(lo: int):
                hi = min(lo + padded, stop)
                batch = tokens[lo:hi]
                if hi - lo < padded:  # pad with copies of the last row; outputs are dropped
                    batch = np.concatenate([batch, np.repeat(batch[-1:], padded - (hi - lo), 0)])
                if sharding is not None:
                    batch = jax.device_put(batch, sharding)
                return lo, hi, fn(params, batch)  # dispatched asynchronously

            try:
                pending = launch(start)
                while pending is not None:
                    lo, hi, out = pending
                    # Dispatch the next batch before blocking on this one's transfer.
                    pending = launch(hi) if hi < stop else None
                    write(TOKENS, tokens[lo:hi])
                    for site in spec.sites:
                        write(site, np.asarray(out[site])[: hi - lo])
                    bar.update(hi - lo)
            finally:
                for h in handles.values():
                    h.flush()
                    os.fsync(h.fileno())
                    h.close()
            entry = {"contexts": [start, stop], "files": {}}
            for owner in owners:
                name = _shard_name(owner, index)
                partial = path / _dir_name(owner) / files[owner].name
                expected = (stop - start) * _row_bytes(spec, owner)
                if partial.stat().st_size != expected:
                    raise RuntimeError(f"{name}: wrote {partial.stat().st_size} bytes, "
                                       f"expected {expected}")
                partial.replace(path / name)
                entry["files"][name] = {"bytes": expected, "sha256": hashers[owner].hexdigest()}
            _write_record(path, spec, index, entry)
            manifest["shards"][str(index)] = entry
            if parts == 1:
                _write_manifest(path, manifest)
            if on_shard is not None:
                on_shard(index)
        bar.close()
    if parts > 1:
        return None
    manifest["complete"] = len(manifest["shards"]) == spec.n_shards
    _write_manifest(path, manifest)
    return ActivationStore(path)


def _manifest_for_harvest(path: Path, spec: StoreSpec) -> dict:
    """The folder's manifest if it is sound and of `spec`; else one rebuilt from what survives.

    A different (well-formed) spec is an error: the folder is another store. A damaged manifest
    is rebuilt from its usable entries and the per-shard records, keeping only shards whose
    files pass a full checksum, so nothing sound is harvested twice.
    """
    damaged, problem = None, None
    if (path / "manifest.json").exists():
        damaged, problem = _parse_manifest(path)
    if damaged is not None:
        old, new = damaged.get("spec"), _spec_json(spec)
        if old != new and _spec_from_json(old) is not None:
            diff = sorted(k for k in set(old) | set(new) if old.get(k) != new.get(k))
            raise StoreMismatchError(f"{path} holds a store with a different spec (fields {diff}); "
                                     "use another path or delete it")
        problem = "unreadable spec" if old != new else _manifest_problem(damaged, spec)
        if problem is None:
            return damaged
    return _rebuild_manifest(path, spec, damaged, problem)


def _rebuild_manifest(path: Path, spec: StoreSpec, damaged: dict | None,
                      problem: str | None) -> dict:
    manifest = _new_manifest(spec)
    old = damaged.get("shards") if isinstance(damaged, dict) else None
    old = old if isinstance(old, dict) else {}
    for index in range(spec.n_shards):
        entry = old.get(str(index))
        if _entry_problem(spec, index, entry) is not None:
            entry = _read_record(path, spec, index)
        if entry is not None:
            manifest["shards"][str(index)] = entry
    for name in check_shards(path, manifest, full=True):
        manifest["shards"].pop(str(_shard_index(name)), None)
    if problem is not None:
        warnings.warn(f"activation store {path}: manifest.json was damaged ({problem}); rebuilt "
                      f"it, keeping {len(manifest['shards'])} of {spec.n_shards} shards whose "
                      "checksums match and harvesting the rest again", stacklevel=5)
    _write_manifest(path, manifest)
    return manifest


def _write_record(path: Path, spec: StoreSpec, index: int, entry: dict) -> None:
    """The shard's own copy of its manifest entry, so a damaged manifest can be rebuilt."""
    record = {"spec_key": spec.key(), "shard": entry}
    atomic_write_bytes(path / _record_name(index), json.dumps(record, indent=1).encode())


def _read_record(path: Path, spec: StoreSpec, index: int) -> dict | None:
    """Shard `index`'s record if it is readable and of `spec`; StoreMismatchError if it belongs
    to another spec (the folder is another store whose manifest was lost)."""
    try:
        record = json.loads((path / _record_name(index)).read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError):
        return None
    if not isinstance(record, dict):
        return None
    if record.get("spec_key") != spec.key():
        raise StoreMismatchError(f"{path}: shard record {_record_name(index)} belongs to another "
                                 "store (different spec) and the manifest is missing or damaged; "
                                 f"use another path or delete {path}")
    entry = record.get("shard")
    return entry if _entry_problem(spec, index, entry) is None else None


# --- reading -----------------------------------------------------------------------------------

# Shard files whose SHA-256 this process has checked: (file, inode, size, mtime_ns, sha256).
# A file replaced or rewritten since gets a new key and is hashed again.
_VERIFIED: set[tuple] = set()


class ActivationStore:
    """A complete harvest on disk; reads check each shard's checksum the first time they load it
    (per process) and its size every time."""

    def __init__(self, path: str | os.PathLike):
        self.path = Path(path)
        manifest_path = self.path / "manifest.json"
        if not manifest_path.exists():
            raise FileNotFoundError(f"no activation store at {self.path} (manifest.json missing)")
        manifest, problem = _parse_manifest(self.path)
        if problem:
            raise CorruptStoreError(_damaged(self.path, problem))
        if manifest.get("format") != FORMAT_VERSION:
            raise ValueError(f"{self.path}: store format {manifest.get('format')}, "
                             f"this code reads {FORMAT_VERSION}")
        spec = _spec_from_json(manifest.get("spec"))
        problem = "no well-formed 'spec'" if spec is None else _manifest_problem(manifest, spec)
        if problem:
            raise CorruptStoreError(_damaged(self.path, problem))
        if not manifest["complete"]:
            raise IncompleteStoreError(
                f"{self.path}: harvest incomplete ({len(manifest['shards'])} of "
                f"{spec.n_shards} shards); call harvest(...) again to resume")
        self.manifest, self.spec = manifest, spec

    def __repr__(self) -> str:
        return (f"ActivationStore({self.spec.model!r}, sites={list(self.sites)}, "
                f"tokens={self.token_count:,}, dtype={self.dtype}, path={str(self.path)!r})")

    @property
    def sites(self) -> dict[str, int]:
        return dict(self.spec.sites)

    @property
    def dtype(self) -> str:
        return self.spec.dtype

    @property
    def token_count(self) -> int:
        return self.spec.n_contexts * self.spec.context_length

    def verify(self) -> None:
        """Re-hash every shard; raise CorruptShardError naming each bad file."""
        problems = check_shards(self.path, self.manifest, full=True)
        if problems:
            raise CorruptShardError(self.path, problems)

    def _load(self, owner: str, index: int, verify: bool = True) -> np.ndarray:
        name = _shard_name(owner, index)
        entry = self.manifest["shards"][str(index)]["files"][name]
        file = self.path / name
        why = _check_file(self.path, name, entry, full=False)
        if why:
            raise CorruptShardError(self.path, {name: why})
        stat = file.stat()
        data = file.read_bytes()
        identity = (str(file.resolve()), stat.st_ino, stat.st_size, stat.st_mtime_ns,
                    entry["sha256"])
        if verify and identity not in _VERIFIED:
            if _sha256(data) != entry["sha256"]:
                raise CorruptShardError(self.path, {name: "checksum mismatch"})
            _VERIFIED.add(identity)
        start, stop = self.spec.shard_range(index)
        t = self.spec.context_length
        if owner == TOKENS:
            return np.frombuffer(data, np.int32).reshape(stop - start, t)
        d = self.spec.sites[owner]
        return np.frombuffer(data, STORAGE_DTYPES[self.dtype]).reshape(stop - start, t, d)

    def tokens(self) -> np.ndarray:
        """All harvested token ids [contexts, T] (for finding max-activating examples)."""
        return np.concatenate([self._load(TOKENS, i) for i in range(self.spec.n_shards)])

    def read(self, site: str, start: int = 0, stop: int | None = None) -> np.ndarray:
        """Contexts [start, stop) of one site in harvest order, float32 [n, T, d]."""
        self._check_site(site)
        n = self.spec.n_contexts
        stop = n if stop is None else stop
        if not (isinstance(start, (int, np.integer)) and isinstance(stop, (int, np.integer))
                and 0 <= start <= stop <= n):
            raise ValueError(f"read({site!r}, {start!r}, {stop!r}): contexts [{start}, {stop}) are "
                             f"not inside the store, which holds contexts [0, {n}) "
                             "(need 0 <= start <= stop <= n_contexts)")
        if start == stop:
            return np.zeros((0, self.spec.context_length, self.spec.sites[site]), np.float32)
        per = self.spec.contexts_per_shard
        parts = []
        for i in range(start // per, -(-stop // per)):
            lo, _ = self.spec.shard_range(i)
            block = self._load(site, i)
            parts.append(block[max(start - lo, 0): stop - lo])
        return np.concatenate(parts).astype(np.float32)

    def num_rows(self, drop_bos: bool = True) -> int:
        """Activation vectors served per epoch by `batches`."""
        return self.spec.n_contexts * (self.spec.context_length - int(drop_bos))

    def _check_site(self, site: str) -> None:
        if not isinstance(site, str) or site not in self.spec.sites:
            raise UnknownStoreSiteError(f"site {site!r} not in store {self.path}; it has "
                                        f"{sorted(self.spec.sites)}")

    def batches(self, site: str | Sequence[str], batch_size: int, *, seed: int, epoch: int = 0,
                drop_bos: bool = True, buffer_rows: int = 1 << 17, drop_remainder: bool = False,
                verify: bool = True, shards: Sequence[int] | None = None
                ) -> Iterator[np.ndarray | dict[str, np.ndarray]]:
        """One epoch of shuffled float32 batches [batch_size, d] (a dict for several sites).

        Shards are visited in a seeded random order and their rows poured into a buffer of
        about `buffer_rows`; whenever it is full it is shuffled and all but half is emitted.
        Every row is served exactly once per epoch; memory is bounded by the buffer plus a
        shard. Several sites are served with the same permutation (rows stay aligned).
        `shards` restricts the epoch to those shard indices (one process's part of the store
        in multi-process training, `interp.distributed`); all of them, in order, is the default.
        """
        sites = [site] if isinstance(site, str) else list(site)
        for s in sites:
            self._check_site(s)
        if batch_size < 1 or buffer_rows < 1:
            raise ValueError(f"batch_size and buffer_rows must be positive, got {batch_size} and "
                             f"{buffer_rows}")
        order = np.arange(self.spec.n_shards) if shards is None else np.asarray(shards, int)
        if (order.ndim != 1 or len(set(order.tolist())) != len(order)
                or not np.all((order >= 0) & (order < self.spec.n_shards))):
            raise ValueError(f"shards={shards!r}: distinct indices in 0..{self.spec.n_shards - 1} "
                             "expected")
        rng = np.random.default_rng([seed, epoch])
        pool: dict[str, list[np.ndarray]] = {s: [] for s in sites}
        pooled = 0

        def emit(rows: dict[str, np.ndarray], final: bool):
            n = len(next(iter(rows.values())))
            end = n if final else n - n % batch_size
            for lo in range(0, end, batch_size):
                if final and drop_remainder and lo + batch_size > n:
                    break
                out = {s: rows[s][lo:lo + batch_size].astype(np.float32) for s in sites}
                yield out[sites[0]] if isinstance(site, str) else out
            return {s: rows[s][end:] for s in sites}

        for index in order[rng.permutation(len(order))]:
            for s in sites:
                block = self._load(s, int(index), verify=verify)
                if drop_bos:
                    block = block[:, 1:]
                pool[s].append(block.reshape(-1, block.shape[-1]))
            pooled += len(pool[sites[0]][-1])
            if pooled >= buffer_rows:
                perm = rng.permutation(pooled)
                rows = {s: np.concatenate(pool[s])[perm] for s in sites}
                keep = min(buffer_rows // 2, pooled)
                head = {s: rows[s][: pooled - keep] for s in sites}
                rest = yield from emit(head, final=False)
                pool = {s: [rest[s], rows[s][pooled - keep:]] for s in sites}
                pooled = len(rest[sites[0]]) + keep
        if pooled:
            perm = rng.permutation(pooled)
            rows = {s: np.concatenate(pool[s])[perm] for s in sites}
            yield from emit(rows, final=True)


def open_store(path: str | os.PathLike) -> ActivationStore:
    return ActivationStore(path)
