"""The same Llama weights as a penzai model: interventions by model surgery, for comparison.

Why: snippet 7 of GDM's Progress Update #1 contrasts two ways to edit a forward pass, tagged
sites with callbacks (Mishax; here `interp.hooks`) and rewriting the model as data (penzai).
Loading our weights into penzai's `llamalike_common` transformer lets one intervention be done
both ways and the logits compared. `intercepting` adds the third way, Mishax's: callbacks wrapped
around a penzai layer class at trace time, so penzai's own (optionally scanned) model is
instrumented under jit without editing or rebuilding it.

Two conventions differ and are converted here, not in the model code:

* rotary: our Llama (GGUF weights) rotates *adjacent* pairs `(2i, 2i+1)`; penzai's `ApplyRoPE`
  rotates the two halves `(i, i + hd/2)`. Permuting each head's Q and K columns to
  `[0, 2, 4, ..., 1, 3, 5, ...]` turns one into the other, and leaves `q . k` unchanged
  (the same permutation is applied to both).
* tied head: penzai's `tie_embedder_and_logits` also scales the embeddings by `sqrt(d)`
  (Gemma's convention), so we build an untied model and copy the embedding into `lm_head`.
"""

from __future__ import annotations

import contextlib
import dataclasses
from collections.abc import Callable, Iterator

import jax
import jax.numpy as jnp
import numpy as np
from jax.experimental import io_callback
from penzai import pz
from penzai.models.transformer import model_parts
from penzai.models.transformer.variants import llamalike_common as llc

from interp.models.core import Config

SUPPORTED_ARCHS = ("llama",)  # Gemma 3's QK-norm and local/global rope are not in llamalike_common


@pz.pytree_dataclass
class AddVector(pz.nn.Layer):
    """Add a fixed vector to the residual stream (ActAdd as a layer; Turner et al. 2023).

    `vector` is a NamedArray over `embedding` (every position) or over `seq` and `embedding`
    (one vector per position; must match the input's sequence length).
    """

    vector: pz.nx.NamedArray

    def __call__(self, x, **side_inputs):
        return x + self.vector.astype(x.dtype)


def penzai_config(cfg: Config) -> llc.LlamalikeTransformerConfig:
    """The penzai config matching one of our Llama configs (untied head: see module doc)."""
    if cfg.arch not in SUPPORTED_ARCHS:
        raise ValueError(f"penzai bridge supports the llama architecture only, got {cfg.arch!r}")
    if cfg.n_heads % cfg.n_kv_heads:
        raise ValueError(f"n_heads {cfg.n_heads} is not a multiple of n_kv_heads {cfg.n_kv_heads}")
    return llc.LlamalikeTransformerConfig(
        num_kv_heads=cfg.n_kv_heads,
        query_head_multiplier=cfg.n_heads // cfg.n_kv_heads,
        embedding_dim=cfg.d_model,
        projection_dim=cfg.head_dim,
        mlp_hidden_dim=cfg.d_ff,
        num_decoder_blocks=cfg.n_layers,
        vocab_size=cfg.vocab_size,
        mlp_variant="swiglu",
        tie_embedder_and_logits=False,
        rope_wavelength=cfg.rope_base,
        rms_norm_eps=cfg.norm_eps,
    )


def _half_rotary_perm(head_dim: int) -> np.ndarray:
    return np.concatenate([np.arange(0, head_dim, 2), np.arange(1, head_dim, 2)])


def _heads(cfg: Config) -> tuple:
    """Query and kv head shapes/axis names, following penzai's `_head_info` cases."""
    g = cfg.n_heads // cfg.n_kv_heads
    if g == 1:
        return (cfg.n_kv_heads,), ("heads",), (cfg.n_kv_heads,), ("heads",)
    if cfg.n_kv_heads == 1:
        return (g,), ("query_heads",), (), ()
    return ((cfg.n_kv_heads, g), ("head_groups", "query_heads"),
            (cfg.n_kv_heads,), ("head_groups",))


def _block_weights(cfg: Config, lp: dict, i: int) -> dict[str, tuple[np.ndarray, tuple]]:
    """Block `i`'s weights in penzai's layout: {parameter name: (array, axis names)}."""
    d, hd = cfg.d_model, cfg.head_dim
    q_shape, q_axes, kv_shape, kv_axes = _heads(cfg)
    perm = _half_rotary_perm(hd)
    return {
        "pre_attention_norm/scale.weights": (lp["attn_norm"][i], ("embedding",)),
        "pre_ffw_norm/scale.weights": (lp["mlp_norm"][i], ("embedding",)),
        "attention/query.weights": (lp["wq"][i].reshape(d, *q_shape, hd)[..., perm],
                                    ("embedding", *q_axes, "projection")),
        "attention/key.weights": (lp["wk"][i].reshape(d, *kv_shape, hd)[..., perm],
                                  ("embedding", *kv_axes, "projection")),
        "attention/value.weights": (lp["wv"][i].reshape(d, *kv_shape, hd),
                                    ("embedding", *kv_axes, "projection")),
        "attention/output.weights": (lp["wo"][i].reshape(*q_shape, hd, d),
                                     (*q_axes, "projection", "embedding")),
        "mlp/gating_linear.weights": (lp["w_gate"][i], ("embedding", "neurons")),
        "mlp/value_linear.weights": (lp["w_up"][i], ("embedding", "neurons")),
        "mlp/out_linear.weights": (lp["w_down"][i], ("neurons", "embedding")),
    }


def _wrap(a, axes) -> pz.nx.NamedArray:
    return pz.nx.wrap(jnp.asarray(a, jnp.float32)).tag(*axes)


def to_penzai(cfg: Config, params: dict, *, layer_stack: bool = False) -> model_parts.TransformerLM:
    """Build penzai's llamalike transformer holding `params` (our stacked float32 pytree).

    `layer_stack=True` builds penzai's own scanned variant (`use_layer_stack`): the blocks run
    under one `jax.lax.scan` (a `pz.nn.LayerStack` over a `blocks` axis), as ours do."""
    pcfg = dataclasses.replace(penzai_config(cfg), use_layer_stack=layer_stack)
    model_def = llc.build_llamalike_transformer(pcfg, init_base_rng=None, name="transformer")
    mapping = {
        "embedder.embeddings": _wrap(params["embed"], ("vocabulary", "embedding")),
        "lm_head.weights": _wrap(params["embed"], ("vocabulary", "embedding")),
        "final_norm/scale.weights": _wrap(params["final_norm"], ("embedding",)),
    }
    lp = jax.tree.map(np.asarray, params["layers"])
    per_block = [_block_weights(cfg, lp, i) for i in range(cfg.n_layers)]
    for name, (_, axes) in per_block[0].items():
        if layer_stack:
            stacked = np.stack([blk[name][0] for blk in per_block])
            mapping[f"blocks/{name}"] = _wrap(stacked, ("blocks", *axes))
        else:
            mapping.update({f"block_{i}/{name}": _wrap(blk[name][0], axes)
                            for i, blk in enumerate(per_block)})
    model = pz.bind_variables(
        model_def, [pz.Parameter(value=v, label=f"transformer/{k}") for k, v in mapping.items()])
    pz.nn.assert_no_parameter_slots(model)
    return model


def add_at_resid_pre(model: model_parts.TransformerLM, layer: int,
                     vector) -> model_parts.TransformerLM:
    """A copy of `model` with `AddVector(vector)` inserted before block `layer` (its resid_pre).

    `vector` is `[d_model]` (all positions) or `[T, d_model]` (one per position of a length-T
    input; pad with zeros to steer only the front positions, as ActAdd does).
    """
    blocks = pz.select(model).at_instances_of(model_parts.TransformerBlock)
    n = blocks.count()
    if not 0 <= layer < n:
        raise ValueError(f"layer {layer} out of range: the model has {n} blocks")
    v = jnp.asarray(vector, jnp.float32)
    if v.ndim not in (1, 2):
        raise ValueError(f"vector must be [d_model] or [T, d_model], got shape {v.shape}")
    named = pz.nx.wrap(v).tag(*(("seq",) if v.ndim == 2 else ()), "embedding")
    return blocks.pick_nth_selected(layer).insert_before(AddVector(named))


def logits(model: model_parts.TransformerLM, tokens) -> jax.Array:
    """Logits `[B, T, vocab]` of a penzai model on `tokens [B, T]` (positions 0..T-1)."""
    toks = pz.nx.wrap(jnp.asarray(tokens, jnp.int32)).tag("batch", "seq")
    out = model(toks)
    return out.untag("batch", "seq", "vocabulary").unwrap()


# ----------------------------------------------------------------------------- callbacks
# Callback-style instrumentation of penzai's own layer classes, the Mishax way: the model file
# (penzai's llamalike_common) is neither edited nor rebuilt; a layer class's call is wrapped
# while a function is traced, so it works under jax.jit and inside the LayerStack's lax.scan.


@contextlib.contextmanager
def intercepting(layer_cls: type, fn: Callable) -> Iterator[None]:
    """Inside the block, every call of a `layer_cls` layer returns `fn(its output)`.

    It acts at trace time: trace (and jit) the instrumented function inside the block, with a
    fresh `jax.jit` (a function traced earlier keeps its old, uninstrumented program)."""
    own = layer_cls.__dict__.get("__call__")
    original = layer_cls.__call__

    def called(self, argument, /, **side_inputs):
        return fn(original(self, argument, **side_inputs))

    layer_cls.__call__ = called
    try:
        yield
    finally:
        if own is None:
            del layer_cls.__call__
        else:
            layer_cls.__call__ = own


def send_to(sink: list) -> Callable:
    """An interceptor that appends each output (`[batch, seq, embedding]`) to `sink` on the host,
    in call order, through an ordered `io_callback` (so also from inside jit and scan), and
    returns it unchanged."""
    def store(value):
        sink.append(np.asarray(value))

    def fn(out):
        io_callback(store, None, out.unwrap("batch", "seq", "embedding"), ordered=True)
        return out

    return fn


def add_vector(vector) -> Callable:
    """An interceptor that adds `vector [d_model]` to each output (ActAdd at every call)."""
    named = pz.nx.wrap(jnp.asarray(vector, jnp.float32)).tag("embedding")
    return lambda out: out + named.astype(out.dtype)
