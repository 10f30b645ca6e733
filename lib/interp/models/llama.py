"""Llama (SmolLM2-135M-Instruct) forward pass, with every site tagged.

Pre-norm decoder (Touvron et al. 2023): RMSNorm -> grouped-query attention with rotary
embeddings -> residual; RMSNorm -> SwiGLU MLP (Shazeer 2020) -> residual; final RMSNorm and a
head tied to the embedding. SmolLM2: 30 layers, d_model 576, 9 query / 3 kv heads of 64,
d_ff 1536, rope base 1e5, no BOS added.

The rotary trap: `convert_hf_to_gguf.py` permutes the rows of W_Q and W_K so that llama.cpp can
rotate *adjacent* pairs; with GGUF weights the rotation must therefore be the interleaved one
(`rope(..., interleaved=True)`), not HF's rotate-half. A wrong choice still gives plausible text
but drifts from llama.cpp (tested against its logits).
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np

from interp.models import layers as L
from interp.models.core import Config, standard_sites

SITES = standard_sites("llama")
ROPE_INTERLEAVED = True


def embed(params: dict, tokens: jax.Array, cfg: Config) -> jax.Array:
    return params["embed"][tokens]


def block(p: dict, x: jax.Array, cfg: Config, tag, positions: jax.Array, const: dict,
          kv: dict | None) -> tuple[jax.Array, dict | None]:
    """One decoder layer. `p` holds this layer's weights, `const` its rope base and window."""
    x = tag("resid_pre", x)
    h = tag("attn_in", L.rms_norm(x, p["attn_norm"], cfg.norm_eps))
    q = L.split_heads(h @ p["wq"], cfg.n_heads)
    k = L.split_heads(h @ p["wk"], cfg.n_kv_heads)
    v = tag("v", L.split_heads(h @ p["wv"], cfg.n_kv_heads))
    q = tag("q", L.rope(q, positions, const["rope_base"], ROPE_INTERLEAVED))
    k = tag("k", L.rope(k, positions, const["rope_base"], ROPE_INTERLEAVED))
    z, kv = attend(q, k, v, tag, positions, const["window"], kv, cfg.head_dim ** -0.5)
    attn_out = tag("attn_out", z.reshape(*z.shape[:2], -1) @ p["wo"])
    x = tag("resid_mid", x + attn_out)
    h = tag("mlp_in", L.rms_norm(x, p["mlp_norm"], cfg.norm_eps))
    gate = tag("mlp_pre_act", h @ p["w_gate"])
    hidden = tag("mlp_hidden", jax.nn.silu(gate) * (h @ p["w_up"]))
    mlp_out = tag("mlp_out", hidden @ p["w_down"])
    x = tag("resid_post", x + mlp_out)
    return x, kv


def attend(q, k, v, tag, positions, window, kv, scale):
    """Causal (optionally windowed) GQA; with a cache, attend over all cached positions."""
    if kv is not None:
        kv = {"k": L.update_cache(kv["k"], k, positions[0]),
              "v": L.update_cache(kv["v"], v, positions[0])}
        k, v = kv["k"], kv["v"]
        k_pos = jnp.arange(k.shape[1], dtype=jnp.int32)
    else:
        k_pos = positions
    scores = tag("attn_scores", L.attention_scores(q, k, scale))
    pattern = tag("attn_pattern", L.masked_softmax(scores, L.attention_mask(positions, k_pos, window)))
    z = tag("attn_z", L.attention_mix(pattern, v))
    return z, kv


def head(params: dict, x: jax.Array, cfg: Config, tag) -> jax.Array:
    h = tag("final_norm", L.rms_norm(x, params["final_norm"], cfg.norm_eps))
    return tag("logits", h @ params["embed"].T)


# ------------------------------------------------------------------ weights


def config_from_gguf(meta: dict) -> Config:
    a = "llama"
    d = int(meta[f"{a}.embedding_length"])
    h = int(meta[f"{a}.attention.head_count"])
    return Config(
        arch="llama",
        n_layers=int(meta[f"{a}.block_count"]),
        d_model=d,
        d_ff=int(meta[f"{a}.feed_forward_length"]),
        n_heads=h,
        n_kv_heads=int(meta[f"{a}.attention.head_count_kv"]),
        head_dim=int(meta.get(f"{a}.rope.dimension_count", d // h)),
        vocab_size=int(meta.get(f"{a}.vocab_size", len(meta["tokenizer.ggml.tokens"]))),
        norm_eps=float(meta[f"{a}.attention.layer_norm_rms_epsilon"]),
        rope_base=float(meta.get(f"{a}.rope.freq_base", 10000.0)),
        context_length=int(meta[f"{a}.context_length"]),
        bos_id=_opt_int(meta.get("tokenizer.ggml.bos_token_id")),
        eos_id=_opt_int(meta.get("tokenizer.ggml.eos_token_id")),
        add_bos=bool(meta.get("tokenizer.ggml.add_bos_token", False)),
    )


def _opt_int(v):
    return None if v is None else int(v)


# GGUF tensor name (per layer) -> our stacked name; linear weights are transposed to (in, out).
LAYER_TENSORS = {
    "attn_norm": "attn_norm", "attn_q": "wq", "attn_k": "wk", "attn_v": "wv",
    "attn_output": "wo", "ffn_norm": "mlp_norm", "ffn_gate": "w_gate", "ffn_up": "w_up",
    "ffn_down": "w_down",
}


def convert(tensors: dict[str, np.ndarray], cfg: Config, layer_tensors=LAYER_TENSORS) -> dict:
    """Dequantised GGUF tensors `(out, in)` -> stacked parameter pytree of float32 numpy arrays."""
    layers = {}
    for gg, ours in layer_tensors.items():
        ws = [tensors[f"blk.{i}.{gg}.weight"] for i in range(cfg.n_layers)]
        ws = [w.T if w.ndim == 2 else w for w in ws]
        layers[ours] = np.ascontiguousarray(np.stack(ws).astype(np.float32))
    return {
        "embed": tensors["token_embd.weight"].astype(np.float32),
        "final_norm": tensors["output_norm.weight"].astype(np.float32),
        "layers": layers,
    }


def init_params(cfg: Config, seed: int) -> dict:
    """Random weights of the right shapes (for the tiny test twin)."""
    rng = np.random.default_rng(seed)
    d, f, n = cfg.d_model, cfg.d_ff, cfg.n_layers
    hq, hkv = cfg.n_heads * cfg.head_dim, cfg.n_kv_heads * cfg.head_dim

    def w(*shape, fan_in):
        return (rng.standard_normal((n, *shape)) / np.sqrt(fan_in)).astype(np.float32)

    return {
        # 1/sqrt(d): with the tied head the logits are then O(1), so sampling is not degenerate
        "embed": (rng.standard_normal((cfg.vocab_size, d)) / np.sqrt(d)).astype(np.float32),
        "final_norm": (1 + 0.1 * rng.standard_normal(d)).astype(np.float32),
        "layers": {
            "attn_norm": (1 + 0.1 * rng.standard_normal((n, d))).astype(np.float32),
            "wq": w(d, hq, fan_in=d), "wk": w(d, hkv, fan_in=d), "wv": w(d, hkv, fan_in=d),
            "wo": w(hq, d, fan_in=hq),
            "mlp_norm": (1 + 0.1 * rng.standard_normal((n, d))).astype(np.float32),
            "w_gate": w(d, f, fan_in=d), "w_up": w(d, f, fan_in=d), "w_down": w(f, d, fan_in=f),
        },
    }


TINY = Config(arch="llama", n_layers=4, d_model=64, d_ff=128, n_heads=4, n_kv_heads=2,
              head_dim=16, vocab_size=260, norm_eps=1e-5, rope_base=10000.0, context_length=512,
              bos_id=256, eos_id=257, add_bos=False)
