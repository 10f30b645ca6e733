"""`python -m interp.sae train`: train one SAE on an activation store, in one process or in
several at once under `jax.distributed` (README, "Beyond one machine").

    python -m interp.sae train --store STORE --site blocks.6.resid_post --config sae.yaml \\
        --out runs/sae0 [--n-feature 2] [--checkpoint-every 500] \\
        [--coordinator HOST:PORT --num-processes N --process-id I | --cluster]

The config file (JSON or YAML) holds `SAEConfig` fields; `d_in` defaults to the site's width.
Rerunning the same command resumes from the checkpoint in --out (same process count only).
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import yaml

from interp import distributed, sae
from interp.data import open_store
from interp.sae import SAEConfig


def _config(path: str, d_in: int):
    text = Path(path).read_text(encoding="utf-8")
    fields = json.loads(text) if path.endswith(".json") else yaml.safe_load(text)
    if not isinstance(fields, dict):
        raise TypeError(f"{path}: expected a mapping of SAEConfig fields, got "
                         f"{type(fields).__name__}")
    fields.setdefault("d_in", d_in)
    if fields["d_in"] != d_in:
        raise ValueError(f"{path}: d_in={fields['d_in']} but the store's site is {d_in} wide")
    return SAEConfig.from_dict(fields)


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(prog="python -m interp.sae", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = parser.add_subparsers(dest="command", required=True)
    p = sub.add_parser("train", help="train (or resume) one SAE on an activation store")
    p.add_argument("--store", required=True, help="activation store folder")
    p.add_argument("--site", help="site to train on (default: the store's only site)")
    p.add_argument("--config", required=True, help="SAEConfig fields, JSON or YAML")
    p.add_argument("--out", required=True, help="checkpoint folder (resumed if it holds one)")
    p.add_argument("--n-feature", type=int, default=1,
                   help="devices the latents are split over (the rest split the batch)")
    p.add_argument("--checkpoint-every", type=int, default=None, metavar="STEPS")
    p.add_argument("--log-every", type=int, default=100, metavar="STEPS")
    p.add_argument("--stop-after", type=int, default=None, metavar="STEPS",
                   help="end a fresh run early at this step (checkpointed; rerun to finish)")
    p.add_argument("--quiet", action="store_true", help="no progress bar")
    distributed.add_arguments(p)
    args, index, count = distributed.parse_and_join(parser, argv)
    store = open_store(args.store)
    site = args.site or (next(iter(store.sites)) if len(store.sites) == 1 else None)
    if site not in store.sites:
        parser.error(f"--site {site!r}: the store holds {sorted(store.sites)}; name one of them")
    config = _config(args.config, store.sites[site])
    mesh = sae.make_mesh(n_feature=args.n_feature)
    start = time.perf_counter()
    _, history = distributed.train_on_store(
        store, site, config, args.out, mesh=mesh, log_every=args.log_every,
        checkpoint_every=args.checkpoint_every, stop_after=args.stop_after,
        progress=not args.quiet)
    seconds = time.perf_counter() - start
    if index == 0:
        last = {k: v[-1] for k, v in history.items() if v}
        print(json.dumps({"checkpoint": str(Path(args.out).resolve()), "processes": count,
                          "mesh": {k: int(v) for k, v in mesh.shape.items()},
                          "seconds": round(seconds, 3), **last}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
