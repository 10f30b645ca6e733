"""Autoregressive generation with a KV cache: greedy or temperature / top-p sampling.

Why a cache: without one, each new token re-runs the whole prefix. The prompt is run once
("prefill") writing keys/values for every layer; each step then runs one token and attends over
the cache. Cache lengths are rounded up to a multiple of 64 so that prompts of similar length
share one compiled program. Every random choice comes from `seed`.
"""

from __future__ import annotations

import functools
import math
from collections.abc import Sequence

import jax
import jax.numpy as jnp
import numpy as np

from interp.hooks import Hooks
from interp.models import core


def sample_logits(logits: jax.Array, key: jax.Array, *, temperature, top_p, greedy: bool,
                  candidates: int = 512) -> jax.Array:
    """Next token ids `[B]` from logits `[B, V]` (already penalised and masked).

    Top-p is nucleus sampling (Holtzman et al. 2020): keep the smallest set of most likely tokens
    whose probability reaches `top_p`. Why two paths: a full sort of a 49k-token vocabulary per
    row dominates a CPU decoding step (seconds at batch 64), while the nucleus of a small `top_p`
    is almost always inside the `candidates` largest logits. When every row's nucleus is covered
    by them (their total probability reaches `top_p`) we sample among them, which keeps exactly
    the same tokens with the same probabilities; otherwise we fall back to the full sort.
    """
    if greedy:
        return jnp.argmax(logits, axis=-1).astype(jnp.int32)
    logits = logits / jnp.maximum(temperature, 1e-6)
    k = min(candidates, logits.shape[-1])
    top_vals, top_idx = jax.lax.top_k(logits, k)  # descending
    top_probs = jnp.exp(top_vals - jax.nn.logsumexp(logits, axis=-1, keepdims=True))
    covered = jnp.all(jnp.sum(top_probs, axis=-1) >= top_p)
    return jax.lax.cond(covered, _nucleus, _nucleus_full_sort, logits, top_vals, top_idx, key,
                        top_p)


def _nucleus_sample(order, sorted_logits, key, top_p):
    probs = jax.nn.softmax(sorted_logits, axis=-1)
    before = jnp.cumsum(probs, axis=-1) - probs  # probability mass strictly before each token
    sorted_logits = jnp.where(before < top_p, sorted_logits, -jnp.inf)
    choice = jax.random.categorical(key, sorted_logits, axis=-1)
    return jnp.take_along_axis(order, choice[:, None], axis=-1)[:, 0].astype(jnp.int32)


def _nucleus(logits, top_vals, top_idx, key, top_p):
    # renormalise over the candidates: softmax(top_vals) * mass(top) = the full probabilities
    mass = jnp.sum(jnp.exp(top_vals - jax.nn.logsumexp(logits, axis=-1, keepdims=True)), -1,
                   keepdims=True)
    return _nucleus_sample(top_idx, top_vals, key, top_p / mass)


def _nucleus_full_sort(logits, top_vals, top_idx, key, top_p):
    order = jnp.argsort(-logits, axis=-1)
    return _nucleus_sample(order, jnp.take_along_axis(logits, order, axis=-1), key, top_p)


def _adjust(logits, counts, frequency_penalty, banned):
    # OpenAI's frequency penalty: subtract penalty * (times the token was generated so far).
    logits = logits - frequency_penalty * counts
    return jnp.where(banned, -jnp.inf, logits)


@functools.partial(jax.jit, static_argnames=("arch", "cfg", "greedy"))
def _prefill(arch, params, tokens, cfg, hooks, cache, counts, banned, key, temperature, top_p,
             frequency_penalty, greedy):
    out = core.forward(arch, params, tokens, cfg, hooks, cache=cache)
    logits = _adjust(out.logits[:, -1], counts, frequency_penalty, banned)
    nxt = sample_logits(logits, key, temperature=temperature, top_p=top_p, greedy=greedy)
    return nxt, out.cache


@functools.partial(jax.jit, static_argnames=("arch", "cfg", "greedy"), donate_argnames=("cache",))
def _step(arch, params, token, pos, cfg, hooks, cache, counts, banned, key, temperature, top_p,
          frequency_penalty, greedy):
    out = core.forward(arch, params, token[:, None], cfg, hooks, cache=cache,
                       positions=pos[None].astype(jnp.int32))
    logits = _adjust(out.logits[:, -1], counts, frequency_penalty, banned)
    nxt = sample_logits(logits, key, temperature=temperature, top_p=top_p, greedy=greedy)
    return nxt, out.cache


def check_sampling(*, temperature: float, top_p: float, frequency_penalty: float,
                   max_new_tokens: int, seed: int = 0) -> None:
    """ValueError naming the first bad sampling argument. NaN and infinities are refused:
    they would not fail, they would silently sample garbage from NaN logits."""
    def finite(x) -> bool:
        try:
            return math.isfinite(float(x))
        except (TypeError, ValueError):
            return False

    if not finite(temperature) or temperature < 0:
        raise ValueError(f"temperature must be a finite number >= 0 (0 = greedy), "
                         f"got {temperature}")
    if not finite(top_p) or not 0 < top_p <= 1:
        raise ValueError(f"top_p must be in (0, 1], got {top_p}")
    if not finite(frequency_penalty):
        raise ValueError(f"frequency_penalty must be a finite number, got {frequency_penalty}")
    if isinstance(max_new_tokens, bool) or not isinstance(max_new_tokens, (int, np.integer)) \
            or max_new_tokens < 0:
        raise ValueError(f"max_new_tokens must be an integer >= 0, got {max_new_tokens!r}")
    if isinstance(seed, bool) or not isinstance(seed, (int, np.integer)) \
            or not -2**63 <= seed < 2**63:
        raise ValueError(f"seed must be an integer in [-2**63, 2**63) (a 64-bit PRNG seed), "
                         f"got {seed!r}")


def check_prompt(cfg: core.Config, prompt: Sequence[Sequence[int]],
                 new_tokens: int = 0) -> np.ndarray:
    """The prompt as int32 `[batch, seq]`; ValueError if it is empty, ragged, has ids outside
    the vocabulary (the embedding lookup would silently clamp them) or, with `new_tokens` more,
    does not fit in the model's context."""
    try:
        tokens = np.asarray(prompt, np.int64)
    except (TypeError, ValueError, OverflowError):
        tokens = None
    if tokens is None or tokens.ndim != 2 or tokens.shape[1] == 0:
        raise ValueError("prompt must be a non-empty [batch, seq] list of token ids of equal "
                         "length (an empty prompt has nothing to continue)")
    if tokens.min() < 0 or tokens.max() >= cfg.vocab_size:
        raise ValueError(f"prompt has token ids outside 0..{cfg.vocab_size - 1} (the vocabulary): "
                         f"min {tokens.min()}, max {tokens.max()}")
    t = tokens.shape[1]
    if t + new_tokens > cfg.context_length:
        extra = f" + {new_tokens} new tokens" if new_tokens else ""
        raise ValueError(f"prompt of {t} tokens{extra} = {t + new_tokens} exceeds the model's "
                         f"context length of {cfg.context_length} tokens; shorten it")
    return tokens.astype(np.int32)


def generate(arch, params, cfg: core.Config, prompt: Sequence[Sequence[int]], *,
             max_new_tokens: int = 32, temperature: float = 0.0, top_p: float = 1.0,
             frequency_penalty: float = 0.0, seed: int = 0,
             stop_tokens: Sequence[int] = (), never_sample: Sequence[int] = (),
             hooks: Hooks | None = None) -> list[list[int]]:
    """New token ids for each prompt of a batch of equal-length prompts.

    `temperature == 0` is greedy. Generation of a row ends at its first stop token (included in
    the output); the batch ends when all rows have stopped or after `max_new_tokens`.
    `never_sample` ids get probability zero (Gemma's image and control tokens).
    """
    check_sampling(temperature=temperature, top_p=top_p, frequency_penalty=frequency_penalty,
                   max_new_tokens=max_new_tokens, seed=seed)
    tokens = check_prompt(cfg, prompt, max_new_tokens)
    if max_new_tokens == 0:
        return [[] for _ in range(tokens.shape[0])]
    b, t = tokens.shape
    max_len = min(-(-(t + max_new_tokens) // 64) * 64, cfg.context_length)
    cache = core.init_cache(cfg, b, max_len)
    banned = np.zeros(cfg.vocab_size, bool)
    banned[[i for i in never_sample if i not in set(stop_tokens)]] = True
    banned = jnp.asarray(banned)
    counts = jnp.zeros((b, cfg.vocab_size), jnp.float32)
    greedy = temperature == 0
    knobs = dict(temperature=jnp.float32(temperature), top_p=jnp.float32(top_p),
                 frequency_penalty=jnp.float32(frequency_penalty), greedy=greedy)
    keys = jax.random.split(jax.random.key(seed), max_new_tokens)
    nxt, cache = _prefill(arch, params, jnp.asarray(tokens), cfg, hooks, cache, counts, banned,
                          keys[0], **knobs)
    out = [[] for _ in range(b)]
    done = np.zeros(b, bool)
    stop = set(int(s) for s in stop_tokens)
    for step in range(max_new_tokens):
        host = np.asarray(nxt)
        for row in range(b):
            if not done[row]:
                out[row].append(int(host[row]))
                done[row] = int(host[row]) in stop
        if done.all() or step == max_new_tokens - 1:
            break
        counts = counts.at[jnp.arange(b), nxt].add(1.0)
        nxt, cache = _step(arch, params, nxt, jnp.int32(t + step), cfg, hooks, cache, counts,
                           banned, keys[step + 1], **knobs)
    return out
