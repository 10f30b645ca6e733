"""Named sites, capture and intervention for JAX forward passes (snippet 7, Mishax-like).

Why this design: JAX model code is pure, jitted and scans over stacked layers, so
TransformerLens-style mutable Python hooks do not fit. Instead:

* A **site** is a named point of the forward pass (`"resid_pre"`, `"attn_pattern"`, ...). Each
  architecture publishes a :class:`Catalogue` of its sites; the model code marks a site with
  ``x = tag("resid_pre", x)`` and nothing else.
* A :class:`Hooks` value says what to do at the sites: which to **capture** and which
  **interventions** (pure functions ``fn(x, args, ctx, **meta) -> x``) to apply. It is a pytree:
  the site names, layers and functions are static (part of the tree structure, so ``jax.jit``
  recompiles only when *they* change), while the arguments (steering vectors, SAE parameters,
  patch sources, strengths) are leaves, so ``jax.grad`` and ``jax.vmap`` go straight through them
  and they keep whatever sharding they were given.
* Per-layer sites run inside ``jax.lax.scan``: interventions see the traced layer index and are
  applied with ``jnp.where(layer in layers, fn(x), x)``; per-layer arguments can be stacked along a
  leading layer axis (``Intervention.layer_args``). Captures of all layers come back stacked
  ``[n_layers, ...]``; captures of a few layers are kept in small buffers in the scan carry, so
  nothing else is materialised.
* With no hooks, ``tag`` is the identity at trace time: the compiled program is the same as an
  untagged one (tested), so inactive hooks cost nothing.

Example::

    from interp import hooks
    h = hooks.Hooks.of(hooks.add("resid_pre", vec, layers=(6,), positions=(0, 1, 2)),
                       hooks.capture("resid_post", layers=(6, 12)))
    out = model.forward(tokens, hooks=h)      # out.captures["resid_post"]: [2, B, T, d]
"""

from __future__ import annotations

import contextlib
import dataclasses
import re
from collections.abc import Callable, Hashable, Sequence
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np

# ----------------------------------------------------------------------------- catalogue


class UnknownSiteError(KeyError):
    """A site name that the architecture does not have; the message lists the valid names."""

    def __str__(self) -> str:  # KeyError would repr() the message
        return str(self.args[0])


@dataclasses.dataclass(frozen=True)
class SiteInfo:
    name: str
    shape: str  # symbolic shape, e.g. "[B, T, d_model]"
    doc: str
    per_layer: bool
    position_axis: int | None = 1  # which axis indexes token positions (None: no such axis)


@dataclasses.dataclass(frozen=True)
class Catalogue:
    """The named sites of one architecture, in forward order."""

    arch: str
    sites: tuple[SiteInfo, ...]

    def __getitem__(self, name: str) -> SiteInfo:
        for s in self.sites:
            if s.name == name:
                return s
        raise UnknownSiteError(
            f"unknown site {name!r} for architecture {self.arch!r}; valid sites: "
            + ", ".join(s.name for s in self.sites)
        )

    def __contains__(self, name: object) -> bool:
        return any(s.name == name for s in self.sites)

    @property
    def names(self) -> tuple[str, ...]:
        return tuple(s.name for s in self.sites)

    @property
    def layer_sites(self) -> tuple[str, ...]:
        return tuple(s.name for s in self.sites if s.per_layer)

    @property
    def global_sites(self) -> tuple[str, ...]:
        return tuple(s.name for s in self.sites if not s.per_layer)

    def describe(self) -> str:
        width = max(len(s.name) for s in self.sites)
        rows = []
        for s in self.sites:
            where = "per layer" if s.per_layer else "once"
            rows.append(f"  {s.name:<{width}}  {s.shape:<22} {where:<9}  {s.doc}")
        return "\n".join(rows)


# ----------------------------------------------------------------------------- site names

_LAYER_SITE = re.compile(r"^blocks\.(\d+)\.(\w+)$")


class Site(NamedTuple):
    """One point of the forward pass, with one spelling: ``str(site)`` is
    ``"blocks.<layer>.<name>"`` for a per-layer site (``"blocks.6.resid_post"``) and the bare
    catalogue name for a global one (``"embed"``).

    Activation stores, evaluations, feature reads and the notebooks' parameters address
    activations this way. A `Hooks` value takes ``(name, layers)`` instead, because one hook may
    cover many layers at once: ``capture(site.name, layers=site.layer)``."""

    name: str
    layer: int | None = None

    @classmethod
    def parse(cls, text: str | Site) -> Site:
        """The syntax only (`check` or `resolve_site` validate it against a model)."""
        if isinstance(text, Site):
            return text
        if not isinstance(text, str) or not text:
            raise UnknownSiteError(f"a site is a name such as 'blocks.6.resid_post' or 'embed', "
                                   f"got {text!r}")
        m = _LAYER_SITE.match(text)
        return cls(m.group(2), int(m.group(1))) if m else cls(text, None)

    def __str__(self) -> str:
        return self.name if self.layer is None else f"blocks.{self.layer}.{self.name}"

    def check(self, catalogue: Catalogue, n_layers: int) -> Site:
        """This site, if `catalogue` has it in this form and the layer exists; otherwise an
        `UnknownSiteError` that says how to write it."""
        info = catalogue[self.name]  # lists the valid names
        if info.per_layer != (self.layer is not None):
            form = "blocks.<layer>.<site>" if info.per_layer else "<site> (no layer)"
            raise UnknownSiteError(f"site {str(self)!r}: write {self.name!r} as {form}")
        if self.layer is not None and not 0 <= self.layer < n_layers:
            raise UnknownSiteError(f"site {str(self)!r}: layer {self.layer} outside "
                                   f"0..{n_layers - 1}")
        return self


def resolve_site(model, site: str | Site) -> Site:
    """`site` parsed and checked against `model`'s catalogue (``model.sites``) and depth."""
    return Site.parse(site).check(model.sites, model.cfg.n_layers)


# ----------------------------------------------------------------------------- hook spec


class SiteContext(NamedTuple):
    """What an intervention function may look at besides the value itself."""

    site: str
    layer: Any  # python int (unrolled), traced int32 scalar (inside scan), or None (global site)
    positions: jax.Array  # [T] absolute positions of the tokens of this call
    position_axis: int | None


def _layers_tuple(layers: int | Sequence[int] | None) -> tuple[int, ...] | None:
    if layers is None:
        return None
    if isinstance(layers, (int, np.integer)):
        return (int(layers),)
    out = tuple(int(layer) for layer in layers)
    if not out:
        raise ValueError("layers=() selects no layer; pass None for all layers")
    return out


@jax.tree_util.register_pytree_node_class
@dataclasses.dataclass(frozen=True)
class Intervention:
    """Apply ``fn(x, args, ctx, **dict(meta))`` at `site` (in `layers`, or every layer if None).

    `fn` and `meta` are static (hashable); `args` (a dict of arrays) and `layer_args` are
    pytree leaves (differentiable, vmappable). Every leaf of `layer_args` (a dict) has a leading
    axis with one entry per selected layer (in the order of `layers`, or one per model layer when
    `layers` is None); the entry of the current layer is merged into `args` before `fn` runs.
    """

    site: str
    fn: Callable
    args: dict = dataclasses.field(default_factory=dict)
    layers: tuple[int, ...] | None = None
    layer_args: dict | None = None
    meta: tuple[tuple[str, Hashable], ...] = ()

    def tree_flatten(self):
        return (self.args, self.layer_args), (self.site, self.fn, self.layers, self.meta)

    @classmethod
    def tree_unflatten(cls, aux, children):
        site, fn, layers, meta = aux
        return cls(site, fn, children[0], layers, children[1], meta)


@jax.tree_util.register_pytree_node_class
@dataclasses.dataclass(frozen=True)
class Hooks:
    """Interventions (applied in order) and captures ((site, layers) pairs); a pytree."""

    interventions: tuple[Intervention, ...] = ()
    captures: tuple[tuple[str, tuple[int, ...] | None], ...] = ()

    @staticmethod
    def of(*parts: Hooks | Intervention | None) -> Hooks:
        """Combine interventions and other Hooks (e.g. from `capture(...)`) into one."""
        out = Hooks()
        for p in parts:
            if p is None:
                continue
            if isinstance(p, Intervention):
                p = Hooks(interventions=(p,))
            if not isinstance(p, Hooks):
                raise TypeError(f"expected Hooks or Intervention, got {type(p).__name__}")
            out = out + p
        return out

    def __add__(self, other: Hooks) -> Hooks:
        caps = dict(self.captures)
        for site, layers in other.captures:
            if site in caps:
                old = caps[site]
                caps[site] = None if old is None or layers is None else tuple(sorted(set(old) | set(layers)))
            else:
                caps[site] = layers
        return Hooks(self.interventions + other.interventions, tuple(caps.items()))

    def tree_flatten(self):
        return (self.interventions,), self.captures

    @classmethod
    def tree_unflatten(cls, aux, children):
        return cls(tuple(children[0]), aux)

    @property
    def sites(self) -> set[str]:
        return {i.site for i in self.interventions} | {s for s, _ in self.captures}

    def validate(self, catalogue: Catalogue, n_layers: int) -> None:
        for site in sorted(self.sites):
            catalogue[site]  # raises UnknownSiteError with the valid names
        layered = [(i.site, i.layers) for i in self.interventions] + list(self.captures)
        for site, layers in layered:
            info = catalogue[site]
            if layers is not None and not info.per_layer:
                raise ValueError(f"site {site!r} occurs once per forward pass; it takes no layers")
            for layer in layers or ():
                if not 0 <= layer < n_layers:
                    raise ValueError(f"layer {layer} of site {site!r} is outside 0..{n_layers - 1}")


# ----------------------------------------------------------------------------- constructors


def capture(*sites: str, layers: int | Sequence[int] | None = None) -> Hooks:
    """Capture the given sites (all layers, or only `layers`) into ``output.captures[site]``."""
    layers = _layers_tuple(layers)
    return Hooks(captures=tuple((s, layers) for s in sites))


def _position_mask(x: jax.Array, ctx: SiteContext, positions: jax.Array | None) -> jax.Array | bool:
    """Boolean mask broadcastable to `x` selecting the given absolute positions (None: all)."""
    if positions is None:
        return True
    if ctx.position_axis is None:
        raise ValueError(f"site {ctx.site!r} has no position axis; do not pass positions")
    hit = (ctx.positions[:, None] == positions[None, :]).any(-1)  # [T]
    shape = [1] * x.ndim
    shape[ctx.position_axis] = hit.shape[0]
    return hit.reshape(shape)


def _pos(positions) -> jax.Array | None:
    return None if positions is None else jnp.atleast_1d(jnp.asarray(positions, jnp.int32))


def _split(name: str, value, per_layer: bool, shared: dict) -> tuple[dict, dict | None]:
    if per_layer:
        return shared, {name: value}
    return {**shared, name: value}, None


def _add(x, args, ctx):
    vector = jnp.asarray(args["vector"]) * args["scale"]
    positions = args["positions"]
    if positions is not None and vector.ndim == x.ndim - 1 and ctx.position_axis == 1:
        # one vector per listed position: scatter them onto the positions of this call
        onehot = (ctx.positions[:, None] == positions[None, :]).astype(vector.dtype)  # [T, P]
        delta = jnp.tensordot(onehot, vector, axes=1)[None]  # [1, T, ...]
        return x + delta.astype(x.dtype)
    return jnp.where(_position_mask(x, ctx, positions), x + vector.astype(x.dtype), x)


def add(site: str, vector, *, scale=1.0, positions=None, layers=None,
        per_layer: bool = False) -> Intervention:
    """Add ``scale * vector`` at `positions` (ActAdd steering; Turner et al. 2023).

    `vector` is broadcast against the site value (e.g. `[d_model]` for the residual stream), or,
    with `positions` of length P, may hold one vector per listed position (`[P, d_model]`, the
    ActAdd protocol of adding a prompt-difference to the front positions). Positions are absolute,
    so during generation the edit hits the prompt once, not every new token.
    With ``per_layer=True``, `vector` has a further leading axis: one entry per selected layer.
    `scale` is a leaf, so ``jax.vmap`` over strengths and ``jax.grad`` w.r.t. the vector work.
    """
    shared = {"scale": jnp.asarray(scale, jnp.float32), "positions": _pos(positions)}
    args, layer_args = _split("vector", vector, per_layer, shared)
    return Intervention(site, _add, args, _layers_tuple(layers), layer_args)


def _replace(x, args, ctx):
    value = jnp.broadcast_to(jnp.asarray(args["value"]).astype(x.dtype), x.shape)
    return jnp.where(_position_mask(x, ctx, args["positions"]), value, x)


def replace(site: str, value, *, positions=None, layers=None,
            per_layer: bool = False) -> Intervention:
    """Replace the value by `value` (broadcast) at `positions`; `per_layer` stacks one per layer."""
    args, layer_args = _split("value", value, per_layer, {"positions": _pos(positions)})
    return Intervention(site, _replace, args, _layers_tuple(layers), layer_args)


def zero_ablate(site: str, *, positions=None, layers=None) -> Intervention:
    """Set the value to zero (at `positions`)."""
    return replace(site, jnp.zeros((), jnp.float32), positions=positions, layers=layers)


def mean_ablate(site: str, mean, *, positions=None, layers=None,
                per_layer: bool = False) -> Intervention:
    """Replace the value by a precomputed mean (e.g. over a reference corpus)."""
    return replace(site, mean, positions=positions, layers=layers, per_layer=per_layer)


def patch(site: str, source, *, positions=None, layers=None) -> Intervention:
    """Activation patching: copy the values another run produced at this site.

    `source` is exactly what that run returned for ``capture(site, layers=layers)``: for a
    per-layer site it is stacked ``[n_layers_selected, ...]`` (all layers when `layers` is None),
    for a global site it is the plain value.
    """
    return Intervention(site, _replace, {"positions": _pos(positions)}, _layers_tuple(layers),
                        {"value": source})


def _splice(x, args, ctx, encode, decode, keep_error, edit):
    codes = encode(args["params"], x)
    recon = decode(args["params"], codes)
    edited = recon if edit is None else decode(args["params"], edit(codes, args["edit_args"]))
    out = edited + (x - recon) if keep_error else edited
    return jnp.where(_position_mask(x, ctx, args["positions"]), out.astype(x.dtype), x)


def splice(site: str, encode: Callable, decode: Callable, params, *, keep_error: bool = False,
           edit: Callable | None = None, edit_args=None, positions=None,
           layers=None) -> Intervention:
    """Splice an encode/decode pair (e.g. an SAE) into the forward pass at `site`.

    ``x -> decode(params, encode(params, x))``. With `edit`, the codes are changed first by
    ``edit(codes, edit_args)`` (e.g. clamp a feature). With ``keep_error=True`` the reconstruction
    error ``x - decode(encode(x))`` is added back, so only the edit changes the model (the error
    term of SAE circuit analysis). `encode`, `decode` and `edit` should be module-level functions:
    they are part of the static jit key, so a new lambda each call means a recompile.
    """
    meta = (("decode", decode), ("edit", edit), ("encode", encode), ("keep_error", bool(keep_error)))
    args = {"params": params, "edit_args": edit_args, "positions": _pos(positions)}
    return Intervention(site, _splice, args, _layers_tuple(layers), None, meta)


def apply(site: str, fn: Callable, args=None, *, layers=None, layer_args=None,
          **meta: Hashable) -> Intervention:
    """The general form: any pure ``fn(x, args, ctx, **meta) -> x`` at `site`."""
    return Intervention(site, fn, args if args is not None else {}, _layers_tuple(layers),
                        layer_args, tuple(sorted(meta.items())))

# ----------------------------------------------------------------------------- runtime

_untagged = False


@contextlib.contextmanager
def untagged():
    """Trace forward passes as if the model code had no sites: every ``tag`` is the identity.

    The baseline for measuring what inactive hook points cost (a jitted function traced inside
    this block keeps its untagged program after the block ends). Hooks passed to a forward
    traced here raise: they would be silently ignored."""
    global _untagged
    previous, _untagged = _untagged, True
    try:
        yield
    finally:
        _untagged = previous



class Tagger:
    """Trace-time helper the forward pass calls at each site (one per forward call).

    For a per-layer site inside `lax.scan`, `layer` is traced and `layer_ids` tells which model
    layers the current scan covers; per-layer captures are collected in `self.captured` for the
    driver to return through the scan (see `models.core`).
    """

    def __init__(self, hooks: Hooks | None, catalogue: Catalogue, n_layers: int,
                 positions: jax.Array):
        self.hooks = hooks or Hooks()
        self.catalogue = catalogue
        self.n_layers = n_layers
        self.positions = positions
        self.by_site: dict[str, list[Intervention]] = {}
        for iv in self.hooks.interventions:
            self.by_site.setdefault(iv.site, []).append(iv)
        self.capture_layers = dict(self.hooks.captures)
        self.captured: dict[str, jax.Array] = {}

    @property
    def active(self) -> bool:
        return bool(self.by_site or self.capture_layers)

    def tag(self, site: str, x: jax.Array, layer=None) -> jax.Array:
        if _untagged:
            if self.active:
                raise ValueError("hooks were passed to a forward traced inside hooks.untagged()")
            return x
        if site not in self.by_site and site not in self.capture_layers:
            return x  # the common case: nothing happens, nothing is traced
        info = self.catalogue[site]
        ctx = SiteContext(site, layer, self.positions, info.position_axis)
        for iv in self.by_site.get(site, ()):
            x = self._apply(iv, x, ctx)
        if site in self.capture_layers:
            self.captured[site] = x
        return x

    def _apply(self, iv: Intervention, x: jax.Array, ctx: SiteContext) -> jax.Array:
        meta = dict(iv.meta)
        layer = ctx.layer
        if layer is None:  # a global site: per-layer arguments are the plain value
            args = iv.args if iv.layer_args is None else {**iv.args, **iv.layer_args}
            return iv.fn(x, args, ctx, **meta)
        static_layer = isinstance(layer, (int, np.integer))
        if static_layer and iv.layers is not None and layer not in iv.layers:
            return x  # unrolled forward: decided at trace time
        args = iv.args
        if iv.layer_args is not None:
            if iv.layers is None:
                idx = layer
            elif static_layer:
                idx = iv.layers.index(layer)
            else:
                table = np.zeros(self.n_layers, np.int32)
                table[list(iv.layers)] = np.arange(len(iv.layers))
                idx = jnp.asarray(table)[layer]
            args = {**args, **jax.tree.map(lambda a: a[idx], iv.layer_args)}
        y = iv.fn(x, args, ctx, **meta)
        if static_layer or iv.layers is None:
            return y
        return jnp.where(jnp.isin(layer, jnp.asarray(iv.layers, jnp.int32)), y, x)
