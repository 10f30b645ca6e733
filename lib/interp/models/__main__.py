"""Check an install in one line.

    python -m interp.models info smollm2-135m
    python -m interp.models generate smollm2-135m "The capital of France is" --max-new-tokens 3
    python -m interp.models topk smollm2-135m "The capital of France is" --k 10

Bad arguments (an empty or non-UTF-8 prompt, a prompt longer than the model's context, --k
outside 1..vocabulary, a negative or non-finite temperature, ...) exit with status 2 and one
line on stderr, before any model code runs.
"""

from __future__ import annotations

import argparse
import json
import os
import sys

from interp import models
from interp.models import sampling


def _parser() -> argparse.ArgumentParser:
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
    return p


def _check_utf8(value: str, what: str) -> None:
    """Arguments arrive decoded with surrogate escapes; a lone surrogate means invalid bytes."""
    try:
        value.encode("utf-8")
    except UnicodeEncodeError:
        raw = os.fsencode(value)
        shown = repr(raw[:40]) + ("..." if len(raw) > 40 else "")
        raise ValueError(f"the {what} is not valid UTF-8 text ({shown}); pass UTF-8") from None


def _prompt_ids(model: models.Model, prompt: str, new_tokens: int = 0) -> list[int]:
    ids = model.tokenizer.encode(prompt)
    if not ids:
        raise ValueError(f"the prompt {prompt!r} encodes to no tokens; give some text")
    if len(ids) + new_tokens > model.cfg.context_length:
        extra = f" + {new_tokens} new tokens" if new_tokens else ""
        raise ValueError(f"the prompt is {len(ids)} tokens{extra}, more than {model.name}'s "
                         f"context of {model.cfg.context_length} tokens; shorten it")
    return ids


def _checked_request(args) -> tuple[models.Model, list[int] | None]:
    """The model and the prompt's ids, or ValueError naming the bad argument."""
    _check_utf8(args.name, "model name")
    if args.command != "info":
        _check_utf8(args.prompt, "prompt")
    if args.command == "generate":
        sampling.check_sampling(temperature=args.temperature, top_p=args.top_p,
                                frequency_penalty=args.frequency_penalty,
                                max_new_tokens=args.max_new_tokens, seed=args.seed)
    model = models.load(args.name, progress=sys.stderr.isatty())
    if args.command == "info":
        return model, None
    if args.command == "topk" and not 1 <= args.k <= model.cfg.vocab_size:
        raise ValueError(f"--k must be in 1..{model.cfg.vocab_size} ({model.name}'s vocabulary), "
                         f"got {args.k}")
    new_tokens = args.max_new_tokens if args.command == "generate" else 0
    return model, _prompt_ids(model, args.prompt, new_tokens)


def main(argv: list[str] | None = None) -> int:
    p = _parser()
    args = p.parse_args(argv)
    try:
        model, ids = _checked_request(args)
    except (ValueError, models.ModelFileError) as e:
        p.exit(2, f"error: {' '.join(str(e).splitlines())}\n")
    if args.command == "info":
        print(model.info())
    elif args.command == "generate":
        text = model.generate(args.prompt, max_new_tokens=args.max_new_tokens,
                              temperature=args.temperature, top_p=args.top_p,
                              frequency_penalty=args.frequency_penalty, seed=args.seed)
        print(text)
    else:
        print(json.dumps({"ids": ids, "topk": model.topk(ids, args.k).tolist()}))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
