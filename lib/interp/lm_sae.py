"""One shared harvest and one evaluation for every LM notebook (ghost grads, recipe, ITO,
steering, auto-interp): they all call `activations(...)` with the same arguments and so reuse
one cached activation store, and report the same metrics through `splice_metrics(...)`.

    from interp import lm_sae, sae
    acts = lm_sae.activations("smollm2-135m", "blocks.6.resid_post", n_tokens=1_000_000)
    batches = acts.store.batches(acts.site, 4096, seed=0)        # float32, BOS dropped
    ...train an SAE...
    lm_sae.splice_metrics(acts.model, acts.site, model_sae, acts.heldout)
    # {'l0', 'fvu', 'mse', 'loss_recovered', 'delta_ce', 'kl', 'ce_clean', 'ce_zero', ...}

This module only composes `interp.models`, `interp.data` (corpus, packing, store) and
`interp.evaluation`; it owns no logic of its own beyond choosing the shared defaults.
"""

from __future__ import annotations

import dataclasses
import fcntl
import hashlib
import time
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np

from interp import cache, evaluation, models, sae
from interp.data import corpus as corpus_mod
from interp.data import model_sites, packing
from interp.data.model_sites import activation_fn
from interp.data.store import ActivationStore
from interp.hooks import resolve_site
from interp.sae import training as sae_training
from interp.sae.checkpoint import CHECKPOINT_FILE
from interp.sae.state import sweep_configs

DEFAULT_MODEL = "smollm2-135m"
# The residual stream entering layer 7 of 30 (= leaving layer 6): early-middle, cheap to
# harvest (the forward stops after layer 6), and a layer where ActAdd steering moves SmolLM2's
# next-token probabilities (the steering page measures steering per layer).
DEFAULT_SITE = "blocks.6.resid_post"
DEFAULT_CONTEXT = 128


@dataclasses.dataclass(frozen=True)
class Activations:
    """A harvested training store plus held-out token contexts for evaluation."""

    model: models.Model
    site: str                # "blocks.<layer>.<site>", as interp.hooks.Site spells it
    store: ActivationStore   # the train split
    heldout: np.ndarray      # int32 [n_heldout_contexts, context_len], BOS in column 0

    @property
    def d_in(self) -> int:
        return self.store.spec.sites[self.site]


def _model(model: str | models.Model) -> models.Model:
    return models.load(model, progress=False) if isinstance(model, str) else model


def activations(model=DEFAULT_MODEL, site: str = DEFAULT_SITE, *, n_tokens: int = 1_000_000,
                context_len: int = DEFAULT_CONTEXT, split: str = "train",
                heldout_contexts: int = 64, dtype: str = "bfloat16", batch_size: int = 16,
                progress: bool = True, on_shard=None, verify: bool = False) -> Activations:
    """Harvest (or reuse from the cache, or resume) `n_tokens` non-BOS activations of `site`.

    `n_tokens` counts the activations an SAE will see: the store serves every position but
    BOS, so ceil(n_tokens / (context_len - 1)) contexts are harvested. The packed contexts are
    the first ones of the corpus split (documents there are already in a seeded random order),
    so equal arguments give the same store. Held-out contexts come from the corpus's
    `heldout` split, whose documents never appear in `train`. `on_shard(i)` is called after
    each shard harvested in this call (progress, timing). `verify=True` re-hashes every shard of
    an existing store and harvests the bad ones again (the repair a CorruptShardError advises).
    """
    if n_tokens < 1:
        raise ValueError(f"n_tokens must be positive, got {n_tokens}")
    if split == "heldout":
        raise ValueError("split='heldout' is reserved for evaluation; harvest 'train' or 'ood'")
    m = _model(model)
    resolve_site(m, site)  # clear error for an unknown site before any work
    corpus = corpus_mod.load()
    n_contexts = -(-n_tokens // (context_len - 1))
    tokens = packing.packed_split(split, m.tokenizer, context_len, n_contexts, corpus=corpus,
                                  progress=progress)
    store = model_sites.harvest_model(m, tokens, [site], corpus_revision=corpus.revision,
                                      dtype=dtype, batch_size=batch_size, progress=progress,
                                      on_shard=on_shard, verify=verify)
    heldout = packing.packed_split("heldout", m.tokenizer, context_len, heldout_contexts,
                                   corpus=corpus, progress=progress)
    return Activations(m, site, store, heldout)


def splice_metrics(model, site: str, encoder_decoder, heldout_tokens, *, batch_size: int = 4,
                   progress: bool = True) -> dict[str, float]:
    """L0, FVU, MSE (at the site, BOS excluded) and loss recovered, delta CE, KL (by splicing
    the reconstruction into the model at every non-BOS position) on held-out contexts; see
    `interp.evaluation.splice_metrics` for the definitions."""
    return evaluation.splice_metrics(_model(model), site, encoder_decoder, heldout_tokens,
                                     batch_size=batch_size, progress=progress)


# --------------------------------------------------------------------------- training, cached
def training_batches(store, site: str, batch_size: int, steps: int, *, seed: int):
    """Exactly `steps` full batches of `site`, cycling through epochs of the store (epoch e is
    reshuffled with (seed, e)), so a run can take more steps than one epoch holds."""
    if store.num_rows() < batch_size:
        raise ValueError(f"the store serves {store.num_rows()} rows per epoch, fewer than one "
                         f"batch of {batch_size}")
    served, epoch = 0, 0
    while served < steps:
        for x in store.batches(site, batch_size, seed=seed, epoch=epoch, drop_remainder=True):
            yield x
            served += 1
            if served == steps:
                return
        epoch += 1


POOL_EPOCH = 2**31  # resampling pools read epochs from here on: an order training never reaches


def resample_pool(store, site: str, rows: int, *, seed: int):
    """`pool(event)`: the first `rows` rows of the store's shuffled epoch POOL_EPOCH + event, a
    fresh draw of candidate inputs for each resampling event, independent of the training
    order (Anthropic's pool of held inputs, Towards Monosemanticity 2023)."""
    if rows > store.num_rows():
        raise ValueError(f"resample_pool_rows={rows} exceeds the {store.num_rows()} rows the "
                         "store holds")

    def pool(event: int) -> np.ndarray:
        # a buffer of 2 x rows: one shuffle of about 2 x rows stored rows makes the pool
        return next(iter(store.batches(site, rows, seed=seed, epoch=POOL_EPOCH + event,
                                       buffer_rows=max(2 * rows, 1 << 17))))

    return pool


@dataclasses.dataclass(frozen=True)
class TrainedRun:
    """A (possibly vmapped) training run: stacked state, per-run configs, history, wall time."""

    state: sae.TrainState         # stacked over runs when `sweep` was given
    configs: tuple[sae.SAEConfig, ...]  # one per run
    history: dict                 # as returned by sae.train / sae.train_sweep
    seconds: float                # training wall time when it was computed (not reloaded)
    from_cache: bool
    passes: tuple = ()            # `train_by_passes`: the held-out loss after each pass
    plateaued: bool | None = None  # `train_by_passes`: whether the stopping rule ended it

    def saes(self) -> list[sae.SAE]:
        """One SAE (raw input units) per run."""
        if len(self.configs) == 1 and not _is_stacked(self.state):
            return [sae.to_sae(self.state, self.configs[0])]
        return [sae.to_sae(sae.sweep_member(self.state, i), c) for i, c in enumerate(self.configs)]


def _is_stacked(state) -> bool:
    return np.ndim(np.asarray(state.step)) > 0


def _sae_source_hash() -> str:
    """Training code is part of the cache key: a changed SAE library (its Python or its C++
    kernels) retrains. The command line (`__main__.py`) trains through the same modules, so
    editing it retrains nothing."""
    digest = hashlib.sha256()
    folder = Path(sae.__file__).parent
    for f in sorted([*folder.glob("*.py"), *folder.glob("*.cc")]):
        if f.name != "__main__.py":
            digest.update(f.name.encode() + f.read_bytes())
    return digest.hexdigest()[:16]


def train_cached(acts: Activations, config, sweep: dict | None = None, *, log_every: int = 50,
                 progress: bool = True, checkpoint_every: int | None = None,
                 continue_from: TrainedRun | None = None) -> TrainedRun:
    """Train one SAE (or a vmapped `sweep` of them) on `acts`' store, or reload the result.

    The cache key is the store (its content-addressed folder), the site, the config and the
    sweep, so every notebook asking for the same run shares it. Training checkpoints into the
    cache folder; an interrupted run resumes from its last checkpoint instead of restarting.
    The data order is `training_batches(..., seed=config.seed)`. `continue_from` (a finished
    run of the same config with fewer steps) starts from its final checkpoint: the schedule and
    data order do not depend on the step count, so the result equals training from scratch.
    """
    configs = tuple(sweep_configs(config, sweep)) if sweep else (config,)
    key = cache.content_hash({"store": acts.store.path.name, "site": acts.site,
                              "config": config.to_dict(), "sweep": sweep,
                              "code": _sae_source_hash(), "v": 1})
    folder = cache.cache_dir("sae-runs", key)
    done = folder / "done.json"

    def data():
        return training_batches(acts.store, acts.site, config.batch_size, config.steps,
                                seed=config.seed)

    pool = (resample_pool(acts.store, acts.site, config.resample_pool_rows, seed=config.seed)
            if config.resample_pool_rows and config.dead_strategy == "resample" else None)

    # One trainer per run: a second process asking for the same run (another notebook, a
    # parallel build) waits here and then reloads the result instead of training it again.
    with open(folder / ".lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        if done.exists():
            state, history, seconds = _reload_run(folder)
            return TrainedRun(state, configs, history, seconds, True)
        every = checkpoint_every or max(config.steps // 4, 1)
        start = time.perf_counter()
        if continue_from is not None and not (folder / CHECKPOINT_FILE).exists():
            _check_continuation(continue_from, config, sweep)
            sae.save_checkpoint(folder, continue_from.state, continue_from.configs[0],
                                continue_from.history)
        if (folder / CHECKPOINT_FILE).exists():
            state, history = sae.resume(folder, data(), log_every=log_every, checkpoint_every=every,
                                        progress=progress, resample_pool=pool,
                                        steps=config.steps)
        elif sweep:
            state, history = sae.train_sweep(config, data(), sweep, log_every=log_every,
                                             checkpoint_dir=folder, checkpoint_every=every,
                                             progress=progress, resample_pool=pool)
        else:
            state, history = sae.train(config, data(), log_every=log_every, checkpoint_dir=folder,
                                       checkpoint_every=every, progress=progress,
                                       resample_pool=pool)
        seconds = time.perf_counter() - start
        cache.write_checked_json(done, {"seconds": seconds})
        return TrainedRun(state, configs, history, seconds, False)


def _check_continuation(previous: TrainedRun, config, sweep):
    """A run can only be continued into the same config (step count aside), one SAE."""
    if sweep or len(previous.configs) != 1:
        raise ValueError("continue_from continues one SAE, not a sweep")
    before = previous.configs[0]
    if before.replace(steps=config.steps) != config or before.steps > config.steps:
        raise ValueError(f"continue_from: the run to continue ({before.steps} steps) is not this "
                         f"config with fewer steps ({config.steps}); only the step count may grow")


def _reload_run(folder):
    """(state, history, seconds) of a finished cached run; `CorruptCacheError` naming the
    folder to delete if its checkpoint or `done.json` is missing, damaged or inconsistent."""
    checkpoint = folder / CHECKPOINT_FILE
    if not checkpoint.exists():
        raise cache.CorruptCacheError(checkpoint, "missing although done.json marks the run "
                                      "finished", delete=folder, then="to train it again")
    try:
        state, _, history, _ = sae.load_checkpoint(folder)
    except sae.CorruptCheckpointError as e:
        raise cache.CorruptCacheError(e.path, e.problem, delete=folder,
                                      then="to train it again") from e
    record = cache.read_checked_json(folder / "done.json", delete=folder,
                                     then="to train it again")
    if not isinstance(record, dict) or not isinstance(record.get("seconds"), (int, float)):
        raise cache.CorruptCacheError(folder / "done.json", "holds no number 'seconds'",
                                      delete=folder, then="to train it again")
    return state, history, record["seconds"]


def reference_config(acts: Activations, *, expansion: int = 4, l1_coeff: float = 4e-3,
                     lr: float = 1e-3, batch_size: int = 1024, epochs: float = 2.0,
                     seed: int = 0, **changes) -> sae.SAEConfig:
    """The project's reference ReLU SAE recipe on `acts` (GDM baseline: Adam beta1 = 0, unit
    decoder norms, inputs scaled to E||x|| = sqrt(d), linear LR warm-up over 5% of training).
    `epochs` passes over the store fix the step count; `changes` override any SAEConfig field.
    Trained with step="auto": the dense step while the codes are dense, the C++ sparse kernels
    (`sae.sparse_ffi`) once they are sparse, on CPU; the same numbers up to float rounding."""
    steps = max(1, int(epochs * (acts.store.num_rows() // batch_size)))
    base = dict(d_in=acts.d_in, d_sae=expansion * acts.d_in, architecture="relu",
                l1_coeff=l1_coeff, lr=lr, batch_size=batch_size, steps=steps,
                lr_warmup_steps=max(1, steps // 20), input_normalisation="sqrt_d",
                dead_window_steps=max(1, min(1000, steps // 4)), seed=seed, step="auto")
    base.update(changes)
    return sae.SAEConfig(**base)


def reference_sae(acts: Activations, *, progress: bool = True,
                  plateau_tolerance: float | None = None, **recipe) -> tuple[sae.SAE, TrainedRun]:
    """The reference SAE (see `reference_config`), trained once and shared by every notebook
    that asks with the same arguments (steering, auto-interp, ITO). Returns (SAE, TrainedRun).

    With `plateau_tolerance`, `epochs` is a cap and the SAE trains pass by pass (one epoch
    each, warm-up over 5% of the first) until a pass lowers the held-out loss by no more than
    that fraction of it (`train_by_passes`)."""
    if plateau_tolerance is None:
        run = train_cached(acts, reference_config(acts, **recipe), progress=progress)
        return run.saes()[0], run
    epochs = recipe.pop("epochs", 2.0)
    if float(epochs) != int(epochs) or int(epochs) < 1:
        raise ValueError(f"epochs is the cap on whole passes when plateau_tolerance is set; "
                         f"give a whole number >= 1, got {epochs}")
    one_pass = reference_config(acts, epochs=1.0, **recipe)
    run = train_by_passes(acts, one_pass, max_passes=int(epochs), tolerance=plateau_tolerance,
                          progress=progress)
    return run.saes()[0], run


def heldout_loss(run: TrainedRun, rows, *, chunk: int = 4096) -> float:
    """The training objective (reconstruction + sparsity penalty, training units, no auxiliary
    loss) of a single-SAE run on held-out activation rows [n, d_in], in chunks of rows."""
    state, cfg = run.state, run.configs[0]
    hyper, dead = sae_training.config_hyper(cfg), jnp.zeros((cfg.d_sae,), bool)
    rows = np.asarray(rows, np.float32)
    total = 0.0
    for lo in range(0, len(rows), chunk):
        x = jnp.asarray(rows[lo:lo + chunk]) * state.input_scale
        _, terms = sae_training.loss_fn(state.params, x, dead, state.step, state.input_sq_norm,
                                        hyper, cfg)
        total += float(terms["recon_loss"] + terms["sparsity_loss"]) * len(x)
    return total / len(rows)


def train_by_passes(acts: Activations, one_pass, *, max_passes: int, tolerance: float,
                    progress: bool = True) -> TrainedRun:
    """Train `one_pass` (a config whose `steps` make one pass) for pass after pass, each
    continuing the last (`train_cached(continue_from=...)`), until a pass lowers the held-out
    loss (`heldout_loss` on every held-out context of `acts`) by no more than `tolerance` of
    the previous pass's, or `max_passes` have run. The stopping rule of the reference SAE
    (GDM's SAEs train far longer; on a CPU the store is small, so "longer" means more passes).

    The decision is cached with the runs: every page asking for the same reference SAE gets
    the same pass, whatever held-out contexts it harvested."""
    if not 0 <= tolerance < 1:
        raise ValueError(f"tolerance must lie in [0, 1), got {tolerance}")
    key = cache.content_hash({"store": acts.store.path.name, "site": acts.site,
                              "config": one_pass.to_dict(), "max_passes": int(max_passes),
                              "tolerance": float(tolerance), "code": _sae_source_hash(),
                              "v": 1})
    record_path = cache.cache_dir("sae-passes", key) / "passes.json"
    decided = cache.read_checked_json(record_path) if record_path.exists() else None
    rows = None if decided else heldout_activations(acts)
    losses, run = [], None
    for k in range(1, int(max_passes) + 1):
        run = train_cached(acts, one_pass.replace(steps=k * one_pass.steps), progress=progress,
                           continue_from=run)
        if decided:
            if k == decided["passes"]:
                break
            continue
        losses.append(heldout_loss(run, rows))
        if k >= 2 and losses[-2] - losses[-1] <= tolerance * losses[-2]:
            break
    if not decided:
        plateaued = len(losses) >= 2 and losses[-2] - losses[-1] <= tolerance * losses[-2]
        decided = {"passes": len(losses), "heldout_loss": losses, "plateaued": plateaued,
                   "heldout_rows": int(len(rows))}
        cache.write_checked_json(record_path, decided)
    return dataclasses.replace(run, passes=tuple(decided["heldout_loss"]),
                               plateaued=bool(decided["plateaued"]))


def splice_metrics_many(model, site: str, encoder_decoders, heldout_tokens, *,
                        batch_size: int = 4, progress: bool = True) -> list[dict[str, float]]:
    """`splice_metrics` for many SAEs on the same held-out contexts, sharing the clean and
    zero runs (`interp.evaluation.splice_metrics_many`)."""
    return evaluation.splice_metrics_many(_model(model), site, encoder_decoders,
                                          heldout_tokens, batch_size=batch_size,
                                          progress=progress)


def site_activations(model, site: str, tokens, *, batch_size: int = 8) -> np.ndarray:
    """float32 [N * (T - 1), d] activations of `site` on contexts `tokens` [N, T] (BOS in column
    0, its row dropped as in the store and the splice evaluation)."""
    tokens = np.asarray(tokens)
    if tokens.ndim != 2 or tokens.shape[1] < 2 or len(tokens) == 0:
        raise ValueError(f"tokens must be a non-empty [contexts, T>=2] array; got {tokens.shape}")
    fn = jax.jit(activation_fn(model, [site], with_params=True))
    out = []
    for lo in range(0, len(tokens), batch_size):
        x = fn(model.params, jnp.asarray(tokens[lo:lo + batch_size], jnp.int32))[site]
        out.append(np.asarray(x, np.float32)[:, 1:].reshape(-1, x.shape[-1]))
    return np.concatenate(out)


def heldout_activations(acts: Activations, n_contexts: int | None = None, *,
                        batch_size: int = 8) -> np.ndarray:
    """float32 [n_contexts * (T - 1), d] activations of `acts.site` on the held-out contexts
    (BOS dropped, as in the store): data no SAE was trained on, for FVU / L0 / density."""
    tokens = acts.heldout if n_contexts is None else acts.heldout[:n_contexts]
    return site_activations(acts.model, acts.site, tokens, batch_size=batch_size)
