"""Architecture registry: name -> module exposing init, encode, pre_activations, forward and
FEATURE_AXES (one architecture per file, as in SAELens v6)."""

from __future__ import annotations

from types import ModuleType

from . import gated, relu, topk

ARCHITECTURES: dict[str, ModuleType] = {"relu": relu, "gated": gated, "topk": topk}


def get(name: str) -> ModuleType:
    try:
        return ARCHITECTURES[name]
    except KeyError:
        raise ValueError(
            f"architecture={name!r}: unknown; allowed: {', '.join(ARCHITECTURES)}") from None
