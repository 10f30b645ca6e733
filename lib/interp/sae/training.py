"""Training: one pure, jitted step over an explicit `TrainState`; `train` drives it from any
iterator of activation batches; `train_sweep` vmaps the same step over stacked states so a
sweep over L1 coefficients (or seeds, or any scalar in `SWEEPABLE`) is one compiled program.

Sweepable scalars travel in a dict `hyper` of arrays next to the state (not in the static config),
which is what lets `jax.vmap` map over them.
"""

from __future__ import annotations

import dataclasses
import functools
import itertools
from pathlib import Path
from typing import Iterable

import jax
import jax.numpy as jnp
import numpy as np
from jax.experimental import multihost_utils
from tqdm import tqdm

from . import checkpoint as ckpt
from . import common, registry, sharding
from . import dead as dead_lib
from .config import SWEEPABLE, SAEConfig
from .model import SAE, fold_input_scale
from .state import (METRIC_NAMES, NonFiniteLossError, NonFiniteParamsError, TrainState,
                    init_state, input_statistics, sweep_configs)

# --------------------------------------------------------------------------- schedules
def learning_rate(step, last_resample_step, hyper, cfg: SAEConfig):
    """lr x linear warm-up x linear cooldown over the last `lr_decay_fraction` of training x
    cosine re-warm-up from `resample_rewarm_start` after each resampling event (GDM)."""
    step = step.astype(jnp.float32)
    warm = jnp.minimum(1.0, (step + 1.0) / jnp.maximum(hyper["lr_warmup_steps"], 1.0))
    warm = jnp.where(hyper["lr_warmup_steps"] > 0, warm, 1.0)
    lr = hyper["lr"] * warm
    if cfg.lr_decay_fraction > 0:
        decay_start = cfg.steps * (1.0 - cfg.lr_decay_fraction)
        lr = lr * jnp.clip((cfg.steps - step) / (cfg.steps - decay_start), 0.0, 1.0)
    if cfg.dead_strategy == "resample" and cfg.resample_rewarm_steps > 0:
        t = step - last_resample_step.astype(jnp.float32)
        a = cfg.resample_rewarm_start
        cos = a + (1 - a) * 0.5 * (1 - jnp.cos(jnp.pi * t / cfg.resample_rewarm_steps))
        lr = lr * jnp.where((t >= 0) & (t < cfg.resample_rewarm_steps), cos, 1.0)
    return lr


def l1_scale(step, hyper):
    warmup = jnp.maximum(hyper["l1_warmup_steps"], 1.0)
    s = jnp.minimum(1.0, (step.astype(jnp.float32) + 1.0) / warmup)
    return jnp.where(hyper["l1_warmup_steps"] > 0, s, 1.0)


# --------------------------------------------------------------------------- loss and step
def loss_fn(params, x, dead, step, input_sq_norm, hyper, cfg: SAEConfig):
    """Total loss (mean over the batch) and its terms. x is in training units."""
    out = registry.get(cfg.architecture).forward(params, x, cfg)
    recon = common.squared_error(x, out["x_hat"], cfg, input_sq_norm)
    recon_loss = jnp.mean(recon)
    if "aux_recon" in out:  # gated: the gate path reconstructs through a frozen decoder
        recon_loss = recon_loss + jnp.mean(
            common.squared_error(x, out["aux_recon"], cfg, input_sq_norm))
    sparsity_loss = hyper["l1_coeff"] * l1_scale(step, hyper) * jnp.mean(out["sparsity"])
    if cfg.architecture == "topk":
        sparsity_loss = jnp.zeros_like(recon_loss)
    if cfg.dead_strategy in ("ghost", "ghost_scaled", "ghost_all"):
        dead_loss = dead_lib.ghost_loss(params, x, out["z"], out["x_hat"], recon, dead, cfg)
    elif cfg.dead_strategy == "auxk":
        dead_loss = hyper["aux_k_coeff"] * dead_lib.auxk_loss(params, x, out["z"], out["x_hat"],
                                                          dead, cfg)
    else:
        dead_loss = jnp.zeros_like(recon_loss)
    loss = recon_loss + sparsity_loss + dead_loss
    return loss, {"out": out, "recon_loss": recon_loss, "sparsity_loss": sparsity_loss,
                  "dead_loss": dead_loss}


def adam_update(params, grads, m, v, count, lr, hyper, cfg: SAEConfig):
    """Adam (Kingma & Ba) written out, so resampling can zero the moments of single rows."""
    b1, b2 = hyper["adam_beta1"], hyper["adam_beta2"]
    t = (count + 1).astype(jnp.float32)
    m = jax.tree_util.tree_map(lambda m_, g: b1 * m_ + (1 - b1) * g, m, grads)
    v = jax.tree_util.tree_map(lambda v_, g: b2 * v_ + (1 - b2) * g * g, v, grads)
    c1, c2 = 1 - b1**t, 1 - b2**t
    params = jax.tree_util.tree_map(
        lambda p, m_, v_: p - lr * (m_ / c1) / (jnp.sqrt(v_ / c2) + cfg.adam_eps), params, m, v)
    return params, m, v, count + 1


def train_step(cfg: SAEConfig, state: TrainState, x, hyper: dict) -> TrainState:
    """One optimisation step on a raw batch x of shape (batch, d_in)."""
    x = x.astype(jnp.float32) * state.input_scale
    dead = dead_lib.dead_mask(state.steps_since_fired, state.step, cfg)
    (loss, aux), grads = jax.value_and_grad(loss_fn, has_aux=True)(
        state.params, x, dead, state.step, state.input_sq_norm, hyper, cfg)
    grads = dict(grads)
    grads["W_dec"] = common.project_decoder_grad(grads["W_dec"], state.params["W_dec"], cfg)
    if cfg.grad_clip_norm is not None:
        norm = jnp.sqrt(sum(jnp.sum(g * g) for g in jax.tree_util.tree_leaves(grads)))
        factor = jnp.minimum(1.0, cfg.grad_clip_norm / (norm + 1e-12))
        grads = jax.tree_util.tree_map(lambda g: g * factor, grads)
    lr = learning_rate(state.step, state.last_resample_step, hyper, cfg)
    params, m, v, count = adam_update(state.params, grads, state.adam_m, state.adam_v,
                                      state.adam_count, lr, hyper, cfg)
    params["W_dec"] = common.constrain_decoder(params["W_dec"], cfg)

    out = aux["out"]
    # tokens on which each latent fired (the fused core counts them in its forward pass)
    fire_count = out.get("fire_count")
    if fire_count is None:
        fire_count = jnp.sum(out["f"] > 0, axis=0).astype(jnp.float32)
    fire_count = jax.lax.stop_gradient(fire_count)
    err = jnp.sum((x - out["x_hat"]) ** 2, -1)
    var = jnp.sum((x - jnp.mean(x, axis=0)) ** 2, -1)
    step_metrics = {
        "loss": loss, "recon_loss": aux["recon_loss"], "sparsity_loss": aux["sparsity_loss"],
        "dead_loss": aux["dead_loss"], "mse": jnp.mean(err) / state.input_scale**2,
        "l0": jnp.sum(fire_count) / x.shape[0],
        "fvu": jnp.sum(err) / jnp.sum(var), "lr": lr,
    }
    finite = jnp.isfinite(loss)
    return TrainState(
        params=params, adam_m=m, adam_v=v, adam_count=count, step=state.step + 1,
        rng=state.rng,
        steps_since_fired=jnp.where(fire_count > 0, 0, state.steps_since_fired + 1),
        fire_count=state.fire_count + fire_count,
        window_tokens=state.window_tokens + x.shape[0],
        last_resample_step=state.last_resample_step,
        input_scale=state.input_scale, input_sq_norm=state.input_sq_norm,
        metric_sums={k: state.metric_sums[k] + step_metrics[k] for k in METRIC_NAMES},
        metric_count=state.metric_count + 1,
        first_nonfinite_step=jnp.where((state.first_nonfinite_step < 0) & ~finite,
                                       state.step, state.first_nonfinite_step),
    )


RESAMPLE_CHUNK = 4096  # candidate rows encoded at once: bounds a pool's memory, not its size


def reconstruction_errors(params, x, cfg: SAEConfig):
    """||x - x_hat||^2 per row (training units), `RESAMPLE_CHUNK` rows at a time."""
    arch = registry.get(cfg.architecture)

    def errors(rows):
        return jnp.sum((rows - common.decode(params, arch.encode(params, rows, cfg))) ** 2, -1)

    n = x.shape[0]
    if n <= RESAMPLE_CHUNK:
        return errors(x)
    chunks = jnp.pad(x, ((0, -n % RESAMPLE_CHUNK), (0, 0))).reshape(-1, RESAMPLE_CHUNK, x.shape[1])
    return jax.lax.map(errors, chunks).reshape(-1)[:n]


def resample_step(cfg: SAEConfig, state: TrainState, x) -> TrainState:
    """A resampling event, after the step it follows, with candidates x (raw units): the
    step's batch, or a pool of `cfg.resample_pool_rows` inputs."""
    x = x.astype(jnp.float32) * state.input_scale
    dead = state.steps_since_fired >= cfg.dead_window_steps
    loss = reconstruction_errors(state.params, x, cfg)
    rng, key = jax.random.split(state.rng)
    params, m, v = dead_lib.resample(state.params, state.adam_m, state.adam_v, dead, x, loss,
                                     key, cfg)
    return state._replace(
        params=params, adam_m=m, adam_v=v, rng=rng,
        steps_since_fired=jnp.where(dead, 0, state.steps_since_fired),
        last_resample_step=state.step)


def window_summary(state: TrainState, cfg: SAEConfig) -> dict:
    """Window means of the step metrics plus dead and dense fractions (arrays; vmappable)."""
    n = jnp.maximum(state.metric_count, 1.0)
    summary = {k: state.metric_sums[k] / n for k in METRIC_NAMES}
    density = state.fire_count / jnp.maximum(state.window_tokens, 1.0)
    summary["dead_fraction"] = jnp.mean(
        (state.steps_since_fired >= cfg.dead_window_steps).astype(jnp.float32))
    summary["dense_fraction"] = jnp.mean((density > cfg.dense_threshold).astype(jnp.float32))
    summary["step"] = state.step
    return summary


def reset_window(state: TrainState) -> TrainState:
    z = jnp.zeros_like
    return state._replace(fire_count=z(state.fire_count), window_tokens=z(state.window_tokens),
                          metric_sums={k: z(v) for k, v in state.metric_sums.items()},
                          metric_count=z(state.metric_count))


# --------------------------------------------------------------------------- state -> SAE
def to_sae(state: TrainState, cfg: SAEConfig) -> SAE:
    """The trained SAE in raw input units (input scale folded into the weights)."""
    params = jax.tree_util.tree_map(jnp.asarray, state.params)
    return SAE(fold_input_scale(params, state.input_scale), cfg)


def sweep_member(state: TrainState, i: int) -> TrainState:
    """Run i of a stacked sweep state."""
    return jax.tree_util.tree_map(lambda a: a[i], state)


# --------------------------------------------------------------------------- driver
# step="auto": the "ffi" step while the codes' density (mean L0 / d_sae over the last window,
# the densest member of a sweep) is below AUTO_DENSITY, the dense step above it. Measured
# (benchmarks/sae_train.py, 576 x 2304, batch 512, 8-way sweep, loaded 2-core CPU), ffi / dense
# step time: 2.05x faster at 2% density, 1.69x at 5%, 1.40x at 10%, 1.10x at 20%, 0.42x at
# 50% (a fresh ReLU SAE fires about half its latents). So the crossover is near 20%; 0.15
# keeps a margin.
AUTO_DENSITY = 0.15
AUTO_CHECK_EVERY = 20  # steps between density checks (each is one small device-to-host copy)


def auto_uses_ffi(cfg: SAEConfig, mesh=None) -> bool:
    """Whether step="auto" may choose the "ffi" step here: CPU, no device mesh (XLA cannot
    partition a custom call) and a C++ compiler for the kernels."""
    if cfg.step != "auto" or mesh is not None or jax.default_backend() != "cpu":
        return False
    from . import sparse_ffi
    return sparse_ffi.available()


def step_kind(cfg: SAEConfig, l0) -> str:
    """"ffi" or "dense" for the next steps of an "auto" run, from the L0 of the last step (per
    member of a sweep: the densest decides). Top-k knows its density: k / d_sae."""
    if cfg.architecture == "topk":
        return "ffi" if cfg.k / cfg.d_sae < AUTO_DENSITY else "dense"
    if l0 is None:  # nothing measured yet: a fresh ReLU SAE fires about half its latents
        return "dense"
    return "ffi" if float(np.max(np.asarray(l0))) / cfg.d_sae < AUTO_DENSITY else "dense"


def _l0_sum(state: TrainState) -> np.ndarray:
    return np.asarray(jax.device_get(state.metric_sums["l0"]), np.float64)


# The kind an "auto" run is on travels in its history (one-element list), so a run resumed from
# a checkpoint, or continued (lm_sae.train_cached's continue_from), takes the same steps as an
# uninterrupted one: each check reads only the step it follows, never a window a resume resets.
AUTO_HISTORY_KEY = "auto_step"


class _Runner:
    """Compiled functions for a single run (vmapped=False) or a stacked sweep. `steps` maps
    "dense" (and, for step="auto" where it can run, "ffi") to a compiled training step; jit
    compiles each on first use only."""

    def __init__(self, cfg: SAEConfig, vmapped: bool, mesh=None):
        def compiled_step(c):
            step = lambda s, x, hyper: train_step(c, s, x, hyper)  # noqa: E731
            if vmapped:
                step = jax.vmap(step, in_axes=(0, None, 0))
            if mesh is not None:
                step = sharding.constrain_output(step, c, mesh)
            return jax.jit(step, donate_argnums=0)

        resample = lambda s, x: resample_step(cfg, s, x)  # noqa: E731
        summary = lambda s: window_summary(s, cfg)  # noqa: E731
        if vmapped:
            resample = jax.vmap(resample, in_axes=(0, None))
            summary = jax.vmap(summary)
            reset = jax.vmap(reset_window)
        else:
            reset = reset_window
        self.mesh = mesh
        self.step = compiled_step(cfg)  # "auto": dense products (sparse.use_sparse)
        self.steps = {"dense": self.step}
        if auto_uses_ffi(cfg, mesh):
            self.steps["ffi"] = compiled_step(cfg.replace(step="ffi"))
        self.resample = jax.jit(resample)
        self.summary = jax.jit(summary)
        self.reset = jax.jit(reset)


@functools.lru_cache(maxsize=32)
def _cached_runner(cfg: SAEConfig, vmapped: bool, mesh) -> _Runner:
    return _Runner(cfg, vmapped, mesh)


def runner_for(cfg: SAEConfig, vmapped: bool, mesh=None) -> _Runner:
    """Compiled step functions, shared by every config that differs only in sweepable scalars
    (those reach the step through `hyper`), so repeated runs do not recompile."""
    defaults = {f.name: f.default for f in dataclasses.fields(SAEConfig) if f.name in SWEEPABLE}
    return _cached_runner(cfg.replace(**defaults), vmapped, mesh)


def _iterate(batches, start: int):
    """An iterator positioned `start` batches in: `batches.seek(start)` if it has one, else
    skip `start` items of a fresh iteration (the iterable must replay from the beginning)."""
    if start and hasattr(batches, "seek"):
        batches.seek(start)
        return iter(batches)
    return itertools.islice(iter(batches), start, None)


def _check_batch(x, cfg: SAEConfig, step: int, rows: int | None = None):
    """`rows`: this process's rows of a batch under jax.distributed (default: batch_size)."""
    rows = cfg.batch_size if rows is None else rows
    shape = getattr(x, "shape", None)
    if shape is None or len(shape) != 2 or shape[1] != cfg.d_in or shape[0] != rows:
        what = ("(batch_size, d_in)" if rows == cfg.batch_size else
                f"(this process's rows of a batch of {cfg.batch_size}, d_in)")
        raise ValueError(f"batch at step {step}: expected shape ({rows}, {cfg.d_in}) "
                         f"{what}, got {shape}")


def _local_rows(cfg: SAEConfig, mesh) -> int:
    lo, hi = (0, cfg.batch_size) if mesh is None else sharding.local_rows(mesh, cfg.batch_size)
    return hi - lo


def _one_process_only(what: str):
    if jax.process_count() > 1:
        raise ValueError(f"{what} runs in one process, not across the {jax.process_count()} "
                         "processes of this jax.distributed job; train single SAEs with a mesh")


def _save(checkpoint_dir, state, cfg, history, sweep) -> Path:
    """save_checkpoint; under jax.distributed every process gathers the state (a collective),
    process 0 alone writes it, and all return once it is on disk."""
    if jax.process_count() == 1:
        return ckpt.save_checkpoint(checkpoint_dir, state, cfg, history, sweep=sweep)
    host = sharding.host_copy(state)
    path = Path(checkpoint_dir) / ckpt.CHECKPOINT_FILE
    if jax.process_index() == 0:
        path = ckpt.save_checkpoint(checkpoint_dir, host, cfg, history, sweep=sweep)
    multihost_utils.sync_global_devices(f"interp.sae checkpoint step {int(np.max(host.step))}")
    return path


def _resample_candidates(cfg: SAEConfig, x, resample_pool, event: int):
    """The inputs resampling event `event` draws from: the step's batch `x`, or (with
    `cfg.resample_pool_rows`) `resample_pool(event)`, checked."""
    if not cfg.resample_pool_rows:
        return x
    pool = resample_pool(event)
    shape = getattr(pool, "shape", None)
    if shape != (cfg.resample_pool_rows, cfg.d_in):
        raise ValueError(f"resample_pool({event}) returned shape {shape}, expected "
                         f"({cfg.resample_pool_rows}, {cfg.d_in}) (resample_pool_rows, d_in)")
    return jnp.asarray(pool, jnp.float32)


def _run(cfg, runner, state, hyper, it, history, *, log_every, checkpoint_dir, checkpoint_every,
         progress, sweep, desc, stop_after=None, resample_pool=None):
    rows = _local_rows(cfg, runner.mesh)
    resample_steps = sorted(cfg.resample_steps())
    if resample_steps and cfg.resample_pool_rows and resample_pool is None:
        raise ValueError(f"SAEConfig.resample_pool_rows={cfg.resample_pool_rows} needs a "
                         "resample_pool callable (event index -> array of that many inputs); "
                         "lm_sae.train_cached passes one drawn from the store")
    start = int(np.max(np.asarray(state.step)))
    last_good = None
    auto = "ffi" in runner.steps
    kind = "dense"
    if auto:
        kind = (history.get(AUTO_HISTORY_KEY) or [step_kind(cfg, None)])[-1]
    with tqdm(total=cfg.steps, initial=start, desc=desc, disable=not progress) as bar:
        end = cfg.steps if stop_after is None else min(cfg.steps, stop_after)
        for step in range(start, end):
            try:
                x = next(it)
            except StopIteration:
                raise ValueError(f"batches ran out after {step} of {cfg.steps} steps") from None
            _check_batch(x, cfg, step, rows)
            x = jnp.asarray(x, jnp.float32)
            if runner.mesh is not None:
                x = sharding.put_batch(x, runner.mesh, cfg.batch_size)
            check = auto and (step + 1) % AUTO_CHECK_EVERY == 0
            before = _l0_sum(state) if check else None
            state = runner.steps[kind](state, x, hyper)
            done = step + 1
            if check:  # the L0 of this step alone (metric sums grow by it)
                kind = step_kind(cfg, _l0_sum(state) - before)
            if auto:
                history[AUTO_HISTORY_KEY] = [kind]
            if done in resample_steps:
                candidates = _resample_candidates(cfg, x, resample_pool,
                                                  resample_steps.index(done))
                state = runner.resample(state, candidates)
            if done % log_every == 0 or done == end:
                summary = jax.device_get(runner.summary(state))
                _raise_if_nonfinite(state, last_good, sweep)
                for k, v in summary.items():
                    history.setdefault(k, []).append(np.asarray(v).tolist())
                state = runner.reset(state)
                shown = {"step": kind} if auto else {}
                bar.set_postfix(loss=float(np.mean(summary["loss"])),
                                l0=float(np.mean(summary["l0"])), **shown)
            if checkpoint_dir is not None and checkpoint_every and done % checkpoint_every == 0:
                _raise_if_nonfinite(state, last_good, sweep)
                last_good = _save(checkpoint_dir, state, cfg, history, sweep)
            bar.update(1)
    _raise_if_nonfinite(state, last_good, sweep)
    if checkpoint_dir is not None:
        _save(checkpoint_dir, state, cfg, history, sweep)
    return state, history


def _raise_if_nonfinite(state, last_good, sweep: dict | None = None):
    """NonFiniteLossError if a loss was NaN/inf, NonFiniteParamsError if parameters or Adam
    moments are; for a sweep the message names each diverged run by its hyperparameters."""
    first_bad = np.atleast_1d(np.asarray(jax.device_get(state.first_nonfinite_step)))
    finite = np.atleast_1d(np.asarray(jax.device_get(
        _finite_runs(state.params, state.adam_m, state.adam_v, stacked=sweep is not None))))
    runs = tuple(int(i) for i in np.flatnonzero((first_bad >= 0) | ~finite))
    if not runs:
        return
    loss_diverged = bool(np.any(first_bad >= 0))
    problems = []
    for i in runs:
        what = (f"non-finite (NaN/inf) training loss first at step {int(first_bad[i])}"
                if first_bad[i] >= 0 else
                f"non-finite (NaN/inf) parameters after step {int(np.max(state.step))}")
        problems.append(f"{_run_label(sweep, i)}: {what}" if sweep else what)
    kept = f"; last good checkpoint kept at {last_good}" if last_good else \
        "; no checkpoint was written"
    advice = ("Drop or change the named run(s) (lower lr / l1_coeff), enable grad_clip_norm, "
              "or check the input batches." if sweep else
              "Lower lr, enable grad_clip_norm, or check the input batches.")
    error = NonFiniteLossError if loss_diverged else NonFiniteParamsError
    raise error(f"{'; '.join(problems)}{kept}. {advice}", runs=runs if sweep else ())


def _run_label(sweep: dict, i: int) -> str:
    """'sweep run 1 (l1_coeff=0.02, seed=1)': a member of a sweep by its hyperparameters."""
    values = ", ".join(f"{k}={v[i]}" for k, v in sweep.items())
    return f"sweep run {i} ({values})"


@functools.partial(jax.jit, static_argnames="stacked")
def _finite_runs(params, adam_m, adam_v, *, stacked: bool):
    """Per run (one entry for a single run): are all parameters and Adam moments finite?"""
    leaves = jax.tree_util.tree_leaves((params, adam_m, adam_v))
    if stacked:
        flags = [jnp.all(jnp.isfinite(a.reshape(a.shape[0], -1)), axis=1) for a in leaves]
    else:
        flags = [jnp.all(jnp.isfinite(a))[None] for a in leaves]
    return jnp.all(jnp.stack(flags), axis=0)


def _start(cfg: SAEConfig, batches, mesh=None):
    rows = _local_rows(cfg, mesh)
    it = iter(batches)
    first = []
    for _ in range(cfg.norm_estimation_batches):
        try:
            x = next(it)
        except StopIteration:
            break
        _check_batch(x, cfg, len(first), rows)
        first.append(np.asarray(x, np.float32))
    if not first:
        raise ValueError("batches: the iterator yielded no batch")
    whole = first
    if rows != cfg.batch_size:  # several processes: statistics of the global batches
            whole = [sharding.host_copy(sharding.put_batch(x, mesh, cfg.batch_size)) for x in first]
    return input_statistics(whole, cfg), itertools.chain(first, it)


def train(config: SAEConfig, batches: Iterable, *, log_every: int = 100,
          checkpoint_dir: str | Path | None = None, checkpoint_every: int | None = None,
          progress: bool = True, mesh=None, state: TrainState | None = None,
          stop_after: int | None = None, resample_pool=None) -> tuple[TrainState, dict]:
    """Train one SAE for `config.steps` steps on `batches` (arrays of shape (batch_size, d_in)).

    Returns (state, history): `to_sae(state, config)` is the trained SAE; history maps each of
    METRIC_NAMES, "dead_fraction", "dense_fraction" and "step" to a list with one entry per
    `log_every` steps (window means). With `checkpoint_dir`, a checkpoint is written every
    `checkpoint_every` steps and at the end; `resume` continues from it. `mesh` (from
    `sharding.make_mesh`) shards the batch and the latent dimension over devices. `state`
    starts from a given state (e.g. an edited `init_state`) instead of a fresh one.
    `stop_after` ends the run early at that step (checkpointed; `resume` finishes it).
    `resample_pool(event)` returns the candidate inputs of resampling event 0, 1, ... when
    `config.resample_pool_rows` > 0 (deterministic in `event`, so a resumed run draws the same).

    Under jax.distributed (`interp.distributed`) `mesh` spans every process's devices and each
    process's `batches` hold only its rows of each batch (`sharding.local_rows`)."""
    if mesh is None and jax.process_count() > 1:
        raise ValueError(f"training across {jax.process_count()} processes needs a mesh over "
                         "all their devices: pass mesh=sae.make_mesh()")
    stats, it = _start(config, batches, mesh)
    if state is None:
        state = init_state(config, stats, config.seed)
    if mesh is not None:
            state = sharding.shard_state(state, config, mesh)
    return _run(config, runner_for(config, False, mesh), state, config_hyper(config), it, {},
                log_every=log_every, checkpoint_dir=checkpoint_dir,
                checkpoint_every=checkpoint_every, progress=progress, sweep=None, desc="SAE",
                stop_after=stop_after, resample_pool=resample_pool)


def config_hyper(config: SAEConfig) -> dict:
    return {k: jnp.float32(v) for k, v in config.hyper().items()}


def stacked_hyper(configs: list[SAEConfig]) -> dict:
    return {k: jnp.asarray([c.hyper()[k] for c in configs], jnp.float32)
            for k in configs[0].hyper()}


def train_sweep(config: SAEConfig, batches: Iterable, sweep: dict[str, list], *,
                log_every: int = 100, checkpoint_dir: str | Path | None = None,
                checkpoint_every: int | None = None, progress: bool = True,
                resample_pool=None) -> tuple[TrainState, dict]:
    """Train len(values) SAEs at once, one per entry of `sweep` (e.g. {"l1_coeff": [...]}) on
    the same batches, as one jitted, vmapped step over stacked states. Returns the stacked
    state (`sweep_member(state, i)` for run i) and a history whose entries are lists of
    per-run values."""
    _one_process_only("train_sweep")
    configs = sweep_configs(config, sweep)
    stats, it = _start(config, batches)
    seeds = jnp.asarray([c.seed for c in configs], jnp.uint32)
    state = jax.vmap(lambda s: init_state(config, stats, s))(seeds)
    return _run(config, runner_for(config, True), state, stacked_hyper(configs), it, {},
                log_every=log_every, checkpoint_dir=checkpoint_dir,
                checkpoint_every=checkpoint_every, progress=progress,
                sweep={k: list(v) for k, v in sweep.items()}, desc=f"SAE sweep x{len(configs)}",
                resample_pool=resample_pool)


def resume(checkpoint_dir: str | Path, batches: Iterable, *, log_every: int = 100,
           checkpoint_every: int | None = None, progress: bool = True, mesh=None,
           steps: int | None = None, resample_pool=None) -> tuple[TrainState, dict]:
    """Continue a run from its checkpoint. `batches` must replay the run's data from the start
    (it is advanced past the batches already used, or `seek`-ed if it has a `seek` method).
    `steps` optionally extends the run. Ends with the same parameters as an uninterrupted run."""
    state, config, history, sweep = ckpt.load_checkpoint(checkpoint_dir)
    if steps is not None:
        config = config.replace(steps=steps)
    start = int(np.max(np.asarray(state.step)))
    it = _iterate(batches, start)
    if sweep:
        _one_process_only("resuming a sweep")
        configs = sweep_configs(config, sweep)
        runner, hyper = runner_for(config, True), stacked_hyper(configs)
    else:
        if mesh is None and jax.process_count() > 1:
            raise ValueError(f"resuming across {jax.process_count()} processes needs a mesh "
                             "over all their devices: pass mesh=sae.make_mesh()")
        runner, hyper = runner_for(config, False, mesh), config_hyper(config)
        if mesh is not None:
                    state = sharding.shard_state(state, config, mesh)
    return _run(config, runner, state, hyper, it, history, log_every=log_every,
                checkpoint_dir=checkpoint_dir, checkpoint_every=checkpoint_every,
                progress=progress, sweep=sweep, desc="SAE (resumed)",
                resample_pool=resample_pool)
