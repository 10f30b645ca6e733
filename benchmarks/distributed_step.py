"""SAE training step rate in 2 processes vs 1 (jax.distributed, gloo collectives on CPU).

    python benchmarks/distributed_step.py [--d-in 576] [--d-sae 2304] [--batch 1024]
                                          [--steps 20] [--warmup 3] [--devices 2 4]

For each device count D in --devices, the jitted data-parallel training step of one ReLU SAE
(`interp.sae`, mesh over all devices) runs first in one process holding D forced CPU devices,
then in 2 processes holding D/2 each, joined by `interp.distributed.initialize` on 127.0.0.1.
Prints activations/s = batch x steps / seconds after `--warmup` steps (compilation) and the
2-process / 1-process ratio. Each process draws its own rows of every batch from a seeded
generator (no store is read), so only the step and its gradient all-reduce are timed. On a
2-core machine expect no gain: the point is the path to a cluster, not speed here.
"""

from __future__ import annotations

import argparse
import json
import os
import socket
import subprocess
import sys
import time


def worker(args) -> None:
    from interp import distributed

    index, count = distributed.initialize(
        f"127.0.0.1:{args.port}" if args.num_processes > 1 else None, args.num_processes,
        args.process_id, timeout_s=120)
    import jax
    import numpy as np

    from interp import sae
    from interp.sae import sharding, training

    cfg = sae.SAEConfig(d_in=args.d_in, d_sae=args.d_sae, batch_size=args.batch,
                        steps=args.warmup + args.steps, l1_coeff=1e-3, lr=1e-4)
    mesh = sae.make_mesh()
    lo, hi = sharding.local_rows(mesh, cfg.batch_size)
    rng = np.random.default_rng([0, lo])  # this process's rows, seeded by where they go
    local = [rng.standard_normal((hi - lo, cfg.d_in), dtype=np.float32) for _ in range(4)]
    batches = [sharding.put_batch(x, mesh, cfg.batch_size) for x in local]
    stats = {"input_scale": 1.0, "input_sq_norm": float(cfg.d_in),
             "mean": np.zeros(cfg.d_in, np.float32)}
    state = sharding.shard_state(training.init_state(cfg, stats, 0), cfg, mesh)
    runner = training.runner_for(cfg, False, mesh)
    h = training.config_hyper(cfg)

    def run(n, state):
        for i in range(n):
            state = runner.step(state, batches[i % len(batches)], h)
        jax.block_until_ready(state.params)
        return state

    state = run(args.warmup, state)
    start = time.perf_counter()
    state = run(args.steps, state)
    seconds = time.perf_counter() - start
    if index == 0:
        print(json.dumps({"processes": count, "devices": jax.device_count(),
                          "activations_per_s": cfg.batch_size * args.steps / seconds,
                          "step_ms": 1e3 * seconds / args.steps}))


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def launch(args, devices: int, processes: int) -> dict:
    """Run the worker in `processes` processes of devices / processes CPU devices each."""
    env = dict(os.environ, JAX_PLATFORMS="cpu",
               XLA_FLAGS=f"--xla_force_host_platform_device_count={devices // processes}")
    port = free_port()
    shape = ["--d-in", str(args.d_in), "--d-sae", str(args.d_sae), "--batch", str(args.batch),
             "--steps", str(args.steps), "--warmup", str(args.warmup)]
    procs = [subprocess.Popen([sys.executable, __file__, "--worker", "--port", str(port),
                               "--num-processes", str(processes), "--process-id", str(i), *shape],
                              env=env, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL,
                              text=True) for i in range(processes)]
    try:
        outs = [p.communicate(timeout=args.timeout)[0] for p in procs]
    finally:
        for p in procs:
            if p.poll() is None:
                p.kill()
                p.wait()
    if any(p.returncode for p in procs):
        raise RuntimeError(f"worker failed: exit codes {[p.returncode for p in procs]}")
    return json.loads([line for line in outs[0].splitlines() if line.startswith("{")][-1])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--d-in", type=int, default=576)
    parser.add_argument("--d-sae", type=int, default=2304)
    parser.add_argument("--batch", type=int, default=1024)
    parser.add_argument("--steps", type=int, default=20)
    parser.add_argument("--warmup", type=int, default=3)
    parser.add_argument("--devices", type=int, nargs="+", default=[2, 4])
    parser.add_argument("--timeout", type=int, default=600)
    parser.add_argument("--worker", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--port", type=int, help=argparse.SUPPRESS)
    parser.add_argument("--num-processes", type=int, default=1, help=argparse.SUPPRESS)
    parser.add_argument("--process-id", type=int, default=0, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.worker:
        return worker(args)
    print(f"SAE {args.d_in} x {args.d_sae}, batch {args.batch}, {args.steps} timed steps; "
          f"{os.cpu_count()} CPUs, load average {os.getloadavg()[0]:.1f}")
    for devices in args.devices:
        one, two = launch(args, devices, 1), launch(args, devices, 2)
        for r in (one, two):
            print(f"  {devices} devices, {r['processes']} process(es): "
                  f"{r['activations_per_s']:10,.0f} activations/s ({r['step_ms']:.0f} ms/step)")
        print(f"  2 processes / 1 process: "
              f"{two['activations_per_s'] / one['activations_per_s']:.2f}x")


if __name__ == "__main__":
    main()
