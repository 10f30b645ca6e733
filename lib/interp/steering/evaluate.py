"""Steering effect and cost, with no external API (the steering page's effect and cost axes).

Effect of a steered completion:
* lexicon: the number of concept words in it (ActAdd's wedding-word count; `lexicons`);
* judge: the *unsteered* model's own judgement, p(plus) / (p(plus) + p(minus)) for the next
  word after "<prompt><completion><judge suffix>", e.g. " angry" vs " calm" after
  "\\nThe tone of the text above is". A zero-API classifier: the same frozen model for every
  variant, so it ranks variants consistently even if it is a weak judge in absolute terms.

Cost:
* completion CE: mean next-token cross-entropy of the completion under the unsteered model
  (incoherent text is improbable text);
* steered delta CE: CE of the steered model on neutral held-out text (the vector added at its
  front positions, as in ActAdd's perplexity experiment) minus the unsteered CE.
"""

from __future__ import annotations

import dataclasses
import functools
from collections.abc import Sequence

import jax
import jax.numpy as jnp
import numpy as np

from interp import hooks
from interp.steering.actadd import residual_site


@dataclasses.dataclass(frozen=True)
class Judge:
    """A zero-API classifier: compare two next words after `suffix` under the unsteered model."""

    suffix: str   # appended after the completion, e.g. "\nThe tone of the text above is"
    plus: str     # e.g. " angry" (must be one token)
    minus: str    # e.g. " calm"


JUDGES = {
    "anger": Judge("\nThe tone of the text above is", " angry", " calm"),
    "wedding": Judge("\nThe text above is about a", " wedding", " meeting"),
    "love": Judge("\nThe feeling expressed in the text above is", " love", " hate"),
}


def _one_token(model, word: str) -> int:
    ids = model.tokenizer.encode(word, add_bos=False)
    if len(ids) != 1:
        raise ValueError(f"judge word {word!r} is {len(ids)} tokens for {model.name}; use a "
                         "single-token word")
    return int(ids[0])


@functools.partial(jax.jit, static_argnames=("model",))
def _row_logprobs(model, params, tokens):
    logits = model.apply(params, tokens).logits
    return jax.nn.log_softmax(logits.astype(jnp.float32), axis=-1)


def judge_and_ce(model, prompt_ids: Sequence[int], completions: Sequence[Sequence[int]],
                 judge: Judge, *, batch_size: int = 16) -> tuple[np.ndarray, np.ndarray]:
    """(judge probability, completion CE in nats/token) per completion, from one forward each
    over BOS + prompt + completion + judge suffix (causal, so the suffix does not change the
    completion's CE). EOS is dropped from completions; an empty completion has CE nan."""
    eos = model.cfg.eos_id
    suffix = list(model.tokenizer.encode(judge.suffix, add_bos=False))
    plus, minus = _one_token(model, judge.plus), _one_token(model, judge.minus)
    prompt_ids = list(prompt_ids)
    rows, spans = [], []
    for c in completions:
        c = [int(t) for t in c if t != eos]
        rows.append(prompt_ids + c + suffix)
        spans.append((len(prompt_ids), len(prompt_ids) + len(c)))
    width = -(-max(len(r) for r in rows) // 16) * 16  # few compiled shapes
    probs, ces = np.zeros(len(rows)), np.full(len(rows), np.nan)
    for lo in range(0, len(rows), batch_size):
        chunk = rows[lo:lo + batch_size]
        n = len(chunk)
        chunk = chunk + [chunk[-1]] * (batch_size - n)
        toks = np.zeros((batch_size, width), np.int32)
        for i, r in enumerate(chunk):
            toks[i, :len(r)] = r
        lp = np.asarray(_row_logprobs(model, model.params, jnp.asarray(toks)))
        for i in range(n):
            r, (a, b) = chunk[i], spans[lo + i]
            last = lp[i, len(r) - 1]
            probs[lo + i] = 1.0 / (1.0 + np.exp(last[minus] - last[plus]))
            if b > a:
                ces[lo + i] = -np.mean(lp[i, np.arange(a - 1, b - 1), np.asarray(r[a:b])])
    return probs, ces


@functools.partial(jax.jit, static_argnames=("model", "start"))
def _ce_from(model, params, tokens, resid, start):
    logits = model.apply(params, None, start_at_layer=start, resid=resid).logits
    logp = jax.nn.log_softmax(logits[:, :-1].astype(jnp.float32), axis=-1)
    ce = -jnp.take_along_axis(logp, tokens[:, 1:, None], axis=-1)[..., 0]
    return ce.mean(-1)


def steered_delta_ce(model, site: str, deltas, tokens, *, batch_size: int = 16) -> np.ndarray:
    """CE(steered) - CE(clean) on `tokens` [N, T] (neutral held-out contexts, BOS first) for
    each steering delta [K, P, d] added at positions 0..P-1 of every context: [K] nats/token.

    The model runs once up to the site and is restarted after it for every delta (cheap)."""
    name, layer = residual_site(model, site)
    if name == "resid_mid":
        raise ValueError("steered_delta_ce supports resid_pre / resid_post sites")
    start = layer if name == "resid_pre" else layer + 1
    tokens = jnp.asarray(tokens, jnp.int32)
    deltas = jnp.asarray(deltas, jnp.float32)
    if deltas.ndim == 2:
        deltas = deltas[None]
    k, p, _ = deltas.shape
    if start == 0:
        out = model.forward(tokens, hooks=hooks.capture("embed"), stop_at_layer=1)
        base = out.captures["embed"]
    else:
        base = model.forward(tokens, stop_at_layer=start).resid  # [N, T, d]
    n = tokens.shape[0]
    pad = jnp.zeros((k + 1, base.shape[1], base.shape[2])).at[1:, :p].set(deltas)  # row 0: clean
    flat_tok = jnp.tile(tokens, (k + 1, 1))
    flat_res = (base[None] + pad[:, None]).reshape((-1,) + base.shape[1:])
    ce = []
    for lo in range(0, flat_tok.shape[0], batch_size):
        t, r = flat_tok[lo:lo + batch_size], flat_res[lo:lo + batch_size]
        m = t.shape[0]
        if m < batch_size:
            t = jnp.concatenate([t, jnp.tile(t[-1:], (batch_size - m, 1))])
            r = jnp.concatenate([r, jnp.tile(r[-1:], (batch_size - m, 1, 1))])
        ce.append(np.asarray(_ce_from(model, model.params, t, r, start))[:m])
    ce = np.concatenate(ce).reshape(k + 1, n).mean(-1)
    return ce[1:] - ce[0]
