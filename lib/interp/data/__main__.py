"""`python -m interp.data harvest`: harvest a model's activations into a store, in one process
or in several at once under `jax.distributed` (README, "Beyond one machine").

    python -m interp.data harvest --model smollm2-135m --site blocks.6.resid_post \\
        --n-tokens 1000000 [--coordinator HOST:PORT --num-processes N --process-id I]
    python -m interp.data harvest --model tiny-llama --site blocks.1.resid_post \\
        --tokens contexts.npy --out store/

With --n-tokens the contexts are packed from a corpus split as `interp.lm_sae.activations`
packs them, so without --out the store lands in the same cache folder and the notebooks reuse
it. With --tokens they are an int32 .npy array [contexts, T] with BOS in column 0. Rerunning
the command (with any process count) finishes an interrupted harvest. Prints the store folder.
"""

from __future__ import annotations

import argparse
import json
import sys

import numpy as np

from interp import distributed, models
from interp.data import corpus as corpus_mod
from interp.data import model_sites, packing


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(prog="python -m interp.data", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = parser.add_subparsers(dest="command", required=True)
    p = sub.add_parser("harvest", help="harvest activations into a store")
    p.add_argument("--model", required=True, help="a name interp.models.load knows")
    p.add_argument("--site", action="append", required=True,
                   help="a site such as blocks.6.resid_post (repeat for several)")
    src = p.add_mutually_exclusive_group(required=True)
    src.add_argument("--tokens", help="int32 .npy array [contexts, T], BOS in column 0")
    src.add_argument("--n-tokens", type=int, help="non-BOS activations to pack from the corpus")
    p.add_argument("--context-len", type=int, default=128, help="with --n-tokens (default 128)")
    p.add_argument("--split", default="train", help="corpus split with --n-tokens")
    p.add_argument("--corpus-revision", default="tokens-file",
                   help="label recorded in the store's spec with --tokens")
    p.add_argument("--out", help="store folder (default: the content-addressed cache)")
    p.add_argument("--dtype", default="bfloat16", choices=["bfloat16", "float16"])
    p.add_argument("--batch-size", type=int, default=16, help="contexts per forward pass")
    p.add_argument("--contexts-per-shard", type=int, default=None)
    p.add_argument("--verify", action="store_true",
                   help="re-hash existing shards and harvest bad ones again")
    p.add_argument("--quiet", action="store_true", help="no progress bar")
    distributed.add_arguments(p)
    args, index, count = distributed.parse_and_join(parser, argv)
    model = models.load(args.model, progress=False)
    if args.tokens is not None:
        tokens, revision = np.load(args.tokens), args.corpus_revision
    else:
        corpus = corpus_mod.load()
        n_contexts = -(-args.n_tokens // (args.context_len - 1))
        tokens = packing.packed_split(args.split, model.tokenizer, args.context_len, n_contexts,
                                      corpus=corpus, progress=False)
        revision = corpus.revision
    store = distributed.harvest(
        model_sites.activation_fn(model, args.site, with_params=True), tokens,
        params=model.params, model=model_sites.model_id(model), corpus_revision=revision,
        dtype=args.dtype, batch_size=args.batch_size,
        contexts_per_shard=args.contexts_per_shard, path=args.out, verify=args.verify,
        progress=not args.quiet)
    if index == 0:
        print(json.dumps({"store": str(store.path), "processes": count,
                          "contexts": store.spec.n_contexts, "shards": store.spec.n_shards}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
