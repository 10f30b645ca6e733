"""Check an install in one line.

    python -m interp.models info smollm2-135m
    python -m interp.models generate smollm2-135m "The capital of France is" --max-new-tokens 3
    python -m interp.models topk smollm2-135m "The capital of France is" --k 10
"""

from __future__ import annotations

import argparse
import json
import sys

from interp import models


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m interp.models", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = p.add_subparsers(dest="command", required=True)
    names = f"one of: {', '.join(models.NAMES)}"
    info = sub.add_parser("info", help="architecture, sizes and sites")
    info.add_argument("name", help=names)
    gen = sub.add_parser("generate", help="continue a prompt (greedy unless --temperature > 0)")
    gen.add_argument("name", help=names)
    gen.add_argument("prompt")
    gen.add_argument("--max-new-tokens", type=int, default=32)
    gen.add_argument("--temperature", type=float, default=0.0)
    gen.add_argument("--top-p", type=float, default=1.0)
    gen.add_argument("--frequency-penalty", type=float, default=0.0)
    gen.add_argument("--seed", type=int, default=0)
    top = sub.add_parser("topk", help='JSON {"ids": [...], "topk": [[...] per position]}')
    top.add_argument("name", help=names)
    top.add_argument("prompt")
    top.add_argument("--k", type=int, default=10)
    args = p.parse_args(argv)

    try:
        model = models.load(args.name, progress=sys.stderr.isatty())
    except (ValueError, models.ModelFileError) as e:
        p.exit(2, f"error: {e}\n")
    if args.command == "info":
        print(model.info())
    elif args.command == "generate":
        text = model.generate(args.prompt, max_new_tokens=args.max_new_tokens,
                              temperature=args.temperature, top_p=args.top_p,
                              frequency_penalty=args.frequency_penalty, seed=args.seed)
        print(text)
    else:
        ids = model.tokenizer.encode(args.prompt)
        print(json.dumps({"ids": ids, "topk": model.topk(ids, args.k).tolist()}))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
