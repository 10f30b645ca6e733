"""Steering cost, with no external API (the steering page's cost axis).

Steered delta CE: CE of the steered model on neutral held-out text (the vector added at its front
positions, as in ActAdd's perplexity experiment) minus the unsteered CE. A vector that steers
only by wrecking the model shows up here; variants are compared at equal delta CE.
"""

from __future__ import annotations

import functools

import jax
import jax.numpy as jnp
import numpy as np

from interp import hooks
from interp.steering.actadd import resume_layer


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
    start = resume_layer(model, site)
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
