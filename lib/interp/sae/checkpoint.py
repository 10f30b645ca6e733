"""Checkpoints and the SAELens on-disk layout.

A checkpoint is one safetensors file holding every array of the `TrainState` (params, Adam
moments, step, RNG key, firing counters, ...) with the full config, the sweep (if any), the
metric history and the data position in its metadata, so it describes itself. It is written to
a temporary file and renamed, so a crash never leaves a half-written checkpoint and the last
good one survives. `config.json` next to it repeats the config for humans.

`export_saelens` / `import_saelens` read and write SAELens' `cfg.json` + `sae_weights.safetensors`
(parameter names and shapes as in SAELens: W_enc [d_in, d_sae], W_dec [d_sae, d_in]).
"""

from __future__ import annotations

import json
from pathlib import Path

import jax
import numpy as np
from safetensors import SafetensorError
from safetensors.numpy import load as st_load
from safetensors.numpy import save as st_save

from ..cache import atomic_write_bytes
from . import registry
from .config import SAEConfig
from .model import SAE

FORMAT = "interp.sae.checkpoint/1"
CHECKPOINT_FILE = "checkpoint.safetensors"
DICT_FIELDS = ("params", "adam_m", "adam_v", "metric_sums")


def _flatten(state) -> dict[str, np.ndarray]:
    arrays = {}
    for name, value in state._asdict().items():
        if name in DICT_FIELDS:
            for k, v in value.items():
                arrays[f"{name}/{k}"] = np.array(jax.device_get(v), order="C")
        else:
            arrays[name] = np.array(jax.device_get(value), order="C")
    return arrays


def _unflatten(arrays: dict[str, np.ndarray]):
    import jax.numpy as jnp

    from .training import TrainState

    fields = {}
    for name in TrainState._fields:
        if name in DICT_FIELDS:
            prefix = f"{name}/"
            fields[name] = {k[len(prefix):]: jnp.asarray(v) for k, v in arrays.items()
                            if k.startswith(prefix)}
        else:
            fields[name] = jnp.asarray(arrays[name])
    return TrainState(**fields)


def save_checkpoint(checkpoint_dir, state, config: SAEConfig, history: dict | None = None,
                    sweep: dict | None = None) -> Path:
    """Write `checkpoint_dir/checkpoint.safetensors` atomically; returns its path."""
    folder = Path(checkpoint_dir)
    folder.mkdir(parents=True, exist_ok=True)
    step = int(np.max(np.asarray(jax.device_get(state.step))))
    metadata = {
        "format": FORMAT, "config": config.to_json(), "sweep": json.dumps(sweep),
        "history": json.dumps(history or {}), "step": str(step), "data_position": str(step),
    }
    path = folder / CHECKPOINT_FILE
    atomic_write_bytes(path, st_save(_flatten(state), metadata=metadata))
    human = {"config": config.to_dict(), "sweep": sweep, "step": step}
    atomic_write_bytes(folder / "config.json", json.dumps(human, indent=2).encode())
    return path


def load_checkpoint(checkpoint_dir):
    """(state, config, history, sweep) from a checkpoint folder (or the file itself)."""
    from safetensors import safe_open

    path = Path(checkpoint_dir)
    if path.is_dir():
        path = path / CHECKPOINT_FILE
    if not path.exists():
        raise FileNotFoundError(f"no SAE checkpoint at {path}")
    try:
        with safe_open(str(path), framework="numpy") as f:
            metadata = f.metadata() or {}
        arrays = st_load(path.read_bytes())
    except (SafetensorError, OSError, ValueError) as e:
        raise ValueError(f"SAE checkpoint {path} is corrupt or not a safetensors file: {e}") from e
    if metadata.get("format") != FORMAT:
        raise ValueError(f"{path}: not an interp SAE checkpoint (format="
                         f"{metadata.get('format')!r}, expected {FORMAT!r})")
    config = SAEConfig.from_dict(json.loads(metadata["config"]))
    try:
        state = _unflatten(arrays)
    except KeyError as e:
        raise ValueError(f"SAE checkpoint {path} lacks array {e}") from e
    return state, config, json.loads(metadata["history"]), json.loads(metadata["sweep"])


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
    import jax.numpy as jnp

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
