"""SAE training throughput vs the machine's float32 matmul ceiling.

    python benchmarks/sae_train.py [--d-in 576] [--d-sae 4608] [--batch 4096] [--sweep 8]

Prints: numpy (BLAS) and JAX (XLA dot) float32 GEMM rates on a (batch x d_in) @ (d_in x d_sae)
product; the "5-matmul ceiling" = best GEMM rate / (5 * 2 * d_in * d_sae) activations/s
(encoder forward, decoder forward, and the three gradients: dW_dec, df, dW_enc; 26.5 MFLOP per
activation at 576 x 4608); the single-SAE training step's activations/s and its fraction of
the ceiling; and a vmapped sweep of `--sweep` L1 values, per SAE, relative to the single rate.
Timings are medians over a few repeats after a warm-up (compile) call.
"""

from __future__ import annotations

import argparse
import os
import platform
import time

import jax
import jax.numpy as jnp
import numpy as np

from interp import sae
from interp.sae import training


def best_time(fn, repeats: int) -> float:
    fn()  # warm-up / compile
    times = []
    for _ in range(repeats):
        t = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t)
    return float(np.median(times))


def gemm_rates(batch, d_in, d_sae, repeats):
    rng = np.random.default_rng(0)
    a = rng.standard_normal((batch, d_in), dtype=np.float32)
    b = rng.standard_normal((d_in, d_sae), dtype=np.float32)
    flop = 2.0 * batch * d_in * d_sae
    t_np = best_time(lambda: a @ b, repeats)
    ja, jb = jnp.asarray(a), jnp.asarray(b)
    dot = jax.jit(jnp.dot)
    t_jax = best_time(lambda: dot(ja, jb).block_until_ready(), repeats)
    return flop / t_np, flop / t_jax


def step_rate(cfg: sae.SAEConfig, n_sweep: int, repeats: int) -> float:
    """SAE-activations per second of the jitted training step: batch_size x n_sweep / step
    time (every SAE of a sweep sees the whole batch)."""
    rng = np.random.default_rng(1)
    x = jnp.asarray(rng.standard_normal((cfg.batch_size, cfg.d_in), dtype=np.float32))
    stats = training.input_statistics([np.asarray(x)], cfg)
    if n_sweep == 1:
        state = training.init_state(cfg, stats, 0)
        h = training.config_hyper(cfg)
        runner = training.runner_for(cfg, False)
    else:
        configs = training.sweep_configs(
            cfg, {"l1_coeff": list(np.geomspace(1e-3, 1e-1, n_sweep))})
        state = jax.vmap(lambda s: training.init_state(cfg, stats, s))(
            jnp.arange(n_sweep, dtype=jnp.uint32))
        h = training.stacked_hyper(configs)
        runner = training.runner_for(cfg, True)
    box = [state]

    def one():
        box[0] = runner.step(box[0], x, h)
        jax.block_until_ready(box[0].params)

    t = best_time(one, repeats)
    return n_sweep * cfg.batch_size / t


def main():
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--d-in", type=int, default=576)
    p.add_argument("--d-sae", type=int, default=4608)
    p.add_argument("--batch", type=int, default=4096)
    p.add_argument("--sweep", type=int, default=8)
    p.add_argument("--repeats", type=int, default=3)
    p.add_argument("--strategy", default="none", help="dead_strategy of the benchmarked SAE")
    args = p.parse_args()

    print(f"machine: {platform.processor() or platform.machine()}, {os.cpu_count()} CPUs, "
          f"jax {jax.__version__} on {jax.devices()[0].platform}, numpy {np.__version__}")
    np_rate, jax_rate = gemm_rates(args.batch, args.d_in, args.d_sae, args.repeats)
    best = max(np_rate, jax_rate)
    flop_per_act = 5 * 2.0 * args.d_in * args.d_sae
    ceiling = best / flop_per_act
    print(f"float32 GEMM ({args.batch}x{args.d_in} @ {args.d_in}x{args.d_sae}): "
          f"numpy {np_rate / 1e9:.1f} GFLOP/s, jax.numpy.dot {jax_rate / 1e9:.1f} GFLOP/s")
    print(f"5-matmul ceiling: {flop_per_act / 1e6:.1f} MFLOP/activation -> "
          f"{ceiling:,.0f} activations/s at the best GEMM rate")

    cfg = sae.SAEConfig(d_in=args.d_in, d_sae=args.d_sae, batch_size=args.batch,
                        dead_strategy=args.strategy)
    single = step_rate(cfg, 1, args.repeats)
    print(f"single SAE step: {single:,.0f} activations/s = {single / ceiling:.1%} of the "
          f"ceiling ({single * flop_per_act / 1e9:.1f} effective GFLOP/s); target >= 80%")
    if args.sweep > 1:
        swept = step_rate(cfg, args.sweep, max(1, args.repeats - 1))
        # each step trains all SAEs on the same batch: SAE-activations per second, comparable
        # with the single-SAE rate (100% = vmapping costs nothing over separate runs)
        print(f"vmapped sweep of {args.sweep} L1 values: {swept / args.sweep:,.0f} activations/s"
              f" each, {swept:,.0f} SAE-activations/s in all = {swept / single:.1%} of the "
              f"single-SAE rate per SAE (target >= 90%)")


if __name__ == "__main__":
    main()
