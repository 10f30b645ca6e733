"""SAE training throughput vs the machine's float32 matmul ceiling.

    python benchmarks/sae_train.py [--d-in 576] [--d-sae 4608] [--batch 4096] [--sweep 8]

Prints: numpy (BLAS) and JAX (XLA dot) float32 GEMM rates on a (batch x d_in) @ (d_in x d_sae)
product; the "5-matmul ceiling" = best GEMM rate / (5 * 2 * d_in * d_sae) activations/s
(encoder forward, decoder forward, and the three gradients: dW_dec, df, dW_enc; 26.5 MFLOP per
activation at 576 x 4608); the single-SAE training step's activations/s and its fraction of
the ceiling; and a vmapped sweep of `--sweep` L1 values, per SAE, relative to the single rate.
Timings are medians over a few repeats after a warm-up (compile) call.

At realistic sparsity (issue #16; `--l0` / `--topk`, skipped with `--no-sparse`): the dense
and the sparse step (SAEConfig.step) of a ReLU SAE whose encoder bias is set so that L0 is
32 / 64 / 128 latents per token (a fresh SAE on Gaussian inputs fires half its latents, which
no trained SAE does), also with compute_dtype="bfloat16" (`--compute-dtypes`; rows "... bf16"),
and of top-k SAEs at k = 32 / 64 / 128, each as activations/s and as a multiple of the dense
ReLU step; then the book's shapes (`--book-d-sae`, `--book-batch`) as an
8-way vmapped L1 sweep, dense vs sparse, per SAE.
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
from interp.sae.precision import COMPUTE_DTYPES


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


def with_l0(cfg: sae.SAEConfig, state, x, l0: int):
    """The state with b_enc = minus the (1 - l0/d_sae) quantile of the batch's pre-activations,
    so about `l0` latents fire per token (stacked states get the same bias per member)."""
    W_enc = state.params["W_enc"]
    z = np.asarray(x @ (W_enc if W_enc.ndim == 2 else W_enc[0]))
    bias = -float(np.quantile(z, 1.0 - l0 / cfg.d_sae))
    params = dict(state.params)
    params["b_enc"] = jnp.full(params["b_enc"].shape, bias, jnp.float32)
    return state._replace(params=params)


def timed_rate(cfg, l0, n_sweep, repeats, seed=1):
    """(SAE-activations/s, measured L0) of the training step of `cfg` (vmapped over an
    n_sweep-way L1 sweep if n_sweep > 1), with L0 set by `with_l0` for ReLU SAEs."""
    rng = np.random.default_rng(seed)
    x = jnp.asarray(rng.standard_normal((cfg.batch_size, cfg.d_in), dtype=np.float32))
    stats = training.input_statistics([np.asarray(x)], cfg)
    if n_sweep == 1:
        state, h = training.init_state(cfg, stats, 0), training.config_hyper(cfg)
    else:
        configs = training.sweep_configs(
            cfg, {"l1_coeff": list(np.geomspace(1e-4, 1e-3, n_sweep))})
        state = jax.vmap(lambda s: training.init_state(cfg, stats, s))(
            jnp.arange(n_sweep, dtype=jnp.uint32))
        h = training.stacked_hyper(configs)
    if cfg.architecture == "relu" and l0:
        state = with_l0(cfg, state, x, l0)
    runner = training.runner_for(cfg, n_sweep > 1)
    box = [state]

    def one():
        box[0] = runner.step(box[0], x, h)
        jax.block_until_ready(box[0].params)

    t = best_time(one, repeats)
    sums = box[0].metric_sums["l0"] / box[0].metric_count
    return n_sweep * cfg.batch_size / t, float(np.mean(sums))


DTYPE_LABEL = {"bfloat16": "bf16"}


def sparse_table(args, ceiling):
    """Dense vs sparse step at realistic L0, and top-k, as multiples of the dense step."""
    base = sae.SAEConfig(d_in=args.d_in, d_sae=args.d_sae, batch_size=args.batch,
                         dead_strategy=args.strategy, lr=1e-5, lr_warmup_steps=0)
    rows = []
    for l0 in args.l0:
        for step in ("dense", *args.steps):
            for dtype in ("float32", *args.compute_dtypes):
                if dtype != "float32" and step == "sparse":
                    continue  # the numba step is float32 only
                rate, seen = timed_rate(base.replace(step=step, compute_dtype=dtype), l0, 1,
                                        args.repeats)
                label = step if dtype == "float32" else f"{step} {DTYPE_LABEL[dtype]}"
                rows.append((f"relu L0={l0}", label, rate, seen))
    for k in args.topk:
        for step in ("dense", *args.steps):
            rate, seen = timed_rate(base.replace(architecture="topk", k=k, step=step), 0, 1,
                                    args.repeats)
            rows.append((f"topk k={k}", step, rate, seen))
    dense = np.median([r[2] for r in rows if r[0].startswith("relu") and r[1] == "dense"])
    print(f"\nrealistic sparsity, {args.d_in} x {args.d_sae}, batch {args.batch} "
          f"(load {os.getloadavg()[0]:.2f}; multiples of the median dense ReLU step, "
          f"{dense:,.0f} activations/s):")
    print(f"{'SAE':<14}{'step':<10}{'measured L0':>12}{'activations/s':>16}{'x dense':>9}"
          f"{'of ceiling':>12}")
    for name, step, rate, seen in rows:
        print(f"{name:<14}{step:<10}{seen:>12.1f}{rate:>16,.0f}{rate / dense:>9.2f}"
              f"{rate / ceiling:>12.1%}")


def book_sweeps(args):
    """The book's shapes as an 8-way vmapped L1 sweep, dense vs sparse, per SAE."""
    print(f"\nbook shapes, vmapped sweep of {args.sweep}, batch {args.book_batch}, "
          f"L0={args.book_l0} (load {os.getloadavg()[0]:.2f}), per SAE:")
    for d_sae in args.book_d_sae:
        base = sae.SAEConfig(d_in=args.d_in, d_sae=d_sae, batch_size=args.book_batch,
                             lr=1e-5, lr_warmup_steps=0)
        rates = {step: timed_rate(base.replace(step=step), args.book_l0, args.sweep,
                                  args.repeats)[0] / args.sweep
                 for step in ("dense", *args.steps)}
        print(f"  {args.d_in} x {d_sae}: dense {rates['dense']:,.0f}/s, " + ", ".join(
            f"{s} {rates[s]:,.0f}/s = {rates[s] / rates['dense']:.2f}x" for s in args.steps))


def ints(text):
    return [int(v) for v in text.split(",") if v]


def main():
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--d-in", type=int, default=576)
    p.add_argument("--d-sae", type=int, default=4608)
    p.add_argument("--batch", type=int, default=4096)
    p.add_argument("--sweep", type=int, default=8)
    p.add_argument("--repeats", type=int, default=3)
    p.add_argument("--strategy", default="none", help="dead_strategy of the benchmarked SAE")
    p.add_argument("--no-sparse", action="store_true", help="skip the realistic-sparsity part")
    p.add_argument("--l0", type=ints, default=[32, 64, 128], help="ReLU L0s, comma-separated")
    p.add_argument("--topk", type=ints, default=[32, 64, 128], help="top-k ks")
    p.add_argument("--book-d-sae", type=ints, default=[1152, 2304])
    p.add_argument("--book-batch", type=int, default=512)
    p.add_argument("--book-l0", type=int, default=64)
    p.add_argument("--steps", type=lambda t: [v for v in t.split(",") if v],
                   default=["sparse", "ffi"],
                   help="non-dense SAEConfig.step values to compare with the dense step")
    p.add_argument("--compute-dtypes", type=lambda t: [v for v in t.split(",") if v],
                   default=["bfloat16"],
                   help="SAEConfig.compute_dtype values timed besides float32 (ReLU rows)")
    args = p.parse_args()
    unknown = [d for d in args.compute_dtypes if d not in COMPUTE_DTYPES]
    if unknown:
        p.error(f"--compute-dtypes {unknown}: allowed {COMPUTE_DTYPES}")
    args.compute_dtypes = [d for d in args.compute_dtypes if d != "float32"]  # always timed
    if "auto" in args.steps:
        p.error("--steps auto: 'auto' switches between the dense and the ffi step during "
                "training; time those two instead")

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
    if not args.no_sparse:
        sparse_table(args, ceiling)
        if args.sweep > 1:
            book_sweeps(args)


if __name__ == "__main__":
    main()
