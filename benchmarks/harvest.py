"""Throughput of the JAX models: harvesting the residual stream and the full forward with logits.

    python benchmarks/harvest.py                     # both models, batch 8 x 128
    python benchmarks/harvest.py --model smollm2-135m --batch 8 --seq 128 --repeats 3

For each model (each in its own process, so peak memory is per model) it prints:
* harvest: tokens/s running only up to the middle layer (`stop_at_layer=n_layers // 2`);
* full: tokens/s of the whole model with logits;
* hooks: the cost of *inactive* hooks (the tagged forward with no hooks against the same
  forward with every tag stripped; the acceptance target is < 2%) and of one active capture
  (`resid_post` at the middle layer);
* peak memory: process peak RSS, and the accelerator's peak bytes in use when there is one.
Timings are best of `--repeats` after one compile run; the input is real text (the Python
language reference shipped with CPython), tokenised and cut into `batch x seq` windows.
"""

from __future__ import annotations

import argparse
import json
import resource
import subprocess
import sys
import time


def bench_one(name: str, batch: int, seq: int, repeats: int) -> dict:
    import jax
    import numpy as np
    from pydoc_data.topics import topics

    from interp import hooks, models

    model = models.load(name, progress=False)
    text = "\n\n".join(topics[k] for k in sorted(topics))
    ids = model.tokenizer.encode(text, add_bos=False)[: batch * seq]
    if len(ids) < batch * seq:
        raise SystemExit(f"need {batch * seq} tokens of text, have {len(ids)}")
    tokens = jax.numpy.asarray(np.asarray(ids, np.int32).reshape(batch, seq))
    mid = model.cfg.n_layers // 2

    def timed(fn):
        jax.block_until_ready(fn())  # compile
        best = float("inf")
        for _ in range(repeats):
            t = time.perf_counter()
            jax.block_until_ready(fn())
            best = min(best, time.perf_counter() - t)
        return best

    n_tok = batch * seq
    t_harvest = timed(lambda: model.forward(tokens, stop_at_layer=mid).resid)
    t_full = timed(lambda: model.forward(tokens).logits)
    t_capture = timed(lambda: model.forward(
        tokens, hooks=hooks.capture("resid_post", layers=mid)).captures["resid_post"])

    # inactive hooks: the same forward with every tag stripped at trace time
    stripped = jax.jit(lambda p, t: models.core.forward(model.arch, p, t, model.cfg).logits)
    with hooks.untagged():
        t_stripped = timed(lambda: stripped(model.params, tokens))
    tagged = jax.jit(lambda p, t: models.core.forward(model.arch, p, t, model.cfg).logits)
    t_tagged = timed(lambda: tagged(model.params, tokens))

    out = {
        "model": name, "device": str(jax.devices()[0]), "batch": batch, "seq": seq,
        "harvest_layer": mid,
        "harvest_tok_s": round(n_tok / t_harvest, 1),
        "full_tok_s": round(n_tok / t_full, 1),
        "capture_one_site_overhead_pct": round(100 * (t_capture / t_full - 1), 2),
        "inactive_hooks_overhead_pct": round(100 * (t_tagged / t_stripped - 1), 2),
        "peak_rss_gb": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20, 2),
    }
    stats = jax.devices()[0].memory_stats() or {}
    if "peak_bytes_in_use" in stats:
        out["peak_device_gb"] = round(stats["peak_bytes_in_use"] / 2**30, 2)
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--model", choices=["smollm2-135m", "gemma3-270m", "tiny-llama", "tiny-gemma3"])
    ap.add_argument("--batch", type=int, default=8)
    ap.add_argument("--seq", type=int, default=128)
    ap.add_argument("--repeats", type=int, default=3)
    args = ap.parse_args()
    if args.model:
        print(json.dumps(bench_one(args.model, args.batch, args.seq, args.repeats)), flush=True)
        return
    for name in ["smollm2-135m", "gemma3-270m"]:  # one process each: separate peak memory
        cmd = [sys.executable, __file__, "--model", name, "--batch", str(args.batch),
               "--seq", str(args.seq), "--repeats", str(args.repeats)]
        subprocess.run(cmd, check=True)


if __name__ == "__main__":
    main()
