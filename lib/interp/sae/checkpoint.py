"""Checkpoints and the SAELens on-disk layout.

A checkpoint is one safetensors file holding every array of the `TrainState` (params, Adam
moments, step, RNG key, firing counters, ...) with the full config, the sweep (if any), the
metric history and the data position in its metadata, so it describes itself. It is written to
a temporary file and renamed, so a crash never leaves a half-written checkpoint and the last
good one survives. `config.json` next to it repeats the config for humans.

Integrity: the metadata also records the sha256 of every array and of the other metadata
fields. `load_checkpoint` checks them, then checks that the arrays are exactly those the config
(and sweep) call for, with the right shapes and dtypes, and that parameters and Adam moments
are finite; any failure raises `CorruptCheckpointError` naming the file and what to delete.
`save_checkpoint` refuses non-finite parameters (`NonFiniteParamsError`), so the last good
checkpoint is never overwritten by a diverged one. Checkpoints of the older format without
checksums still load after every other check (with a warning): they hold finished training
runs, and refusing them would throw that work away for a check they were never given.

`export_saelens` / `import_saelens` read and write SAELens' `cfg.json` + `sae_weights.safetensors`
(parameter names and shapes as in SAELens: W_enc [d_in, d_sae], W_dec [d_sae, d_in]).
"""

from __future__ import annotations

import json
import warnings
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np
from safetensors import SafetensorError
from safetensors.numpy import load as st_load
from safetensors.numpy import save as st_save

from ..cache import CorruptCacheError, atomic_write_bytes, bytes_sha256
from . import registry
from .config import SAEConfig
from .model import SAE
from .state import NonFiniteParamsError, TrainState, init_state, sweep_configs

FORMAT = "interp.sae.checkpoint/2"           # arrays and metadata carry sha256 checksums
LEGACY_FORMATS = ("interp.sae.checkpoint/1",)  # no checksums: every other check still runs
CHECKPOINT_FILE = "checkpoint.safetensors"
DICT_FIELDS = ("params", "adam_m", "adam_v", "metric_sums")
FINITE_FIELDS = ("params", "adam_m", "adam_v")  # non-finite values here mean a diverged run
CHECKSUM_KEY = "sha256"
METADATA_KEYS = ("config", "sweep", "history", "step")


class CorruptCheckpointError(CorruptCacheError):
    """An SAE checkpoint is unreadable, incomplete, inconsistent with its own config or fails
    its checksums; the message names the file and what to delete to retrain."""


def _named_leaves(state):
    """(name, leaf) for every array of a TrainState: "params/W_dec", "step", ..."""
    for name, value in state._asdict().items():
        if name in DICT_FIELDS:
            for k, v in value.items():
                yield f"{name}/{k}", v
        else:
            yield name, value


def _flatten(state) -> dict[str, np.ndarray]:
    return {name: np.array(jax.device_get(v), order="C") for name, v in _named_leaves(state)}


def _unflatten(arrays: dict[str, np.ndarray]):
    fields = {}
    for name in TrainState._fields:
        if name in DICT_FIELDS:
            prefix = f"{name}/"
            fields[name] = {k[len(prefix):]: jnp.asarray(v) for k, v in arrays.items()
                            if k.startswith(prefix)}
        else:
            fields[name] = jnp.asarray(arrays[name])
    return TrainState(**fields)


def _array_sha256(a: np.ndarray) -> str:
    return bytes_sha256(np.ascontiguousarray(a).tobytes())


def _metadata_sha256(metadata: dict[str, str]) -> str:
    """Checksum of every metadata field except the checksum record itself."""
    rest = {k: v for k, v in metadata.items() if k != CHECKSUM_KEY}
    return bytes_sha256(json.dumps(rest, sort_keys=True).encode())


def nonfinite_arrays(arrays: dict[str, np.ndarray]) -> list[str]:
    """Names of parameter / Adam-moment arrays holding NaN or inf."""
    return [name for name, a in arrays.items()
            if name.split("/")[0] in FINITE_FIELDS and not np.all(np.isfinite(a))]


def save_checkpoint(checkpoint_dir, state, config: SAEConfig, history: dict | None = None,
                    sweep: dict | None = None) -> Path:
    """Write `checkpoint_dir/checkpoint.safetensors` atomically; returns its path. Raises
    `NonFiniteParamsError` (writing nothing) if a parameter or Adam moment is not finite."""
    folder = Path(checkpoint_dir)
    arrays = _flatten(state)
    bad = nonfinite_arrays(arrays)
    if bad:
        raise NonFiniteParamsError(
            f"refusing to write a checkpoint to {folder}: non-finite (NaN/inf) values in "
            f"{', '.join(bad)}; the checkpoint already there (if any) is kept")
    folder.mkdir(parents=True, exist_ok=True)
    step = int(np.max(arrays["step"]))
    metadata = {
        "format": FORMAT, "config": config.to_json(), "sweep": json.dumps(sweep),
        "history": json.dumps(history or {}), "step": str(step), "data_position": str(step),
    }
    metadata[CHECKSUM_KEY] = json.dumps({
        "arrays": {name: _array_sha256(a) for name, a in arrays.items()},
        "metadata": _metadata_sha256(metadata)}, sort_keys=True)
    path = folder / CHECKPOINT_FILE
    atomic_write_bytes(path, st_save(arrays, metadata=metadata))
    human = {"config": config.to_dict(), "sweep": sweep, "step": step}
    atomic_write_bytes(folder / "config.json", json.dumps(human, indent=2).encode())
    return path


def load_checkpoint(checkpoint_dir):
    """(state, config, history, sweep) from a checkpoint folder (or the file itself).
    `CorruptCheckpointError` if it fails any integrity check (see the module docstring)."""
    path = Path(checkpoint_dir)
    if path.is_dir():
        path = path / CHECKPOINT_FILE
    if not path.exists():
        raise FileNotFoundError(f"no SAE checkpoint at {path}")
    metadata, arrays = _read(path)
    if metadata["format"] in LEGACY_FORMATS:
        warnings.warn(f"SAE checkpoint {path} predates checksums (format "
                      f"{metadata['format']}); its structure was checked but a flipped byte "
                      "would go unnoticed. It gains checksums when next saved.", stacklevel=2)
    else:
        _verify_checksums(path, metadata, arrays)
    config, history, sweep = _parse_metadata(path, metadata)
    _verify_arrays(path, arrays, config, sweep)
    return _unflatten(arrays), config, history, sweep


def _corrupt(path: Path, problem: str) -> CorruptCheckpointError:
    return CorruptCheckpointError(path, f"SAE checkpoint {problem}",
                                  then="and train again from scratch")


def _read(path: Path) -> tuple[dict[str, str], dict[str, np.ndarray]]:
    from safetensors import safe_open

    try:
        with safe_open(str(path), framework="numpy") as f:
            metadata = f.metadata() or {}
        arrays = st_load(path.read_bytes())
    except (SafetensorError, OSError, ValueError) as e:
        raise _corrupt(path, f"is corrupt or not a safetensors file ({e})") from e
    if metadata.get("format") not in (FORMAT, *LEGACY_FORMATS):
        raise _corrupt(path, f"has format={metadata.get('format')!r} in its metadata, expected "
                             f"{FORMAT!r}: not an interp SAE checkpoint or a damaged header")
    return metadata, arrays


def _verify_checksums(path: Path, metadata: dict[str, str], arrays: dict[str, np.ndarray]):
    try:
        record = json.loads(metadata[CHECKSUM_KEY])
        expected, meta_digest = record["arrays"], record["metadata"]
    except (KeyError, TypeError, json.JSONDecodeError) as e:
        raise _corrupt(path, f"has a missing or unreadable checksum record ({e!r})") from e
    if _metadata_sha256(metadata) != meta_digest:
        raise _corrupt(path, "metadata (config, sweep, history, step) fails its sha256 check")
    missing = sorted(set(expected) - set(arrays))
    if missing:
        raise _corrupt(path, f"lacks array(s) {', '.join(missing)}")
    for name, a in arrays.items():
        if name not in expected:
            raise _corrupt(path, f"holds array {name} that was not saved with it")
        if _array_sha256(a) != expected[name]:
            raise _corrupt(path, f"array {name} fails its sha256 check")


def _parse_metadata(path: Path, metadata: dict[str, str]):
    missing = [k for k in METADATA_KEYS if k not in metadata]
    if missing:
        raise _corrupt(path, f"metadata lacks {', '.join(missing)}")
    try:
        config = SAEConfig.from_dict(json.loads(metadata["config"]))
    except (json.JSONDecodeError, TypeError, ValueError, AttributeError) as e:
        raise _corrupt(path, f"metadata has an invalid config ({e})") from e
    try:
        history, sweep = json.loads(metadata["history"]), json.loads(metadata["sweep"])
    except json.JSONDecodeError as e:
        raise _corrupt(path, f"metadata has unreadable history or sweep ({e})") from e
    if not isinstance(history, dict) or not (sweep is None or isinstance(sweep, dict)):
        raise _corrupt(path, "metadata history must be a dict and sweep a dict or null")
    return config, history, sweep


def expected_arrays(config: SAEConfig, sweep: dict | None) -> dict[str, jax.ShapeDtypeStruct]:
    """Name -> shape and dtype of every array a checkpoint of this config (and sweep) holds."""
    stats = {"input_scale": 1.0, "input_sq_norm": 1.0,
             "mean": np.zeros((config.d_in,), np.float32)}
    state = jax.eval_shape(lambda: init_state(config, stats, config.seed))
    lead = (len(sweep_configs(config, sweep)),) if sweep else ()
    return {name: jax.ShapeDtypeStruct(lead + tuple(spec.shape), spec.dtype)
            for name, spec in _named_leaves(state)}


def _verify_arrays(path: Path, arrays: dict[str, np.ndarray], config: SAEConfig, sweep):
    try:
        expected = expected_arrays(config, sweep)
    except ValueError as e:
        raise _corrupt(path, f"metadata has an invalid sweep ({e})") from e
    missing = sorted(set(expected) - set(arrays))
    if missing:
        raise _corrupt(path, f"lacks array(s) {', '.join(missing)} that its config calls for")
    extra = sorted(set(arrays) - set(expected))
    if extra:
        raise _corrupt(path, f"holds array(s) {', '.join(extra)} that its config does not "
                             f"have (architecture={config.architecture!r})")
    for name, spec in expected.items():
        a = arrays[name]
        if tuple(a.shape) != tuple(spec.shape) or a.dtype != np.dtype(spec.dtype):
            raise _corrupt(path, f"array {name} is {a.dtype}{list(a.shape)} but its config "
                                 f"calls for {np.dtype(spec.dtype)}{list(spec.shape)}")
    bad = nonfinite_arrays(arrays)
    if bad:
        raise _corrupt(path, f"holds non-finite (NaN/inf) values in {', '.join(bad)}")


# --------------------------------------------------------------------------- SAELens layout
_FROM_SAELENS = {"standard": "relu", "gated": "gated", "topk": "topk"}


def export_saelens(sae: SAE, folder, *, model_name: str | None = None,
                   hook_name: str | None = None) -> Path:
    """Write `cfg.json` and `sae_weights.safetensors` in SAELens' layout (float32)."""
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    cfg = sae.config
    arch = registry.get(cfg.architecture)
    saelens_cfg = {
        "architecture": arch.SAELENS_NAME, "d_in": cfg.d_in, "d_sae": cfg.d_sae,
        "dtype": "float32", "device": "cpu", "apply_b_dec_to_input": cfg.pre_encoder_bias,
        "normalize_activations": "none", "reshape_activations": "none",
        "metadata": {"model_name": model_name, "hook_name": hook_name,
                     "interp_config": cfg.to_dict()},
    }
    if cfg.architecture == "topk":
        saelens_cfg.update(k=cfg.k, rescale_acts_by_decoder_norm=False)
    weights = {k: np.array(jax.device_get(v), np.float32, order="C")
               for k, v in sae.params.items()}
    atomic_write_bytes(folder / "sae_weights.safetensors", st_save(weights))
    atomic_write_bytes(folder / "cfg.json", json.dumps(saelens_cfg, indent=2).encode())
    return folder


def import_saelens(folder) -> SAE:
    """Load an SAE saved in SAELens' layout (standard, gated or topk architectures)."""
    folder = Path(folder)
    for name in ("cfg.json", "sae_weights.safetensors"):
        if not (folder / name).exists():
            raise FileNotFoundError(f"SAELens folder {folder} lacks {name}")
    raw = json.loads((folder / "cfg.json").read_text())
    arch_name = raw.get("architecture", "standard")
    if arch_name not in _FROM_SAELENS:
        raise ValueError(f"cfg.json architecture={arch_name!r} is not supported; supported: "
                         f"{', '.join(_FROM_SAELENS)}")
    norm = raw.get("normalize_activations", "none")
    if norm not in (None, "none"):
        raise ValueError(f"cfg.json normalize_activations={norm!r}: fold the normalisation "
                         "into the weights first (only 'none' is supported)")
    ours = (raw.get("metadata") or {}).get("interp_config")
    if ours is not None:
        config = SAEConfig.from_dict(ours)
    else:
        extra = {"k": int(raw["k"])} if arch_name == "topk" else {}
        config = SAEConfig(d_in=int(raw["d_in"]), d_sae=int(raw["d_sae"]),
                           architecture=_FROM_SAELENS[arch_name],
                           pre_encoder_bias=bool(raw.get("apply_b_dec_to_input", True)), **extra)
    weights = st_load((folder / "sae_weights.safetensors").read_bytes())
    expected = jax.eval_shape(lambda: registry.get(config.architecture).init(
        jax.random.PRNGKey(0), config))
    missing = sorted(set(expected) - set(weights))
    if missing:
        raise ValueError(f"{folder}/sae_weights.safetensors lacks {missing}")
    for k, spec in expected.items():
        if tuple(weights[k].shape) != tuple(spec.shape):
            raise ValueError(f"{folder}: {k} has shape {weights[k].shape}, expected {spec.shape}")
    return SAE({k: jnp.asarray(weights[k], jnp.float32) for k in expected}, config)
