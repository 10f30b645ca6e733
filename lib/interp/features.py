"""Reading an SAE feature: its top-activating held-out contexts (the activating tokens
highlighted) and the logit-lens words of its decoder direction.

Why these two: they are the standard cheap interpretations (Bricken et al. 2023, "Towards
Monosemanticity": feature dashboards). The top contexts say what *input* turns a feature on; the
logit lens W_U (g * d_i) (g: the final RMSNorm gain, as TransformerLens folds it into W_U) says
which next tokens the feature's *output* direction promotes if it reached the unembedding
directly. Used by the steering notebook to label features and by auto-interp.
"""

from __future__ import annotations

import dataclasses
import functools
from collections.abc import Sequence

import jax
import jax.numpy as jnp
import numpy as np

from interp import hooks
from interp.autointerp.records import Record, select_examples, token_strings
from interp.hooks import resolve_site


@functools.partial(jax.jit, static_argnames=("model", "name", "layer"))
def _site_value(model, params, tokens, name, layer):
    out = model.apply(params, tokens, hooks.capture(name, layers=layer), stop_at_layer=layer + 1)
    return out.captures[name][0]


def feature_activations(model, site: str, sae, tokens, features: Sequence[int] | None = None,
                        *, batch_size: int = 8) -> np.ndarray:
    """SAE feature activations on held-out contexts `tokens` [N, T] (BOS in column 0):
    [N, T, k] for `features` (all when None). The BOS column is set to 0: the SAE never saw
    BOS activations (their norm is an attention-sink outlier)."""
    name, layer = resolve_site(model, site)
    if layer is None:
        raise ValueError(f"feature_activations needs a per-layer site, got {site!r}")
    tokens = np.asarray(tokens, np.int32)
    if tokens.ndim != 2:
        raise ValueError(f"tokens must be [N, T], got {tokens.shape}")
    idx = None if features is None else jnp.asarray(list(features), jnp.int32)
    out = []
    for lo in range(0, len(tokens), batch_size):
        chunk = tokens[lo:lo + batch_size]
        n = len(chunk)
        if n < batch_size:
            chunk = np.concatenate([chunk, np.repeat(chunk[-1:], batch_size - n, 0)])
        x = _site_value(model, model.params, jnp.asarray(chunk), name, layer)
        f = sae.encode(x.astype(jnp.float32))
        if idx is not None:
            f = f[..., idx]
        out.append(np.asarray(f)[:n])
    acts = np.concatenate(out)
    acts[:, 0] = 0.0
    return acts


@dataclasses.dataclass(frozen=True)
class Context:
    text: str        # the window with activating tokens marked as [[token]]
    max_act: float
    top_token: str   # the token where the feature is largest


def highlight(record: Record, *, before: int = 12, after: int = 3,
              threshold: float = 0.3) -> Context:
    """A window around the record's maximum; tokens with act >= threshold * max become [[tok]]."""
    peak = int(np.argmax(record.acts))
    lo, hi = max(0, peak - before), min(len(record.tokens), peak + after + 1)
    cut = threshold * record.max_act
    parts = [f"[[{t}]]" if record.acts[i] >= cut and record.acts[i] > 0 else t
             for i, t in zip(range(lo, hi), record.tokens[lo:hi])]
    return Context("".join(parts).replace("\n", "\u21b5"), record.max_act, record.tokens[peak])


def top_contexts(acts, tokens, decode, *, n: int = 5, **window) -> list[Context]:
    """The `n` held-out contexts where one feature is largest (acts [N, T], tokens [N, T] ids,
    `decode(ids) -> str`), highlighted (see `highlight`). Reuses auto-interp's record selection."""
    acts = np.asarray(acts)
    strings = [token_strings(decode, row) for row in np.asarray(tokens)]
    ex = select_examples(acts, strings, n_top=n, n_quantiles=0, per_quantile=0, n_random=0)
    return [highlight(r, **window) for r in ex.top]


def logit_lens(model, direction, k: int = 10, *, bottom: bool = False,
               cosine: bool = True) -> list[tuple[str, float]]:
    """The k tokens whose logits the direction raises most (or lowers most, `bottom`):
    W_U (g * direction), g the final norm gain; pairs (token string, score).

    With `cosine` (the default) each token's logit is divided by the norm of its unembedding
    row. Why: SmolLM2's tied embedding has rare word-fragment tokens (" strugg", " authent")
    with large norms that top the raw lens of almost every direction, hiding what it promotes."""
    d = jnp.asarray(direction, jnp.float32)
    gain = model.params.get("final_norm")
    if gain is not None:
        d = d * gain
    unembed = model.params["embed"]
    logits = np.asarray(unembed @ d)
    if cosine:
        logits = logits / np.maximum(np.asarray(jnp.linalg.norm(unembed, axis=-1)), 1e-12)
    order = np.argsort(logits if bottom else -logits, kind="stable")[:k]
    return [(model.tokenizer.decode([int(i)]), float(logits[i])) for i in order]


@dataclasses.dataclass(frozen=True)
class FeatureCard:
    feature: int
    lens: tuple[str, ...]          # logit-lens top words
    top_tokens: tuple[str, ...]    # the peak token of each top context
    contexts: tuple[Context, ...]
    frequency: float               # fraction of held-out non-BOS tokens where it fires

    def label(self, n: int = 4) -> str:
        lens = ", ".join(repr(w.strip()) for w in self.lens[:n])
        toks = ", ".join(repr(t.strip()) for t in dict.fromkeys(self.top_tokens[:n]))
        return f"#{self.feature} fires on {toks}; promotes {lens}"


def cards(model, site: str, sae, tokens, features: Sequence[int], *, n_contexts: int = 5,
          n_lens: int = 8, batch_size: int = 8) -> dict[int, FeatureCard]:
    """Top contexts + logit lens for each feature (one pass over `tokens` for all of them)."""
    features = [int(f) for f in features]
    if not features:
        return {}
    acts = feature_activations(model, site, sae, tokens, features, batch_size=batch_size)
    w_dec = np.asarray(sae.params["W_dec"])
    out = {}
    for j, f in enumerate(features):
        ctx = top_contexts(acts[..., j], tokens, model.tokenizer.decode, n=n_contexts)
        lens = tuple(w for w, _ in logit_lens(model, w_dec[f], n_lens))
        freq = float(np.mean(acts[:, 1:, j] > 0))
        out[f] = FeatureCard(f, lens, tuple(c.top_token for c in ctx), tuple(ctx), freq)
    return out


def store_activations(store, site: str, sae, features: Sequence[int], *,
                      chunk_contexts: int = 128) -> np.ndarray:
    """[contexts, T, k] activations of `features` over a whole training store (BOS column 0),
    read from the stored activations (no model forward)."""
    idx = np.asarray(list(features), np.int64)
    n = store.spec.n_contexts
    out = np.zeros((n, store.spec.context_length, len(idx)), np.float32)
    for lo in range(0, n, chunk_contexts):
        x = store.read(site, lo, min(n, lo + chunk_contexts))[:, 1:]
        f = np.asarray(sae.encode(jnp.asarray(x.reshape(-1, x.shape[-1]))))
        out[lo:lo + len(x), 1:] = f[:, idx].reshape(len(x), -1, len(idx))
    return out


def store_cards(model, site: str, sae, store, features: Sequence[int], *, n_contexts: int = 8,
                n_lens: int = 8, chunk_contexts: int = 128) -> dict[int, FeatureCard]:
    """Feature cards from the SAE's whole training store: each feature's top-activating
    contexts among every stored context (not a few held-out ones: rare features need many
    tokens to show their top examples), its logit lens, and its firing frequency there."""
    features = [int(f) for f in features]
    if not features:
        return {}
    acts = store_activations(store, site, sae, features, chunk_contexts=chunk_contexts)
    tokens = store.tokens()
    w_dec = np.asarray(sae.params["W_dec"])
    out = {}
    for j, f in enumerate(features):
        peak = acts[..., j].max(-1)
        best = np.argsort(-peak, kind="stable")[:n_contexts]
        best = best[peak[best] > 0]
        ctx = top_contexts(acts[best, :, j], tokens[best], model.tokenizer.decode,
                           n=n_contexts) if len(best) else []
        lens = tuple(w for w, _ in logit_lens(model, w_dec[f], n_lens))
        freq = float(np.mean(acts[:, 1:, j] > 0))
        out[f] = FeatureCard(f, lens, tuple(c.top_token for c in ctx), tuple(ctx), freq)
    return out
