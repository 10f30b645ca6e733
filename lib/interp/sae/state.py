"""The training state and how a run starts: `TrainState` (everything that determines the rest
of a run, so a checkpoint of it resumes exactly), `init_state`, the input statistics it starts
from, `sweep_configs` and the errors training raises. Its own module so that `training` (which
writes checkpoints) and `checkpoint` (which rebuilds states) both import it, not each other."""

from __future__ import annotations

import math
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np

from . import registry
from .config import SWEEPABLE, SAEConfig

METRIC_NAMES = ("loss", "recon_loss", "sparsity_loss", "dead_loss", "mse", "l0", "fvu", "lr")


class TrainState(NamedTuple):
    """Everything that determines the rest of a run (so a checkpoint of it resumes exactly)."""

    params: dict
    adam_m: dict
    adam_v: dict
    adam_count: Any          # int32: Adam steps taken (bias correction)
    step: Any                # int32: training steps done == batches consumed
    rng: Any                 # uint32[2]: PRNG key for resampling
    steps_since_fired: Any   # int32[d_sae]
    fire_count: Any          # float32[d_sae]: firings in the current logging window
    window_tokens: Any       # float32: tokens in the current logging window
    last_resample_step: Any  # int32: step of the last resampling event (LR re-warm-up)
    input_scale: Any         # float32: c in x_train = c * x (1 unless input_normalisation)
    input_sq_norm: Any       # float32: E||c x||^2, for mse_normalise_by_input_norm
    metric_sums: dict        # float32 sums of METRIC_NAMES over the logging window
    metric_count: Any        # float32: steps in the window
    first_nonfinite_step: Any  # int32: first step with a non-finite loss, -1 if none


class NonFiniteLossError(FloatingPointError):
    """Training produced NaN/inf; the last good checkpoint (if any) is left untouched.
    `runs` lists the diverged members of a sweep (empty for a single run)."""

    def __init__(self, message: str, runs: tuple[int, ...] = ()):
        super().__init__(message)
        self.runs = tuple(runs)


class NonFiniteParamsError(NonFiniteLossError):
    """Parameters or Adam moments became NaN/inf (even if the last loss was finite); no
    checkpoint is written from them."""


def input_statistics(batches: list, cfg: SAEConfig) -> dict:
    """Input scale c (E||c x|| = sqrt(d_in) under input_normalisation='sqrt_d'), E||c x||^2 and
    the mean of c x, estimated on a few batches."""
    x = np.concatenate([np.asarray(b, np.float32) for b in batches], axis=0)
    mean_norm = float(np.mean(np.linalg.norm(x, axis=-1)))
    scale = math.sqrt(cfg.d_in) / mean_norm if cfg.input_normalisation == "sqrt_d" else 1.0
    x = x * scale
    return {"input_scale": scale, "input_sq_norm": float(np.mean(np.sum(x**2, -1))),
            "mean": x.mean(axis=0)}


def init_state(cfg: SAEConfig, stats: dict, seed) -> TrainState:
    """A fresh state; `seed` may be a traced scalar (vmapped over in seed sweeps)."""
    key = jax.random.PRNGKey(seed)
    k_init, k_run = jax.random.split(key)
    params = registry.get(cfg.architecture).init(k_init, cfg)
    if cfg.b_dec_init == "mean":
        params["b_dec"] = jnp.asarray(stats["mean"], jnp.float32)
    # distinct buffers for every leaf (W_enc may alias W_dec.T's input): the step donates them
    params = jax.tree_util.tree_map(lambda a: jnp.array(a, copy=True), params)
    zeros = lambda: jax.tree_util.tree_map(jnp.zeros_like, params)  # noqa: E731
    f32 = lambda v: jnp.asarray(v, jnp.float32)  # noqa: E731
    return TrainState(
        params=params, adam_m=zeros(), adam_v=zeros(),
        adam_count=jnp.int32(0), step=jnp.int32(0), rng=k_run,
        steps_since_fired=jnp.zeros((cfg.d_sae,), jnp.int32),
        fire_count=jnp.zeros((cfg.d_sae,), jnp.float32), window_tokens=f32(0.0),
        last_resample_step=jnp.int32(-(2**30)),
        input_scale=f32(stats["input_scale"]), input_sq_norm=f32(stats["input_sq_norm"]),
        metric_sums={k: f32(0.0) for k in METRIC_NAMES}, metric_count=f32(0.0),
        first_nonfinite_step=jnp.int32(-1),
    )


def sweep_configs(config: SAEConfig, sweep: dict[str, Any]) -> list[SAEConfig]:
    """One validated config per run of a sweep (all lists in `sweep` have equal length)."""
    if not sweep:
        raise ValueError("sweep: give at least one field to sweep over")
    bad = sorted(set(sweep) - set(SWEEPABLE))
    if bad:
        raise ValueError(f"sweep: field(s) {bad} cannot be swept in one vmapped step; "
                         f"sweepable: {', '.join(SWEEPABLE)}")
    lengths = {len(v) for v in sweep.values()}
    if len(lengths) != 1:
        raise ValueError(f"sweep: all value lists must have the same length, got "
                         f"{ {k: len(v) for k, v in sweep.items()} }")
    n = lengths.pop()
    return [config.replace(**{k: v[i] for k, v in sweep.items()}) for i in range(n)]
