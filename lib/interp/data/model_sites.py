"""Adapter from `interp.models` + `interp.hooks` to the store's `activation_fn` interface.

The store only needs a jittable `tokens[B, T] -> {site: [B, T, d]}`; this module builds one
that captures the requested sites through hooks and stops the forward pass after the last
layer needed (no unembedding), and names the model by a hash of its weights so the store's
cache key changes whenever the weights do.

Sites are named as `interp.hooks.Site` spells them: `"blocks.<layer>.<site>"` for per-layer
sites (e.g. `"blocks.6.resid_post"`), or the bare catalogue name for global ones (`"embed"`).
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence

import jax
import numpy as np

from interp import hooks
from interp.data.store import harvest
from interp.hooks import resolve_site


def model_id(model) -> str:
    """The model's name plus a SHA-256 of its config and weights (identifies the store)."""
    h = hashlib.sha256(repr(model.cfg).encode())
    for leaf in jax.tree.leaves(model.params):
        h.update(np.ascontiguousarray(np.asarray(leaf)).view(np.uint8).data)
    return f"{model.name}@{h.hexdigest()[:16]}"


def activation_fn(model, sites: Sequence[str], *, with_params: bool = False):
    """`tokens[B, T] -> {name: [B, T, d]}` capturing `sites` in one forward pass, or
    `(params, tokens) -> ...` with `with_params` (what `harvest_model` uses, so the weights
    are jit arguments rather than constants folded into the compiled program)."""
    parsed = {name: resolve_site(model, name) for name in sites}
    per_site: dict[str, list[int]] = {}
    for site, layer in parsed.values():
        if layer is not None:
            per_site.setdefault(site, []).append(layer)
    layer_lists = {s: tuple(sorted(set(v))) for s, v in per_site.items()}
    captures = [hooks.capture(s, layers=ls) for s, ls in layer_lists.items()]
    captures += [hooks.capture(site) for site, layer in parsed.values() if layer is None]
    needs_all = any(layer is None and site != "embed" for site, layer in parsed.values())
    stop = None if needs_all or not layer_lists else max(max(v) for v in layer_lists.values()) + 1
    hook_set = hooks.Hooks.of(*captures)

    def fn_with_params(params, tokens):
        out = model.apply(params, tokens, hook_set, stop_at_layer=stop).captures
        result = {}
        for name, (site, layer) in parsed.items():
            value = out[site]
            if layer is not None:  # captures of chosen layers come stacked [n_layers, B, T, d]
                value = value[layer_lists[site].index(layer)]
            result[name] = value
        return result

    if with_params:
        return fn_with_params
    return lambda tokens: fn_with_params(model.params, tokens)


def harvest_model(model, tokens, sites: Sequence[str], *, corpus_revision: str, **kw):
    """Harvest `sites` of a loaded `interp.models.Model` into a (cached) activation store."""
    return harvest(activation_fn(model, sites, with_params=True), tokens, model=model_id(model),
                   corpus_revision=corpus_revision, params=model.params, **kw)
