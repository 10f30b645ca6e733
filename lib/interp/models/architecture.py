"""What `interp.models` expects of an architecture module (`llama.py`, `gemma3.py`).

An architecture is a plain module of pure functions over a params dict, so that one driver
(`core.forward`) can run every model with the same hooks, layer scan, KV cache and
`start_at_layer` / `stop_at_layer`. To add one, write a module that satisfies `Architecture`
and register it in `interp.models.ARCHS` (see "How to add a model" in the README);
`tests/test_extension_points.py` checks every registered module against this protocol.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, Protocol, runtime_checkable

import jax
import numpy as np

from interp.hooks import Catalogue
from interp.models.core import Config

Tag = Callable[..., jax.Array]
"""``tag(site, x) -> x``: the only way model code exposes a site (`interp.hooks.Tagger`)."""


@runtime_checkable
class Architecture(Protocol):
    SITES: Catalogue
    """The named sites the model code tags, in forward order (`core.standard_sites`)."""
    TINY: Config
    """A small random configuration for tests (`models.load("tiny-<arch>")`)."""

    def embed(self, params: dict, tokens: jax.Array, cfg: Config) -> jax.Array:
        """Token ids [B, T] -> the residual stream entering layer 0, [B, T, d_model]."""

    def block(self, p: dict, x: jax.Array, cfg: Config, tag: Tag, positions: jax.Array,
              const: dict, kv: dict | None) -> tuple[jax.Array, dict | None]:
        """One layer: `p` its weights (sliced from the stacked params), `const` its entries of
        `cfg.layer_constants()`, `kv` its cache slice or None. Tags every per-layer site."""

    def head(self, params: dict, x: jax.Array, cfg: Config, tag: Tag) -> jax.Array:
        """Final norm and unembedding: residual [B, T, d] -> logits [B, T, vocab]."""

    def config_from_gguf(self, meta: dict[str, Any]) -> Config:
        """The Config from a GGUF file's metadata."""

    def convert(self, tensors: dict[str, np.ndarray], cfg: Config) -> dict:
        """GGUF tensors -> params, with per-layer weights stacked on a leading layer axis."""

    def init_params(self, cfg: Config, seed: int) -> dict:
        """Random params of the same structure as `convert`'s (for TINY test models)."""
