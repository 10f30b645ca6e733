"""Evaluating an encoder/decoder pair (an SAE, or ITO codes on an SAE's decoder) inside the model:
reconstruction metrics at the site, and the cost to the model's next-token loss when the
reconstruction is spliced in (GDM Progress Update #1; Bricken et al. 2023 "loss recovered";
the names are those of the book's reference-SAE page).

For held-out token contexts we run the model once up to the site's layer, caching the residual
entering that layer and the clean value at the site (both captured through `interp.hooks`).
Then only the layers from the site onwards are run again, three times in one batched call, with
the site's value *replaced* (`hooks.replace`) by

    clean          the cached value itself            -> CE_clean
    zero           0 at every non-BOS position        -> CE_zero
    reconstruction decode(encode(x)) at non-BOS pos.  -> CE_spliced

and report, over the same predicted tokens,

    loss_recovered = (CE_zero - CE_spliced) / (CE_zero - CE_clean)
    delta_ce       =  CE_spliced - CE_clean                          (nats per token)
    kl             =  E_t KL(p_clean(.|t) || p_spliced(.|t))          (nats per token)

BOS convention (the same as the activation store's `drop_bos`): position 0 is never spliced or
ablated and is excluded from L0 / FVU / MSE. Its residual norm is tens to hundreds of times that
of other tokens (an attention sink), so reconstructing it would dominate the reconstruction
metrics and ablating it would wreck the model for reasons unrelated to the SAE. Because the model
is causal and position 0 is kept clean, its own prediction is unchanged in all three runs, so
the losses average over the predictions made at positions 1..T-2 (of tokens 2..T-1): exactly the
positions whose residual was replaced.

The clean run goes through the same restarted program as the two interventions, so an identity
"SAE" gives bit-identical logits (delta CE 0, KL 0, loss recovered 1), and a zero "SAE" gives
the zero-ablation run (loss recovered 0).
"""

from __future__ import annotations

import functools
import math

import jax
import jax.numpy as jnp
import numpy as np
from tqdm import tqdm

from interp import hooks, metrics
from interp.hooks import resolve_site

__all__ = ["splice_metrics", "splice_metrics_many", "next_token_losses"]


def next_token_losses(logits, clean_logits, tokens):
    """Per-token cross-entropy of `logits` on the next token, and KL(clean || logits).

    Shapes: logits, clean_logits [B, T, V]; tokens [B, T]. Returns two [B, T-1] arrays whose
    entry t scores the prediction made at position t of token t+1.
    """
    logp = jax.nn.log_softmax(logits[:, :-1].astype(jnp.float32), axis=-1)
    logq = jax.nn.log_softmax(clean_logits[:, :-1].astype(jnp.float32), axis=-1)
    ce = -jnp.take_along_axis(logp, tokens[:, 1:, None], axis=-1)[..., 0]
    kl = jnp.sum(jnp.exp(logq) * (logq - logp), axis=-1)
    return ce, kl


@functools.partial(jax.jit, static_argnames=("model", "site", "layer"))
def _cache_site(model, params, tokens, site, layer):
    """The residual entering `layer` and the clean value at `site` (one partial forward)."""
    if layer is None:  # the embedding: the whole network runs after it
        # (stop_at_layer=1, not 0: a forward over zero layers fails in interp.models)
        out = model.apply(params, tokens, hooks.capture("embed"), stop_at_layer=1)
        return out.captures["embed"], out.captures["embed"]
    out = model.apply(params, tokens, hooks.capture(*sorted({"resid_pre", site}), layers=layer),
                      stop_at_layer=layer + 1)
    return out.captures["resid_pre"][0], out.captures[site][0]


@functools.partial(jax.jit, static_argnames=("model", "site", "layer"))
def _restart_losses(model, params, tokens, resid, variants, site, layer):
    """CE and KL of each variant value [K, B, T, d] at the site, running only the layers from
    the site's on, all K variants in one batch; variant 0 must be the clean value."""
    k, b = variants.shape[:2]
    flat = variants.reshape((k * b,) + variants.shape[2:])
    if layer is None:
        logits = model.apply(params, None, resid=flat).logits
    elif site == "resid_post" and layer + 1 < model.cfg.n_layers:  # skip layer `layer`
        logits = model.apply(params, None, start_at_layer=layer + 1, resid=flat).logits
    else:
        stacked = jnp.broadcast_to(resid[None], (k,) + resid.shape).reshape(flat.shape[:1] +
                                                                             resid.shape[1:])
        logits = model.apply(params, None, hooks.replace(site, flat, layers=layer),
                             start_at_layer=layer, resid=stacked).logits
    logits = logits.reshape((k, b) + logits.shape[1:])
    ce, kl = jax.vmap(next_token_losses, in_axes=(0, None, None))(logits, logits[0], tokens)
    return ce[:, :, 1:], kl[:, :, 1:]  # drop the prediction made at BOS (identical in all)


@jax.jit
def _reconstruct(encoder_decoder, x):
    f = encoder_decoder.encode(x)
    return f, encoder_decoder.decode(f)


def _reconstruct_any(encoder_decoder, x):
    """Codes and reconstruction; jitted with the encoder as an argument when it is a pytree of
    arrays (an SAE, an ITO encoder), else called directly (any object with encode/decode)."""
    leaves = jax.tree.leaves(encoder_decoder)
    if leaves and all(isinstance(v, (jax.Array, np.ndarray)) for v in leaves):
        return _reconstruct(encoder_decoder, x)
    f = encoder_decoder.encode(x)
    return f, encoder_decoder.decode(f)


def splice_metrics(model, site: str, encoder_decoder, tokens, *, batch_size: int = 4,
                   progress: bool = True) -> dict[str, float]:
    """L0, FVU, MSE, loss recovered, delta CE and KL of `encoder_decoder` at `site` on `tokens`.

    `model`: an `interp.models.Model`; `site`: "blocks.<layer>.<site>" (or "embed"), as
    `interp.hooks.Site` spells it; `encoder_decoder`: anything with `encode(x) -> f` and
    `decode(f) -> x_hat` on [..., d] arrays; `tokens`: int [N, T] held-out contexts with BOS
    in column 0 (e.g. `interp.data.packed_split("heldout", ...)`). See the module docstring for
    the definitions and the BOS convention.
    """
    return splice_metrics_many(model, site, [encoder_decoder], tokens, batch_size=batch_size,
                               progress=progress)[0]


def splice_metrics_many(model, site: str, encoder_decoders, tokens, *, batch_size: int = 4,
                        group: int = 6, progress: bool = True) -> list[dict[str, float]]:
    """`splice_metrics` for many encoder/decoders on the same tokens, sharing the work: the
    partial forward to the site and the zero-ablated run happen once per batch, and the
    reconstructions are spliced `group` at a time (with the clean run) in one batched call.
    An L1 sweep of 30 SAEs costs about 1.2 model passes per SAE instead of 3."""
    name, layer = resolve_site(model, site)
    if name in ("final_norm", "logits"):
        raise ValueError(f"site {site!r}: splicing needs a site before the unembedding")
    tokens = np.asarray(tokens)
    if tokens.ndim != 2 or tokens.shape[1] < 3 or len(tokens) == 0:
        raise ValueError(f"tokens must be a non-empty [contexts, T>=3] array, got {tokens.shape}")
    if batch_size < 1 or group < 1:
        raise ValueError(f"batch_size and group must be positive, got {batch_size}, {group}")
    encoder_decoders = list(encoder_decoders)
    n = len(encoder_decoders)
    if n == 0:
        return []

    xs = []
    x_hats = [[] for _ in range(n)]
    l0_sum = np.zeros(n)
    n_rows = 0
    ce_sum = np.zeros(n + 2)  # clean, zero, each reconstruction
    kl_sum = np.zeros(n + 2)
    n_pred = 0
    for lo in tqdm(range(0, len(tokens), batch_size), desc=f"splice {site}", disable=not progress):
        batch = jnp.asarray(tokens[lo:lo + batch_size], jnp.int32)
        resid, x = _cache_site(model, model.params, batch, name, layer)
        x = x.astype(jnp.float32)
        body = x[:, 1:].reshape(-1, x.shape[-1])
        xs.append(np.asarray(body))
        n_rows += body.shape[0]
        recons = []
        for i, ed in enumerate(encoder_decoders):
            f, x_hat = _reconstruct_any(ed, body)
            x_hat = jnp.asarray(x_hat, jnp.float32)
            if not bool(jnp.all(jnp.isfinite(x_hat))):
                raise FloatingPointError(f"the reconstruction {i} at {site} has NaN/inf values")
            x_hats[i].append(np.asarray(x_hat))
            l0_sum[i] += float(jnp.sum(jnp.asarray(f) != 0))
            recons.append(x.at[:, 1:].set(x_hat.reshape(x[:, 1:].shape)))
        zero = x.at[:, 1:].set(0.0)
        # slots: [clean, zero, r0 .. r_{group-2}], then [clean, r ..] in later groups
        pending = [("zero", zero)] + [(i, r) for i, r in enumerate(recons)]
        first = True
        while pending:
            take, pending = pending[:group], pending[group:]
            ce, kl = _restart_losses(model, model.params, batch, resid,
                                     jnp.stack([x] + [v for _, v in take]), name, layer)
            ce = np.asarray(jnp.sum(ce, axis=(1, 2)), np.float64)
            kl = np.asarray(jnp.sum(kl, axis=(1, 2)), np.float64)
            if first:
                ce_sum[0] += ce[0]
                kl_sum[0] += kl[0]
            for j, (slot, _) in enumerate(take, start=1):
                k = 1 if slot == "zero" else slot + 2
                ce_sum[k] += ce[j]
                kl_sum[k] += kl[j]
            first = False
        n_pred += (batch.shape[0]) * (batch.shape[1] - 2)

    x_all = np.concatenate(xs)
    ce_clean, ce_zero = ce_sum[:2] / n_pred
    gap = ce_zero - ce_clean
    out = []
    for i in range(n):
        x_hat_all = np.concatenate(x_hats[i])
        ce_spliced = ce_sum[i + 2] / n_pred
        out.append({
            "l0": l0_sum[i] / n_rows,
            "fvu": float(metrics.fvu(x_all, x_hat_all)),
            "mse": float(metrics.mse(x_all, x_hat_all)),
            "ce_clean": float(ce_clean),
            "ce_zero": float(ce_zero),
            "ce_spliced": float(ce_spliced),
            "loss_recovered": float((ce_zero - ce_spliced) / gap) if gap != 0 else math.nan,
            "delta_ce": float(ce_spliced - ce_clean),
            "kl": float(kl_sum[i + 2] / n_pred),
            "kl_zero": float(kl_sum[1] / n_pred),
            "n_tokens": int(n_pred),
        })
    return out
