"""What `SAEConfig.compute_dtype="bfloat16"` does to training (issue #16): speed and loss.

    python benchmarks/compute_dtype.py [--tokens 250000] [--seeds 3] [--epochs 2] [--plot f.png]

Trains the book's reference SAE recipe (`lm_sae.reference_config`: SmolLM2-135M
blocks.6.resid_post, 4x expansion, L1 4e-3, batch 1024, step="auto") on the cached activation
store, once per seed in float32 and once in bfloat16 (dense products from bf16-rounded inputs,
float32 accumulation, parameters and optimiser), as two vmapped seed sweeps. Prints

- each arm's training wall time (trained here, not reloaded from the run cache),
- the loss curves' relative gap, (bf16 - f32) / f32 per seed at each logged step,
- held-out metrics of every SAE, all evaluated in float32 (FVU, L0, training objective), and
  the paired bf16 - f32 difference over seeds with its 95% t interval and the equivalence
  verdict (TOST) for a +-`--margin` relative change of the held-out objective: "reproduced"
  reads "bf16 is harmless at this margin".
"""

from __future__ import annotations

import argparse
import os
import time

import numpy as np

DTYPES = ("float32", "bfloat16")


def heldout_metrics(run, rows):
    """FVU, L0 and the training objective of each SAE of a seed sweep, in float32."""
    from interp import lm_sae, sae

    out = []
    for i, cfg in enumerate(run.configs):
        cfg32 = cfg.replace(compute_dtype="float32")
        state = sae.sweep_member(run.state, i)
        one = lm_sae.TrainedRun(state, (cfg32,), {}, 0.0, True)
        model = sae.to_sae(state, cfg32)
        f = np.asarray(model.encode(rows))
        x_hat = np.asarray(model.decode(f))
        fvu = float(np.sum((rows - x_hat) ** 2) / np.sum((rows - rows.mean(0)) ** 2))
        out.append({"fvu": fvu, "l0": float(np.mean(np.sum(f > 0, axis=1))),
                    "objective": lm_sae.heldout_loss(one, rows)})
    return out


def main():
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--tokens", type=int, default=250_000)
    p.add_argument("--seeds", type=int, default=3)
    p.add_argument("--epochs", type=float, default=2.0)
    p.add_argument("--heldout-contexts", type=int, default=32)
    p.add_argument("--margin", type=float, default=0.01,
                   help="relative change of the held-out objective called harmless")
    p.add_argument("--plot", default=None, help="write the loss curves to this PNG")
    args = p.parse_args()

    import jax

    from interp import lm_sae, sae, stats
    from interp.sae import sparse_ffi
    from interp.sae.state import sweep_configs

    acts = lm_sae.activations(n_tokens=args.tokens, heldout_contexts=args.heldout_contexts)
    rows = lm_sae.heldout_activations(acts)
    seeds = list(range(args.seeds))
    # what only the first arm would pay otherwise: compiling the C++ kernels and reading the
    # store from disk into the page cache (each arm's time includes its own jit compilation)
    sparse_ffi.available()
    for _ in acts.store.batches(acts.site, 1024, seed=0, epoch=0):
        pass
    runs = {}
    for dtype in DTYPES:  # trained here, not through the run cache: the wall time is measured
        cfg = lm_sae.reference_config(acts, epochs=args.epochs, compute_dtype=dtype)
        batches = lm_sae.training_batches(acts.store, acts.site, cfg.batch_size, cfg.steps,
                                          seed=cfg.seed)
        start = time.perf_counter()
        state, history = sae.train_sweep(cfg, batches, {"seed": seeds},
                                         log_every=max(1, cfg.steps // 50))
        seconds = time.perf_counter() - start
        runs[dtype] = lm_sae.TrainedRun(state, tuple(sweep_configs(cfg, {"seed": seeds})),
                                        history, seconds, False)
        print(f"{dtype}: {cfg.steps} steps x {len(seeds)} seeds, {cfg.d_in} x {cfg.d_sae}, "
              f"batch {cfg.batch_size}: {seconds:.0f} s (load {os.getloadavg()[0]:.2f}, "
              f"{jax.default_backend()})", flush=True)

    h32, h16 = runs["float32"].history, runs["bfloat16"].history
    steps = np.asarray(h32["step"]).reshape(len(h32["step"]), -1)[:, 0]  # same for every seed
    loss32, loss16 = np.asarray(h32["loss"], float), np.asarray(h16["loss"], float)
    gap = (loss16 - loss32) / loss32  # (logged steps, seeds)
    late = steps >= steps[-1] // 2
    print(f"\ntraining loss, (bf16 - f32) / f32 per seed over {len(steps)} logged steps: "
          f"max |gap| {np.max(np.abs(gap)):.4f}, over the second half {np.max(np.abs(gap[late])):.4f}, "
          f"last step {np.array2string(gap[-1], precision=4)}")

    m32, m16 = heldout_metrics(runs["float32"], rows), heldout_metrics(runs["bfloat16"], rows)
    print(f"\nheld-out ({len(rows)} activations), every SAE evaluated in float32:")
    print(f"{'seed':<6}{'FVU f32':>10}{'FVU bf16':>10}{'L0 f32':>9}{'L0 bf16':>9}"
          f"{'obj f32':>10}{'obj bf16':>10}")
    for s, a, b in zip(seeds, m32, m16):
        print(f"{s:<6}{a['fvu']:>10.4f}{b['fvu']:>10.4f}{a['l0']:>9.1f}{b['l0']:>9.1f}"
              f"{a['objective']:>10.4f}{b['objective']:>10.4f}")
    for name in ("fvu", "l0", "objective"):
        eff = stats.Effect.paired([b[name] for b in m16], [a[name] for a in m32])
        print(f"  bf16 - f32 {name:<10} {eff.mean:+.4f}, 95% CI [{eff.ci[0]:+.4f}, "
              f"{eff.ci[1]:+.4f}], MDE {eff.mde:.4f}")
    rel = stats.Effect.paired([b["objective"] / a["objective"] for a, b in zip(m32, m16)],
                              [1.0] * len(seeds))
    verdict = stats.equivalence(rel, args.margin)
    print(f"  relative change of the objective {rel.mean:+.4%}, 95% CI [{rel.ci[0]:+.4%}, "
          f"{rel.ci[1]:+.4%}]; equivalent within +-{args.margin:.0%}: {verdict}")

    if args.plot:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt

        fig, (ax, bx) = plt.subplots(1, 2, figsize=(10, 3.5))
        for s in range(len(seeds)):
            ax.plot(steps, loss32[:, s], color="C0", alpha=0.7, label="float32" if s == 0 else None)
            ax.plot(steps, loss16[:, s], color="C1", alpha=0.7, ls="--",
                    label="bfloat16" if s == 0 else None)
            bx.plot(steps, gap[:, s], alpha=0.8, label=f"seed {s}")
        ax.set(xlabel="step", ylabel="training loss", yscale="log", title="loss curves")
        bx.axhline(0, color="k", lw=0.5)
        bx.set(xlabel="step", ylabel="(bf16 - f32) / f32", title="relative gap")
        ax.legend(), bx.legend()
        fig.tight_layout()
        fig.savefig(args.plot, dpi=120)
        print(f"plot: {args.plot}")


if __name__ == "__main__":
    main()
