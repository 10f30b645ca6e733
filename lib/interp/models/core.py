"""The architecture-independent forward driver: embed, scan over stacked layers, unembed.

Why one driver: both architectures are "embed -> N identical blocks -> norm -> tied unembed";
only the block differs. Stacking per-layer weights (`params["layers"][name]` has a leading
`[n_layers]` axis) lets the blocks run under `jax.lax.scan` (compile one block, not N) while the
hooks of `interp.hooks` still see every layer. `unroll=True` runs a Python loop instead: the
reference the scan is tested against.

The surface later code builds on:

* `stop_at_layer=l` returns the residual stream *entering* layer `l` (`resid_pre` of `l`), with
  no logits: harvesting activations costs only the layers it needs.
* `start_at_layer=l, resid=x` resumes from that residual: cheap splicing evaluations.
* `cache=` (from `init_cache`) makes it an incremental decoder for generation.
"""

from __future__ import annotations

import dataclasses
from types import ModuleType
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np

from interp.hooks import Catalogue, Hooks, SiteInfo, Tagger


@dataclasses.dataclass(frozen=True)
class Config:
    """Sizes and constants of one model. Hashable, so it can be a static jit argument."""

    arch: str  # "llama" or "gemma3"
    n_layers: int
    d_model: int
    d_ff: int
    n_heads: int
    n_kv_heads: int
    head_dim: int
    vocab_size: int
    norm_eps: float
    rope_base: float  # global layers (all layers for Llama)
    context_length: int
    rope_local_base: float | None = None  # Gemma 3 local layers (not in the GGUF: 10000)
    sliding_window: int | None = None  # Gemma 3 local layers (not in the GGUF: 512)
    global_every: int | None = None  # Gemma 3: layer i is global when (i + 1) % 6 == 0
    bos_id: int | None = None
    eos_id: int | None = None
    add_bos: bool = False

    def is_global(self, layer: int) -> bool:
        return self.global_every is None or (layer + 1) % self.global_every == 0

    def layer_constants(self) -> dict[str, np.ndarray]:
        """Per-layer constants scanned alongside the weights (rope base, attention window)."""
        glob = np.array([self.is_global(i) for i in range(self.n_layers)])
        local_base = self.rope_local_base or self.rope_base
        big = np.iinfo(np.int32).max
        return {
            "rope_base": np.where(glob, self.rope_base, local_base).astype(np.float32),
            "window": np.where(glob, big, self.sliding_window or big).astype(np.int32),
        }

    def to_json(self) -> dict:
        return dataclasses.asdict(self)


class Output(NamedTuple):
    """What `forward` returns. `logits` is None when the run stops before the last layer."""

    logits: jax.Array | None
    resid: jax.Array  # residual stream after the last layer run (before the final norm)
    captures: dict[str, jax.Array]
    cache: dict[str, jax.Array] | None


def standard_sites(arch: str, extra: tuple[SiteInfo, ...] = ()) -> Catalogue:
    """The site catalogue shared by both architectures (Mishax-like names, forward order)."""
    resid = "[B, T, d_model]"
    per_layer = [
        SiteInfo("resid_pre", resid, "residual stream entering the layer", True),
        SiteInfo("attn_in", resid, "normalised input to attention", True),
        SiteInfo("q", "[B, T, H, head_dim]", "queries, after rotary (and Gemma's QK-norm)", True),
        SiteInfo("k", "[B, T, H_kv, head_dim]", "keys of this call, after rotary (and QK-norm)", True),
        SiteInfo("v", "[B, T, H_kv, head_dim]", "values of this call", True),
        SiteInfo("attn_scores", "[B, H, T, S]", "scaled q.k before mask and softmax", True, 2),
        SiteInfo("attn_pattern", "[B, H, T, S]", "attention probabilities", True, 2),
        SiteInfo("attn_z", "[B, T, H, head_dim]", "per-head mixed values (before W_O)", True),
        SiteInfo("attn_out", resid, "attention output added to the residual stream", True),
        SiteInfo("resid_mid", resid, "residual stream after attention, before the MLP", True),
        SiteInfo("mlp_in", resid, "normalised input to the MLP", True),
        SiteInfo("mlp_pre_act", "[B, T, d_ff]", "gate pre-activation", True),
        SiteInfo("mlp_hidden", "[B, T, d_ff]", "act(gate) * up: the MLP's hidden layer", True),
        SiteInfo("mlp_out", resid, "MLP output added to the residual stream", True),
        SiteInfo("resid_post", resid, "residual stream leaving the layer", True),
    ]
    sites = (
        SiteInfo("embed", resid, "token embeddings (input of layer 0)", False),
        *per_layer,
        *extra,
        SiteInfo("final_norm", resid, "final RMSNorm output (input of the unembedding)", False),
        SiteInfo("logits", "[B, T, vocab]", "next-token logits", False),
    )
    return Catalogue(arch, sites)


def init_cache(cfg: Config, batch: int, max_len: int, dtype=jnp.float32) -> dict[str, jax.Array]:
    """An empty KV cache for `max_len` positions: `{"k", "v"}` of `[L, B, S, H_kv, head_dim]`."""
    shape = (cfg.n_layers, batch, max_len, cfg.n_kv_heads, cfg.head_dim)
    return {"k": jnp.zeros(shape, dtype), "v": jnp.zeros(shape, dtype)}


def forward(
    arch: ModuleType,
    params: dict,
    tokens: jax.Array | None,
    cfg: Config,
    hooks: Hooks | None = None,
    *,
    positions: jax.Array | None = None,
    cache: dict[str, jax.Array] | None = None,
    start_at_layer: int = 0,
    stop_at_layer: int | None = None,
    resid: jax.Array | None = None,
    unroll: bool = False,
) -> Output:
    """Run `arch` (a module with `embed`, `block`, `head`, `SITES`) on `tokens [B, T]`.

    `positions [T]` defaults to `0..T-1`; with a `cache`, the new keys/values are written at
    `positions[0]` onwards and the returned `Output.cache` holds them. Static arguments
    (`cfg`, `start_at_layer`, `stop_at_layer`, `unroll`, the structure of `hooks`) pick the
    compiled program; everything else is traced.
    """
    n = cfg.n_layers
    stop = n if stop_at_layer is None else int(stop_at_layer)
    start = int(start_at_layer)
    if not 0 <= start <= stop <= n:
        raise ValueError(f"need 0 <= start_at_layer ({start}) <= stop_at_layer ({stop}) <= {n}")
    if start > 0 and resid is None:
        raise ValueError(f"start_at_layer={start} needs the residual entering that layer (resid=...)")
    hooks = hooks or Hooks()
    hooks.validate(arch.SITES, n)

    if resid is not None:
        x = jnp.asarray(resid, jnp.float32)
    else:
        if tokens is None:
            raise ValueError("pass tokens, or resid= with start_at_layer")
        tokens = jnp.asarray(tokens)
        if tokens.ndim != 2:
            raise ValueError(f"tokens must be [batch, seq], got shape {tokens.shape}")
        x = None
    seq = (tokens.shape[1] if x is None else x.shape[1])
    if positions is None:
        positions = jnp.arange(seq, dtype=jnp.int32)
    tagger = Tagger(hooks, arch.SITES, n, positions)
    if x is None:
        x = tagger.tag("embed", arch.embed(params, tokens, cfg))

    _check_capture_layers(hooks, arch.SITES, start, stop)
    consts = {k: jnp.asarray(v[start:stop]) for k, v in cfg.layer_constants().items()}
    layer_params = jax.tree.map(lambda w: w[start:stop], params["layers"])
    kv = None if cache is None else {k: v[start:stop] for k, v in cache.items()}
    run = _run_unrolled if unroll else _run_scan
    if start == stop:  # no layer to run: only `embed` (stop_at_layer=0) or only the head
        layer_caps, kv_out = {}, None
    else:
        x, layer_caps, kv_out = run(arch, layer_params, consts, kv, x, cfg, tagger, positions,
                                    start, stop)

    new_cache = None
    if cache is not None:
        new_cache = (dict(cache) if kv_out is None
                     else {k: cache[k].at[start:stop].set(kv_out[k]) for k in cache})
    logits = None
    if stop == n:
        logits = arch.head(params, x, cfg, tagger.tag)
    captures = {**{k: v for k, v in tagger.captured.items()}, **layer_caps}
    return Output(logits, x, captures, new_cache)


def _check_capture_layers(hooks: Hooks, sites: Catalogue, start: int, stop: int) -> None:
    for site, layers in hooks.captures:
        if sites[site].per_layer and layers is not None:
            outside = [layer for layer in layers if not start <= layer < stop]
            if outside:
                raise ValueError(
                    f"capture of {site!r} at layers {outside} but this call runs layers {start}..{stop - 1}"
                )


def _layer_caps_requested(tagger: Tagger) -> dict[str, tuple[int, ...] | None]:
    return {s: l for s, l in tagger.capture_layers.items() if tagger.catalogue[s].per_layer}


def _run_unrolled(arch, layer_params, consts, kv, x, cfg, tagger, positions, start, stop):
    requested = _layer_caps_requested(tagger)
    per_layer: dict[str, list] = {s: [] for s in requested}
    kv_out = {"k": [], "v": []} if kv is not None else None
    outer = tagger.captured
    for i, layer in enumerate(range(start, stop)):
        tagger.captured = {}
        p = jax.tree.map(lambda w: w[i], layer_params)
        kv_l = None if kv is None else {k: v[i] for k, v in kv.items()}
        c = {k: v[i] for k, v in consts.items()}
        x, kv_l = arch.block(p, x, cfg, _bind(tagger, layer), positions, c, kv_l)
        for s, layers in requested.items():
            if layers is None or layer in layers:
                per_layer[s].append(tagger.captured[s])
        if kv_out is not None:
            kv_out["k"].append(kv_l["k"])
            kv_out["v"].append(kv_l["v"])
    tagger.captured = outer
    caps = {s: jnp.stack(v) for s, v in per_layer.items() if v}
    if kv_out is not None:
        kv_out = {k: jnp.stack(v) for k, v in kv_out.items()}
    return x, caps, kv_out


def _run_scan(arch, layer_params, consts, kv, x, cfg, tagger, positions, start, stop):
    requested = _layer_caps_requested(tagger)
    stacked = [s for s, layers in requested.items() if layers is None]  # all layers: scan outputs
    buffered = {s: layers for s, layers in requested.items() if layers is not None}
    outer = tagger.captured

    def body_raw(x, xs):
        p, c, kv_l, layer = xs
        tagger.captured = {}
        x, kv_l = arch.block(p, x, cfg, _bind(tagger, layer), positions, c, kv_l)
        return x, kv_l, tagger.captured

    xs0 = jax.tree.map(lambda a: a[0], (layer_params, consts, kv))
    bufs = {}
    if buffered:  # small carried buffers: only the requested layers are ever stored
        shapes = jax.eval_shape(lambda x, xs: body_raw(x, xs)[2], x, (*xs0, jnp.int32(start)))
        bufs = {s: jnp.zeros((len(layers), *shapes[s].shape), shapes[s].dtype)
                for s, layers in buffered.items()}
    tables = {}
    for s, layers in buffered.items():
        t = np.full(cfg.n_layers, -1, np.int32)
        t[list(layers)] = np.arange(len(layers))
        tables[s] = jnp.asarray(t)

    def body(carry, xs):
        x, bufs = carry
        layer = xs[3]
        x, kv_l, caps = body_raw(x, xs)
        new_bufs = {}
        for s, buf in bufs.items():
            i = tables[s][layer]
            j = jnp.maximum(i, 0)
            val = jnp.where(i >= 0, caps[s], jax.lax.dynamic_index_in_dim(buf, j, 0, keepdims=False))
            new_bufs[s] = jax.lax.dynamic_update_index_in_dim(buf, val, j, 0)
        return (x, new_bufs), (kv_l, {s: caps[s] for s in stacked})

    layer_ids = jnp.arange(start, stop, dtype=jnp.int32)
    (x, bufs), (kv_out, ys) = jax.lax.scan(body, (x, bufs), (layer_params, consts, kv, layer_ids))
    tagger.captured = outer
    return x, {**ys, **bufs}, kv_out


def _bind(tagger: Tagger, layer: Any):
    def tag(site: str, value: jax.Array) -> jax.Array:
        return tagger.tag(site, value, layer)

    return tag
