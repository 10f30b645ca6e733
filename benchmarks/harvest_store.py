"""Harvest throughput and peak memory of interp.data.store.

Prints tokens/second into the store and the peak resident memory (ru_maxrss) of a fresh
process per size, for 100k and 1M tokens by default. Uses the real SmolLM2-135M (residual
stream after layer 6, stopping the forward pass there) unless `--model synthetic`, which uses
a jitted random network of the same width (d=576) to isolate the store's own cost.

    python benchmarks/harvest_store.py                       # smollm2-135m, 100k and 1M tokens
    python benchmarks/harvest_store.py --model synthetic --tokens 100000 1000000 10000000
"""

import argparse
import json
import os
import resource
import subprocess
import sys
import tempfile
import time


def run_one(args) -> dict:
    import jax
    import jax.numpy as jnp
    import numpy as np

    from interp.data import store

    n_ctx = args.tokens[0] // args.context
    rng = np.random.default_rng(0)
    if args.model == "synthetic":
        d, vocab = 576, 49152
        emb = jax.random.normal(jax.random.PRNGKey(0), (vocab, d), jnp.float32)
        w = jax.random.normal(jax.random.PRNGKey(1), (d, d)) / np.sqrt(d)

        def fn(params, tokens):
            emb, w = params
            x = emb[tokens]
            return {"blocks.6.resid_post": x + jnp.tanh(x @ w)}

        params = (emb, w)

        tokens = rng.integers(1, vocab, (n_ctx, args.context), dtype=np.int32)
        tokens[:, 0] = 1
        model_name = "synthetic-576"
    else:
        from interp import models
        from interp.data import model_sites

        model = models.load(args.model, progress=False)
        fn = model_sites.activation_fn(model, ["blocks.6.resid_post"], with_params=True)
        params = model.params
        tokens = rng.integers(300, model.cfg.vocab_size - 1000, (n_ctx, args.context),
                              dtype=np.int32)
        try:  # real text when the corpus is present
            from interp.data import corpus, packing

            tokens = packing.packed_split("train", model.tokenizer, args.context, n_ctx,
                                          progress=False)
        except corpus.CorpusNotFetched:
            tokens[:, 0] = model.cfg.bos_id
        model_name = model_sites.model_id(model)
    with tempfile.TemporaryDirectory() as tmp:
        # A first tiny harvest measures the compile time, which a real harvest pays once.
        t0 = time.perf_counter()
        store.harvest(fn, tokens[: args.batch], model=model_name, corpus_revision="bench",
                      batch_size=args.batch, path=f"{tmp}/warm", progress=False, params=params)
        first_batch_s = time.perf_counter() - t0
        rss_before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
        t0 = time.perf_counter()
        s = store.harvest(fn, tokens, model=model_name, corpus_revision="bench",
                          batch_size=args.batch, path=f"{tmp}/s", progress=False, params=params)
        seconds = time.perf_counter() - t0
        rss_harvest = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
        disk = sum(os.path.getsize(os.path.join(r, f)) for r, _, fs in os.walk(s.path)
                   for f in fs)
        t0 = time.perf_counter()
        served = sum(len(b) for b in s.batches("blocks.6.resid_post", 4096, seed=0))
        read_s = time.perf_counter() - t0
    return {"model": args.model, "tokens": int(tokens.size), "seconds": round(seconds, 2),
            "compile_and_first_batch_s": round(first_batch_s, 1),
            "tokens_per_s": round(tokens.size / seconds), "disk_MB": round(disk / 2**20, 1),
            "peak_rss_MB_before_harvest": round(rss_before),
            "peak_rss_MB": round(rss_harvest),
            "peak_rss_MB_with_read": round(
                resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024),
            "read_rows_per_s": round(served / read_s), "backend": jax.default_backend(),
            "devices": len(jax.devices())}


def main():
    p = argparse.ArgumentParser(description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--model", default="smollm2-135m",
                   help="smollm2-135m, gemma3-270m or synthetic")
    p.add_argument("--tokens", type=int, nargs="+", default=[100_000, 1_000_000])
    p.add_argument("--context", type=int, default=128)
    p.add_argument("--batch", type=int, default=32)
    p.add_argument("--one", action="store_true", help=argparse.SUPPRESS)
    args = p.parse_args()
    if args.one:
        print(json.dumps(run_one(args)))
        return
    for n in args.tokens:  # a fresh process per size so peak RSS is per size
        cmd = [sys.executable, __file__, "--one", "--model", args.model, "--tokens", str(n),
               "--context", str(args.context), "--batch", str(args.batch)]
        out = subprocess.run(cmd, capture_output=True, text=True)
        if out.returncode != 0:
            sys.exit(f"benchmark failed for {n} tokens:\n{out.stderr[-3000:]}")
        r = json.loads(out.stdout.strip().splitlines()[-1])
        print(f"{r['model']:>14s} {r['tokens']:>10,d} tokens: {r['tokens_per_s']:>9,d} tok/s "
              f"into the store ({r['seconds']} s; compile + first batch "
              f"{r['compile_and_first_batch_s']} s), peak RSS {r['peak_rss_MB']} MB "
              f"({r['peak_rss_MB_before_harvest']} MB before, "
              f"{r['peak_rss_MB_with_read']} MB after "
              f"a shuffled read), store "
              f"{r['disk_MB']} MB, shuffled read {r['read_rows_per_s']:,d} rows/s "
              f"[{r['backend']} x{r['devices']}]")


if __name__ == "__main__":
    main()
