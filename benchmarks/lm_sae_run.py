"""Issue 4's acceptance run: harvest, train and evaluate one SAE on the default model and corpus.

    python benchmarks/lm_sae_run.py                        # 1M tokens, SmolLM2 blocks.6.resid_post
    python benchmarks/lm_sae_run.py --tokens 20000 --heldout-contexts 8     # a quick check
    nohup python benchmarks/lm_sae_run.py --harvest-only > harvest.log 2>&1 &  # fill the cache

Steps, all through the library:
1. `interp.lm_sae.activations`: pack `--tokens` non-BOS tokens of the corpus's train split into
   contexts of `--context` (BOS first) and harvest the site into the content-addressed bfloat16
   activation store (reused if present, resumed if interrupted), plus held-out contexts.
   Prints harvest tokens/s (for the shards harvested in this run) and peak RSS.
2. `interp.sae.train`: one ReLU SAE (GDM baseline recipe: unit-norm decoder, b_dec subtracted,
   inputs scaled so E||x|| = sqrt(d), Adam beta1 = 0) for `--epochs` passes over the store
   (BOS rows dropped, shuffled).
3. `interp.lm_sae.splice_metrics` on held-out text: L0, FVU, MSE at the site and loss recovered,
   delta CE, KL by splicing the reconstruction in at every non-BOS position.
The last line is a JSON object with every number.
"""

from __future__ import annotations

import argparse
import json
import resource
import time


def peak_rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--model", default="smollm2-135m")
    p.add_argument("--site", default=None, help="default: interp.lm_sae.DEFAULT_SITE")
    p.add_argument("--tokens", type=int, default=1_000_000, help="non-BOS activations to harvest")
    p.add_argument("--context", type=int, default=128)
    p.add_argument("--heldout-contexts", type=int, default=32,
                   help="held-out contexts for the splice evaluation (32 x 127 = 4k predictions)")
    p.add_argument("--harvest-only", action="store_true",
                   help="stop after the harvest (e.g. to fill the cache in the background)")
    p.add_argument("--expansion", type=int, default=4, help="d_sae = expansion * d_model")
    p.add_argument("--l1", type=float, default=8e-3, help="L1 coefficient (MSE averaged over d)")
    p.add_argument("--lr", type=float, default=1e-3)
    p.add_argument("--batch", type=int, default=1024)
    p.add_argument("--epochs", type=int, default=1)
    p.add_argument("--seed", type=int, default=0)
    args = p.parse_args()

    import jax

    from interp import lm_sae, sae

    site = args.site or lm_sae.DEFAULT_SITE
    out: dict = {"model": args.model, "site": site, "backend": jax.default_backend()}

    # 1. harvest (or reuse / resume)
    shards_done: list[int] = []
    t0 = time.perf_counter()
    acts = lm_sae.activations(args.model, site, n_tokens=args.tokens, context_len=args.context,
                              heldout_contexts=args.heldout_contexts,
                              on_shard=shards_done.append)
    harvest_s = time.perf_counter() - t0
    spec = acts.store.spec
    harvested_tokens = sum((hi - lo) * spec.context_length
                           for lo, hi in map(spec.shard_range, shards_done))
    out.update({
        "store": str(acts.store.path), "store_tokens": acts.store.token_count,
        "store_rows_no_bos": acts.store.num_rows(drop_bos=True), "dtype": acts.store.dtype,
        "harvest_s": round(harvest_s, 1),
        "harvested_tokens_this_run": harvested_tokens,
        "harvest_tok_s": round(harvested_tokens / harvest_s, 1) if harvested_tokens else None,
        "peak_rss_mb_after_harvest": round(peak_rss_mb()),
    })
    print(json.dumps(out), flush=True)
    if args.harvest_only:
        return

    # 2. train one ReLU SAE for --epochs passes
    d = acts.d_in
    rows = acts.store.num_rows(drop_bos=True)
    steps = args.epochs * (rows // args.batch)
    cfg = sae.SAEConfig(d_in=d, d_sae=args.expansion * d, architecture="relu",
                        l1_coeff=args.l1, lr=args.lr, batch_size=args.batch, steps=steps,
                        lr_warmup_steps=max(1, steps // 20), input_normalisation="sqrt_d",
                        seed=args.seed)

    def batches():
        for epoch in range(args.epochs):
            yield from acts.store.batches(site, args.batch, seed=args.seed, epoch=epoch,
                                          drop_remainder=True)

    t0 = time.perf_counter()
    state, history = sae.train(cfg, batches(), log_every=max(1, steps // 10))
    train_s = time.perf_counter() - t0
    model_sae = sae.to_sae(state, cfg)
    out.update({
        "d_sae": cfg.d_sae, "l1_coeff": cfg.l1_coeff, "lr": cfg.lr, "batch": cfg.batch_size,
        "steps": steps, "train_s": round(train_s, 1),
        "train_act_s": round(steps * args.batch / train_s, 1),
        "train_final": {k: float(v[-1]) for k, v in history.items()
                        if k in ("fvu", "l0", "dead_fraction", "dense_fraction")},
    })

    # 3. evaluate on held-out text by splicing
    t0 = time.perf_counter()
    ev = lm_sae.splice_metrics(acts.model, site, model_sae, acts.heldout)
    out.update({"eval_s": round(time.perf_counter() - t0, 1),
                "heldout": {k: (round(v, 5) if isinstance(v, float) else v)
                            for k, v in ev.items()},
                "peak_rss_mb": round(peak_rss_mb())})
    print(json.dumps(out), flush=True)


if __name__ == "__main__":
    main()
