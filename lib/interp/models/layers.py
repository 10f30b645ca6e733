"""Building blocks shared by the architectures: RMSNorm, rotary embeddings, attention.

Conventions (penzai-style, stated once): activations are `[batch, seq, ...]`; heads are split
as `[batch, seq, heads, head_dim]`; linear weights are stored `(in, out)` so `y = x @ w`;
`positions` is a 1-D int array `[seq]` of absolute token positions shared by the batch.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp


def rms_norm(x: jax.Array, weight: jax.Array, eps: float) -> jax.Array:
    """RMSNorm (Zhang & Sennrich 2019): x / rms(x) * w. Gemma's `1 + w` is already in `w`."""
    x32 = x.astype(jnp.float32)
    return (x32 * jax.lax.rsqrt(jnp.mean(x32 * x32, axis=-1, keepdims=True) + eps)) * weight


def rope(x: jax.Array, positions: jax.Array, base: jax.Array | float, interleaved: bool) -> jax.Array:
    """Rotary position embedding (Su et al. 2021, RoFormer) on `x [B, T, H, hd]`.

    `interleaved=True` rotates adjacent pairs (2i, 2i+1): llama.cpp's "normal" mode, which is
    what a Llama GGUF needs because convert_hf_to_gguf permuted the Q/K rows. `False` rotates
    the two halves (NeoX / HF `rotate_half`), as llama.cpp does for Gemma 3. `base` may be traced
    (it differs between Gemma's local and global layers inside one `lax.scan`).
    """
    hd = x.shape[-1]
    inv_freq = jnp.asarray(base, jnp.float32) ** (-jnp.arange(0, hd, 2, dtype=jnp.float32) / hd)
    angle = positions.astype(jnp.float32)[:, None] * inv_freq  # [T, hd/2]
    cos = jnp.cos(angle)[None, :, None, :]
    sin = jnp.sin(angle)[None, :, None, :]
    if interleaved:
        x1, x2 = x[..., 0::2], x[..., 1::2]
        return jnp.stack([x1 * cos - x2 * sin, x1 * sin + x2 * cos], axis=-1).reshape(x.shape)
    x1, x2 = x[..., : hd // 2], x[..., hd // 2 :]
    return jnp.concatenate([x1 * cos - x2 * sin, x1 * sin + x2 * cos], axis=-1)


def attention_mask(q_pos: jax.Array, k_pos: jax.Array, window: jax.Array | int) -> jax.Array:
    """Causal mask `[T, S]`, optionally limited to a sliding window (Gemma's local layers).

    A key is visible when `k <= q` and `q - k < window`; pass a window >= the context length
    for global attention.
    """
    diff = q_pos[:, None] - k_pos[None, :]
    return (diff >= 0) & (diff < window)


def split_heads(x: jax.Array, n_heads: int) -> jax.Array:
    return x.reshape(*x.shape[:-1], n_heads, x.shape[-1] // n_heads)


def attention_scores(q: jax.Array, k: jax.Array, scale: float) -> jax.Array:
    """Grouped-query scores `[B, H, T, S]`; query head h reads kv head h // (H / H_kv)."""
    b, t, h, hd = q.shape
    hkv = k.shape[2]
    qg = q.reshape(b, t, hkv, h // hkv, hd)
    scores = jnp.einsum("btkgd,bskd->bkgts", qg, k) * scale
    return scores.reshape(b, h, t, k.shape[1])


def attention_mix(pattern: jax.Array, v: jax.Array) -> jax.Array:
    """Weighted values `[B, T, H, hd]` from a pattern `[B, H, T, S]` and values `[B, S, H_kv, hd]`."""
    b, h, t, s = pattern.shape
    hkv = v.shape[2]
    pg = pattern.reshape(b, hkv, h // hkv, t, s)
    z = jnp.einsum("bkgts,bskd->btkgd", pg, v)
    return z.reshape(b, t, h, v.shape[-1])


def masked_softmax(scores: jax.Array, mask: jax.Array) -> jax.Array:
    scores = jnp.where(mask, scores, jnp.finfo(scores.dtype).min)
    return jax.nn.softmax(scores, axis=-1)


def update_cache(cache: jax.Array, new: jax.Array, start: jax.Array) -> jax.Array:
    """Write `new [B, T, ...]` into `cache [B, S, ...]` at sequence offset `start`."""
    idx = (0, start) + (0,) * (cache.ndim - 2)
    return jax.lax.dynamic_update_slice(cache, new.astype(cache.dtype), idx)
