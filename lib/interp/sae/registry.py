"""Architecture registry: name -> module satisfying `architecture.SAEArchitecture` (init,
pre_activations, encode, forward, FEATURE_AXES, SAELENS_NAME; one architecture per file, as in
SAELens v6)."""

from __future__ import annotations

from . import gated, relu, topk
from .architecture import SAEArchitecture

ARCHITECTURES: dict[str, SAEArchitecture] = {"relu": relu, "gated": gated, "topk": topk}


def get(name: str) -> SAEArchitecture:
    try:
        return ARCHITECTURES[name]
    except KeyError:
        raise ValueError(
            f"architecture={name!r}: unknown; allowed: {', '.join(ARCHITECTURES)}") from None
