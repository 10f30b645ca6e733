"""Toy models with known ground-truth features, for judging SAEs (snippet 4 of the update).

- `tms`: the ReLU-output model of Toy Models of Superposition (Elhage et al. 2022).
- `tracr_models`: real RASP programs compiled by Tracr, run as JAX with labelled residuals.
- `tracr_compression`: a learned projection that narrows a compiled model's residual stream.
- `recovery`: how well a learned dictionary matches the true features (MMCS and friends).

Submodules are imported on first use, so `import interp.toy` does not import Tracr/haiku.
"""

import importlib

__all__ = ["tms", "tracr_models", "tracr_compression", "recovery"]


def __getattr__(name):
    if name in __all__:
        return importlib.import_module(f"{__name__}.{name}")
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
