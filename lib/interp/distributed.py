"""Several processes, one mesh: SAE training and activation harvesting under `jax.distributed`.

A TPU pod slice or a multi-GPU cluster runs one Python process per host (or per GPU). After
`jax.distributed.initialize` they see one list of global devices, and a mesh over all of them
is used as a one-process mesh is: every process runs the same jitted step and XLA inserts the
cross-process collectives (JAX docs, "Multi-process environments" and "Distributed arrays and
automatic parallelization"). What differs is the host side, which this module owns:

- *Joining.* `initialize` takes the coordinator address (process 0's host:port), the process
  count and this process's id from arguments or the environment, or (`cluster=True`) lets JAX
  detect them on Slurm, Open MPI, Kubernetes or Cloud TPU. On CPU the collectives run over gloo
  (TCP); GPUs use NCCL and TPUs their interconnect, with nothing here changed.
- *Data.* Each process feeds only its rows of every global batch (`sharding.local_rows`), read
  from its own part of the activation store, shards part, part + parts, ... (`local_batches`):
  no process reads another's rows, and a row comes back only when its part starts a new epoch.
- *Checkpoints.* Process 0 writes them (after every process has gathered the state). A run
  resumes only with the same process count and mesh, since each process's part of the store
  depends on them; `run.json` next to the checkpoint records them and a mismatch is an error.
- *Harvesting.* Process i harvests shards i, i + n, ... into one store folder; after a barrier
  process 0 writes the manifest (`store.harvest_part`, `store.complete_harvest`). A process that
  died is rerun; it skips the shards it had finished, and shard boundaries never move, so no
  row is lost or written twice.

Command lines: `python -m interp.data harvest` and `python -m interp.sae train` (README,
"Beyond one machine").
"""

from __future__ import annotations

import argparse
import os
from pathlib import Path

import jax
from jax.experimental import multihost_utils

from interp import sae
from interp.cache import cache_dir, read_checked_json, write_checked_json
from interp.data import store as st
from interp.sae import sharding
from interp.sae.checkpoint import CHECKPOINT_FILE

ENV_COORDINATOR = "JAX_COORDINATOR_ADDRESS"  # also read by jax.distributed.initialize itself
ENV_NUM_PROCESSES = "INTERP_NUM_PROCESSES"
ENV_PROCESS_ID = "INTERP_PROCESS_ID"
RUN_FILE = "run.json"


# --------------------------------------------------------------------------- joining
def _env_int(name: str) -> int | None:
    value = os.environ.get(name)
    if value in (None, ""):
        return None
    try:
        return int(value)
    except ValueError:
        raise ValueError(f"environment variable {name}={value!r} is not an integer") from None


def initialize(coordinator: str | None = None, num_processes: int | None = None,
               process_id: int | None = None, *, cluster: bool = False,
               timeout_s: int = 300) -> tuple[int, int]:
    """Join this job's processes; returns (process index, process count). Call it first,
    before anything touches a JAX device.

    Unset arguments come from $JAX_COORDINATOR_ADDRESS, $INTERP_NUM_PROCESSES and
    $INTERP_PROCESS_ID. With none of them (or a count of 1) this is a one-process run and
    nothing is joined. `cluster=True` leaves whatever is still unset to JAX's detection of
    Slurm, Open MPI, Kubernetes and Cloud TPU environments. `timeout_s` bounds the wait for
    the other processes to connect."""
    coordinator = coordinator or os.environ.get(ENV_COORDINATOR) or None
    num_processes = num_processes if num_processes is not None else _env_int(ENV_NUM_PROCESSES)
    process_id = process_id if process_id is not None else _env_int(ENV_PROCESS_ID)
    if not cluster:
        if num_processes is None or num_processes == 1:
            if process_id not in (None, 0):
                raise ValueError(f"process id {process_id} given without a process count > 1 "
                                 f"(--num-processes or ${ENV_NUM_PROCESSES})")
            return 0, 1
        if num_processes < 1:
            raise ValueError(f"process count must be positive, got {num_processes}")
        if coordinator is None:
            raise ValueError(f"a run of {num_processes} processes needs the coordinator's address "
                             f"HOST:PORT (process 0's host and a free port): --coordinator or "
                             f"${ENV_COORDINATOR}; or --cluster to let JAX read it from Slurm, "
                             "Open MPI, Kubernetes or Cloud TPU")
        if process_id is None:
            raise ValueError(f"a run of {num_processes} processes needs this process's id "
                             f"0..{num_processes - 1}: --process-id or ${ENV_PROCESS_ID}")
        if not 0 <= process_id < num_processes:
            raise ValueError(f"process id {process_id} outside 0..{num_processes - 1} for a run "
                             f"of {num_processes} processes")
    # CPU collectives across processes go over gloo (TCP); the default would refuse them.
    jax.config.update("jax_cpu_collectives_implementation", "gloo")
    jax.distributed.initialize(coordinator, num_processes, process_id,
                               initialization_timeout=timeout_s)
    return jax.process_index(), jax.process_count()


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """The process-group options every command line here shares."""
    g = parser.add_argument_group("several processes (jax.distributed)")
    g.add_argument("--coordinator", metavar="HOST:PORT",
                   help=f"process 0's address and a free port (default ${ENV_COORDINATOR})")
    g.add_argument("--num-processes", type=int, metavar="N",
                   help=f"processes in the job (default ${ENV_NUM_PROCESSES}, else 1)")
    g.add_argument("--process-id", type=int, metavar="I",
                   help=f"this process, 0..N-1 (default ${ENV_PROCESS_ID})")
    g.add_argument("--cluster", action="store_true",
                   help="let JAX detect what is unset from Slurm / Open MPI / Kubernetes / TPU")
    g.add_argument("--init-timeout", type=int, default=300, metavar="S",
                   help="seconds to wait for every process to connect (default 300)")


def initialize_from_args(args: argparse.Namespace) -> tuple[int, int]:
    return initialize(args.coordinator, args.num_processes, args.process_id,
                      cluster=args.cluster, timeout_s=args.init_timeout)


def parse_and_join(parser: argparse.ArgumentParser, argv=None):
    """Parse a command line that took `add_arguments` and join the process group before
    anything touches a device; a bad group option is a usage error (exit 2) naming it.
    Returns (args, process index, process count)."""
    args = parser.parse_args(argv)
    try:
        index, count = initialize_from_args(args)
    except ValueError as e:
        parser.error(str(e))
    return args, index, count


def barrier(name: str) -> None:
    """Every process waits here until all have arrived (no-op in a one-process run)."""
    if jax.process_count() > 1:
        multihost_utils.sync_global_devices(name)


# --------------------------------------------------------------------------- harvesting
def harvest(activation_fn, tokens, *, path=None, verify: bool = False, progress: bool = True,
            on_shard=None, **kw):
    """`interp.data.store.harvest` run by every process of the job at once: process i writes
    shards i, i + n, ..., then (after a barrier) process 0 writes the manifest. Every process
    returns the complete store. Other arguments as `store.harvest`."""
    index, count = jax.process_index(), jax.process_count()
    if count == 1:
        return st.harvest(activation_fn, tokens, path=path, verify=verify, progress=progress,
                          on_shard=on_shard, **kw)
    spec = st.harvest_part(activation_fn, tokens, part=index, parts=count, path=path,
                           verify=verify, progress=progress and index == 0, on_shard=on_shard,
                           **kw)
    barrier("interp.distributed.harvest: parts written")
    error = None
    if index == 0:
        try:
            st.complete_harvest(spec, path, processes=count)
        except (st.CorruptStoreError, st.IncompleteStoreError, OSError) as e:
            error = e  # raised after the barrier, so the others do not wait for process 0
    barrier("interp.distributed.harvest: manifest written")
    if error is not None:
        raise error
    return st.ActivationStore(path if path is not None else cache_dir("activations", spec.key()))


# --------------------------------------------------------------------------- training
def data_part(mesh, batch_size: int) -> tuple[int, int]:
    """(part, parts): this process feeds rows [part * r, (part + 1) * r) of every global batch,
    r = batch_size // parts, and reads part `part` of the store. Processes whose devices hold
    the same rows (latents split across them) read the same part."""
    lo, hi = sharding.local_rows(mesh, batch_size)
    return lo // (hi - lo), batch_size // (hi - lo)


def local_batches(store, site: str, batch_size: int, steps: int, *, seed: int, part: int = 0,
                  parts: int = 1):
    """This process's rows of each of `steps` global batches: batches of batch_size // parts
    rows from shards part, part + parts, ... of the store, cycling through epochs of that part
    (epoch e reshuffled with (seed, e)). With parts=1 these are exactly the batches of
    `interp.lm_sae.training_batches`."""
    if batch_size % parts or not 0 <= part < parts:
        raise ValueError(f"local_batches: batch_size={batch_size} must split into {parts} equal "
                         f"parts and 0 <= part={part} < parts")
    rows = batch_size // parts
    spec = store.spec
    shards = list(range(part, spec.n_shards, parts))
    if spec.n_shards < parts:  # checked alike in every process, not only in those left empty
        raise ValueError(f"the store has {spec.n_shards} shard(s), fewer than the {parts} "
                         "data-parallel processes: harvest it again with a smaller "
                         "contexts_per_shard (--contexts-per-shard) so every process gets one")
    per_epoch = sum(hi - lo for lo, hi in map(spec.shard_range, shards)) * (
        spec.context_length - 1)
    if per_epoch < rows:
        raise ValueError(f"part {part} of {parts} of the store serves {per_epoch} rows per epoch, "
                         f"fewer than one batch of {rows}")

    def generate():
        served, epoch = 0, 0
        while served < steps:
            for x in store.batches(site, rows, seed=seed, epoch=epoch, drop_remainder=True,
                                   shards=shards):
                yield x
                served += 1
                if served == steps:
                    return
            epoch += 1

    return generate()


def run_record(store, site: str, config, mesh) -> dict:
    """What a resumed run must share with the run that wrote the checkpoint."""
    _, parts = data_part(mesh, config.batch_size)
    return {"processes": jax.process_count(), "data_parts": parts,
            "mesh": {k: int(v) for k, v in mesh.shape.items()}, "store": store.spec.key(),
            "site": site, "config": config.to_dict()}


def _check_resumable(out: Path, record: dict) -> None:
    if not (out / RUN_FILE).exists():
        raise ValueError(f"{out} holds a checkpoint but no {RUN_FILE}, so it was not written by "
                         "`python -m interp.sae train` and its process count is unknown: resume "
                         "it with interp.sae.resume, or use another --out")
    old = read_checked_json(out / RUN_FILE, delete=out, then="to train from scratch")
    if old.get("processes") != record["processes"]:
        raise ValueError(
            f"process count mismatch: the checkpoint in {out} was written by a run of "
            f"{old.get('processes')} process(es), this run has {record['processes']}. Resume "
            f"with --num-processes {old.get('processes')}: each process reads its own part of "
            "the store, so the data order depends on the process count")
    changed = sorted(k for k in record if k != "config" and old.get(k) != record[k])
    changed += sorted(f"config.{k}" for k in record["config"]
                      if (old.get("config") or {}).get(k) != record["config"][k])
    if changed:
        detail = ", ".join(f"{k}: {_lookup(old, k)!r} then, {_lookup(record, k)!r} now"
                           for k in changed)
        raise ValueError(f"cannot resume the run in {out}: {detail}. Use the same store, site, "
                         "mesh and config, or another --out")


def _lookup(record: dict, key: str):
    for part in key.split("."):
        record = (record or {}).get(part)
    return record


def train_on_store(store, site: str, config, out, *, mesh=None, log_every: int = 100,
                   checkpoint_every: int | None = None, stop_after: int | None = None,
                   progress: bool = True):
    """Train (or resume, if `out` holds a checkpoint) one SAE on `store`'s `site` with every
    process of the job: data parallel over `mesh` (default `make_mesh()`: all global devices on
    "data"), each process reading its own part of the store (`local_batches`, data order seeded
    by config.seed), checkpoints in `out` written by process 0. `stop_after` ends a fresh run
    early (the next call resumes it). Returns (state, history) as `interp.sae.train` does;
    `state` arrays may span other processes' devices."""
    mesh = mesh if mesh is not None else sae.make_mesh()
    out = Path(out)
    record = run_record(store, site, config, mesh)
    resuming = (out / CHECKPOINT_FILE).exists()
    if resuming:
        _check_resumable(out, record)
    barrier("interp.distributed.train_on_store: run record read")
    if jax.process_index() == 0:
        out.mkdir(parents=True, exist_ok=True)
        write_checked_json(out / RUN_FILE, record)
    part, parts = data_part(mesh, config.batch_size)
    batches = local_batches(store, site, config.batch_size, config.steps, seed=config.seed,
                            part=part, parts=parts)
    progress = progress and jax.process_index() == 0
    if resuming:
        return sae.resume(out, batches, mesh=mesh, log_every=log_every,
                          checkpoint_every=checkpoint_every, progress=progress)
    return sae.train(config, batches, mesh=mesh, log_every=log_every, checkpoint_dir=out,
                     checkpoint_every=checkpoint_every, progress=progress, stop_after=stop_after)
