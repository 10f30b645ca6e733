"""One shared harvest and one evaluation for every LM notebook (ghost grads, recipe, ITO,
steering, auto-interp): they all call `activations(...)` with the same arguments and so reuse
one cached activation store, and report the same metrics through `evaluate(...)`.

    from interp import lm_sae, sae
    acts = lm_sae.activations("smollm2-135m", "blocks.6.resid_post", n_tokens=1_000_000)
    batches = acts.store.batches(acts.site, 4096, seed=0)        # float32, BOS dropped
    ...train an SAE...
    lm_sae.evaluate(acts.model, acts.site, model_sae, acts.heldout)
    # {'l0', 'fvu', 'mse', 'loss_recovered', 'delta_ce', 'kl', 'ce_clean', 'ce_zero', ...}

This module only composes `interp.models`, `interp.data` (corpus, packing, store) and
`interp.evaluation`; it owns no logic of its own beyond choosing the shared defaults.
"""

from __future__ import annotations

import dataclasses

import numpy as np

DEFAULT_MODEL = "smollm2-135m"
# The residual stream entering layer 7 of 30 (= leaving layer 6): early-middle, cheap to
# harvest (the forward stops after layer 6), and the layer where steering SmolLM2 works best
# (research/models.md).
DEFAULT_SITE = "blocks.6.resid_post"
DEFAULT_CONTEXT = 128


@dataclasses.dataclass(frozen=True)
class Activations:
    """A harvested training store plus held-out token contexts for evaluation."""

    model: object            # interp.models.Model
    site: str                # "blocks.<layer>.<site>" as in interp.data.model_sites
    store: object            # interp.data.ActivationStore (train split)
    heldout: np.ndarray      # int32 [n_heldout_contexts, context_len], BOS in column 0

    @property
    def d_in(self) -> int:
        return self.store.spec.sites[self.site]


def _model(model):
    from interp import models

    return models.load(model, progress=False) if isinstance(model, str) else model


def activations(model=DEFAULT_MODEL, site: str = DEFAULT_SITE, *, n_tokens: int = 1_000_000,
                context_len: int = DEFAULT_CONTEXT, split: str = "train",
                heldout_contexts: int = 64, dtype: str = "bfloat16", batch_size: int = 16,
                progress: bool = True, on_shard=None) -> Activations:
    """Harvest (or reuse from the cache, or resume) `n_tokens` non-BOS activations of `site`.

    `n_tokens` counts the activations an SAE will see: the store serves every position but
    BOS, so ceil(n_tokens / (context_len - 1)) contexts are harvested. The packed contexts are
    the first ones of the corpus split (documents there are already in a seeded random order),
    so equal arguments give the same store. Held-out contexts come from the corpus's
    `heldout` split, whose documents never appear in `train`. `on_shard(i)` is called after
    each shard harvested in this call (progress, timing).
    """
    from interp.data import corpus as corpus_mod
    from interp.data import model_sites, packing

    if n_tokens < 1:
        raise ValueError(f"n_tokens must be positive, got {n_tokens}")
    if split == "heldout":
        raise ValueError("split='heldout' is reserved for evaluation; harvest 'train' or 'ood'")
    m = _model(model)
    model_sites.parse_site(m, site)  # clear error for an unknown site before any work
    corpus = corpus_mod.load()
    n_contexts = -(-n_tokens // (context_len - 1))
    tokens = packing.packed_split(split, m.tokenizer, context_len, n_contexts, corpus=corpus,
                                  progress=progress)
    store = model_sites.harvest_model(m, tokens, [site], corpus_revision=corpus.revision,
                                      dtype=dtype, batch_size=batch_size, progress=progress,
                                      on_shard=on_shard)
    heldout = packing.packed_split("heldout", m.tokenizer, context_len, heldout_contexts,
                                   corpus=corpus, progress=progress)
    return Activations(m, site, store, heldout)


def evaluate(model, site: str, encoder_decoder, heldout_tokens, *, batch_size: int = 4,
             progress: bool = True) -> dict[str, float]:
    """L0, FVU, MSE (at the site, BOS excluded) and loss recovered, delta CE, KL (by splicing
    the reconstruction into the model at every non-BOS position) on held-out contexts; see
    `interp.evaluation.splice_metrics` for the definitions."""
    from interp.evaluation import splice_metrics

    return splice_metrics(_model(model), site, encoder_decoder, heldout_tokens,
                          batch_size=batch_size, progress=progress)
