"""Gemma 3 (270M base) forward pass, with every site tagged.

Gemma 3 (Gemma Team 2025) differs from Llama in the details that are easy to get wrong, each
checked against llama.cpp's logits:

* embeddings are multiplied by sqrt(d_model) (in float32); the head is tied to them;
* "sandwich" norms: RMSNorm before *and after* both attention and MLP (`post_attention_norm`,
  `post_ffw_norm`), with the output norm applied before the sublayer is added to the residual;
* the norm weights in the GGUF already contain Gemma's `1 + w` (the converter adds it), so the
  RMSNorm here is the plain one; adding 1 again breaks the model;
* QK-norm: per-head RMSNorm of queries and keys before rotary;
* rotary in NeoX (rotate-half) layout, no permutation;
* local layers attend to a 512-token sliding window with rope base 10000; every 6th layer
  (`(i + 1) % 6 == 0`: 5, 11, 17) is global with rope base 1e6. Neither the window pattern nor
  the local base is stored in the GGUF: they are llama.cpp's hard-coded values;
* GeGLU MLP with the tanh approximation of GELU; attention scale head_dim ** -0.5 (= 1/16).
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np

from interp.models import layers as L
from interp.models import llama
from interp.models.core import Config, standard_sites

SITES = standard_sites("gemma3")
ROPE_INTERLEAVED = False
LOCAL_ROPE_BASE = 10_000.0
SLIDING_WINDOW = 512
GLOBAL_EVERY = 6


def embed(params: dict, tokens: jax.Array, cfg: Config) -> jax.Array:
    return params["embed"][tokens] * jnp.sqrt(jnp.float32(cfg.d_model))


def block(p: dict, x: jax.Array, cfg: Config, tag, positions: jax.Array, const: dict,
          kv: dict | None) -> tuple[jax.Array, dict | None]:
    """One Gemma 3 layer; `const` carries this layer's rope base and attention window."""
    eps = cfg.norm_eps
    x = tag("resid_pre", x)
    h = tag("attn_in", L.rms_norm(x, p["attn_norm"], eps))
    q = L.split_heads(h @ p["wq"], cfg.n_heads)
    k = L.split_heads(h @ p["wk"], cfg.n_kv_heads)
    v = tag("v", L.split_heads(h @ p["wv"], cfg.n_kv_heads))
    q = L.rms_norm(q, p["q_norm"], eps)  # QK-norm, per head, before rotary
    k = L.rms_norm(k, p["k_norm"], eps)
    q = tag("q", L.rope(q, positions, const["rope_base"], ROPE_INTERLEAVED))
    k = tag("k", L.rope(k, positions, const["rope_base"], ROPE_INTERLEAVED))
    z, kv = llama.attend(q, k, v, tag, positions, const["window"], kv, cfg.head_dim ** -0.5)
    attn_out = L.rms_norm(z.reshape(*z.shape[:2], -1) @ p["wo"], p["post_attn_norm"], eps)
    attn_out = tag("attn_out", attn_out)
    x = tag("resid_mid", x + attn_out)
    h = tag("mlp_in", L.rms_norm(x, p["mlp_norm"], eps))
    gate = tag("mlp_pre_act", h @ p["w_gate"])
    hidden = tag("mlp_hidden", jax.nn.gelu(gate, approximate=True) * (h @ p["w_up"]))
    mlp_out = tag("mlp_out", L.rms_norm(hidden @ p["w_down"], p["post_mlp_norm"], eps))
    x = tag("resid_post", x + mlp_out)
    return x, kv


head = llama.head  # final RMSNorm, tied unembedding (no soft-capping in Gemma 3)


# ------------------------------------------------------------------ weights

LAYER_TENSORS = {
    **llama.LAYER_TENSORS,
    "attn_q_norm": "q_norm", "attn_k_norm": "k_norm",
    "post_attention_norm": "post_attn_norm", "post_ffw_norm": "post_mlp_norm",
}


def config_from_gguf(meta: dict) -> Config:
    a = "gemma3"
    d = int(meta[f"{a}.embedding_length"])
    return Config(
        arch="gemma3",
        n_layers=int(meta[f"{a}.block_count"]),
        d_model=d,
        d_ff=int(meta[f"{a}.feed_forward_length"]),
        n_heads=int(meta[f"{a}.attention.head_count"]),
        n_kv_heads=int(meta[f"{a}.attention.head_count_kv"]),
        head_dim=int(meta[f"{a}.attention.key_length"]),
        vocab_size=len(meta["tokenizer.ggml.tokens"]),
        norm_eps=float(meta[f"{a}.attention.layer_norm_rms_epsilon"]),
        rope_base=float(meta.get(f"{a}.rope.freq_base", 1e6)),
        context_length=int(meta[f"{a}.context_length"]),
        rope_local_base=LOCAL_ROPE_BASE,
        sliding_window=int(meta.get(f"{a}.attention.sliding_window", SLIDING_WINDOW)),
        global_every=GLOBAL_EVERY,
        bos_id=llama._opt_int(meta.get("tokenizer.ggml.bos_token_id")),
        eos_id=llama._opt_int(meta.get("tokenizer.ggml.eos_token_id")),
        add_bos=bool(meta.get("tokenizer.ggml.add_bos_token", True)),
    )


def convert(tensors: dict[str, np.ndarray], cfg: Config) -> dict:
    return llama.convert(tensors, cfg, LAYER_TENSORS)


def init_params(cfg: Config, seed: int) -> dict:
    params = llama.init_params(cfg, seed)
    rng = np.random.default_rng(seed + 1)
    n, d, hd = cfg.n_layers, cfg.d_model, cfg.head_dim
    for name, size in [("q_norm", hd), ("k_norm", hd), ("post_attn_norm", d), ("post_mlp_norm", d)]:
        params["layers"][name] = (1 + 0.1 * rng.standard_normal((n, size))).astype(np.float32)
    return params


# 6 layers so that layer 5 is global and the others are local; a window of 8 makes the
# sliding-window mask matter on short test sequences.
TINY = Config(arch="gemma3", n_layers=6, d_model=64, d_ff=128, n_heads=4, n_kv_heads=1,
              head_dim=32, vocab_size=260, norm_eps=1e-6, rope_base=1e6, context_length=512,
              rope_local_base=LOCAL_ROPE_BASE, sliding_window=8, global_every=GLOBAL_EVERY,
              bos_id=256, eos_id=257, add_bos=True)
