"""Sharded training with `jax.sharding`: the batch is split over the mesh axis "data" and the
latent dimension of every per-latent array (W_enc columns, W_dec rows, biases, their Adam
moments, firing counters) over "feature". XLA inserts the collectives; the step function is
the same one single-device training uses, so results agree to float tolerance.

On CPU, test with XLA_FLAGS=--xla_force_host_platform_device_count=8 (set before jax starts).

Under `jax.distributed` (several processes, one global mesh; see `interp.distributed`) each
process holds one block of rows of every batch on its devices and passes only those rows
(`local_rows`, `put_batch`); arrays that span other processes' devices are gathered to every
process before anything reads them on the host (`host_copy`).
"""

from __future__ import annotations

import itertools

import jax
import numpy as np
from jax.experimental import multihost_utils
from jax.sharding import Mesh, NamedSharding, PartitionSpec as P

from . import registry
from .config import SAEConfig


def make_mesh(n_data: int | None = None, n_feature: int = 1, devices=None) -> Mesh:
    """A ("data", "feature") mesh; n_data defaults to all remaining devices."""
    devices = list(devices if devices is not None else jax.devices())
    if n_data is None:
        n_data = len(devices) // n_feature
    if n_data < 1 or n_feature < 1 or n_data * n_feature > len(devices):
        raise ValueError(f"mesh: n_data={n_data} x n_feature={n_feature} needs more than the "
                         f"{len(devices)} available devices")
    grid = np.array(devices[: n_data * n_feature]).reshape(n_data, n_feature)
    return Mesh(grid, ("data", "feature"))


def batch_sharding(mesh: Mesh) -> NamedSharding:
    return NamedSharding(mesh, P("data", None))


def _feature_spec(ndim: int, axis: int) -> P:
    spec = [None] * ndim
    spec[axis] = "feature"
    return P(*spec)


def state_shardings(state, cfg: SAEConfig, mesh: Mesh):
    """A pytree of NamedShardings matching a single-run TrainState."""
    axes = registry.get(cfg.architecture).FEATURE_AXES
    rep = NamedSharding(mesh, P())

    def per_param(tree):
        return {k: NamedSharding(mesh, _feature_spec(v.ndim, axes[k])) if k in axes else rep
                for k, v in tree.items()}

    per_latent = NamedSharding(mesh, P("feature"))
    return state._replace(
        params=per_param(state.params), adam_m=per_param(state.adam_m),
        adam_v=per_param(state.adam_v), adam_count=rep, step=rep, rng=rep,
        steps_since_fired=per_latent, fire_count=per_latent, window_tokens=rep,
        last_resample_step=rep, input_scale=rep, input_sq_norm=rep,
        metric_sums={k: rep for k in state.metric_sums}, metric_count=rep,
        first_nonfinite_step=rep)


def check_divisible(cfg: SAEConfig, mesh: Mesh):
    n_data, n_feature = mesh.shape["data"], mesh.shape["feature"]
    if cfg.batch_size % n_data:
        raise ValueError(f"batch_size={cfg.batch_size} must be divisible by the {n_data} "
                         f"data-parallel devices")
    if cfg.d_sae % n_feature:
        raise ValueError(f"d_sae={cfg.d_sae} must be divisible by the {n_feature} "
                         f"feature-parallel devices")


def shard_state(state, cfg: SAEConfig, mesh: Mesh):
    check_divisible(cfg, mesh)
    return jax.device_put(state, state_shardings(state, cfg, mesh))


def constrain_output(step_fn, cfg: SAEConfig, mesh: Mesh):
    """Wrap a step so its output state keeps the input's layout."""
    def wrapped(state, x, hyper):
        new = step_fn(state, x, hyper)
        return jax.lax.with_sharding_constraint(new, state_shardings(new, cfg, mesh))
    return wrapped


# --------------------------------------------------------------------------- several processes
def local_rows(mesh: Mesh, batch_size: int) -> tuple[int, int]:
    """Rows [lo, hi) of every global batch that this process's devices hold: (0, batch_size)
    in a one-process run. A mesh from `make_mesh` gives each process one contiguous block."""
    if batch_size % mesh.shape["data"]:
        raise ValueError(f"batch_size={batch_size} must be divisible by the "
                         f"{mesh.shape['data']} data-parallel devices")
    index = batch_sharding(mesh).addressable_devices_indices_map((batch_size, 1))
    spans = sorted({idx[0].indices(batch_size)[:2] for idx in index.values()})
    if any(a[1] != b[0] for a, b in itertools.pairwise(spans)):
        raise ValueError(f"process {jax.process_index()}'s devices hold rows {spans} of each "
                         "batch, not one contiguous block; build the mesh with make_mesh "
                         "(devices in process order)")
    return spans[0][0], spans[-1][1]


def put_batch(x, mesh: Mesh, batch_size: int):
    """One global batch sharded over "data", from this process's rows of it (all rows in a
    one-process run)."""
    if jax.process_count() == 1:
        return jax.device_put(x, batch_sharding(mesh))
    return jax.make_array_from_process_local_data(batch_sharding(mesh), np.asarray(x),
                                                  (batch_size, x.shape[1]))


def host_copy(tree):
    """numpy copies of a pytree's arrays, gathered from other processes' devices where they
    span them. Under jax.distributed this is a collective: every process calls it in turn."""
    def one(a):
        if isinstance(a, jax.Array) and not a.is_fully_addressable:
            return multihost_utils.process_allgather(a, tiled=True)
        return np.asarray(jax.device_get(a))
    return jax.tree_util.tree_map(one, tree)
