"""`python -m interp.book`: list, run and build the book's notebooks.

Exit status: 0 on success, 1 when a notebook or the HTML build fails, 2 for bad input
(unknown notebook, parameter or profile, wrong type) found before any compute.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from interp.book import params as P
from interp.book import plan as plan_mod
from interp.book.execute import NotebookFailed, run_notebook
from interp.book.project import Project
from interp.book.site import BuildFailed, build


def _parser() -> argparse.ArgumentParser:
    ap = argparse.ArgumentParser(prog="python -m interp.book", description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--root", type=Path, default=None,
                    help="book root holding _toc.yml (default: nearest above the cwd)")
    sub = ap.add_subparsers(dest="command", required=True)
    sub.add_parser("list", help="notebooks in _toc.yml with their parameters and profiles")
    run = sub.add_parser("run", help="validate parameters, then execute one notebook")
    run.add_argument("notebook", help="name (e.g. ghost_grads) or path of a notebook in _toc.yml")
    run.add_argument("--profile", default="cpu", help="smoke, cpu (default) or gpu")
    run.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE",
                     help="override one parameter (repeatable); values are read as YAML")
    run.add_argument("--force", action="store_true", help="execute even if up to date")
    bld = sub.add_parser("build", help="execute stale notebooks, then build the HTML book")
    bld.add_argument("--profile", default="cpu", help="smoke, cpu (default) or gpu")
    bld.add_argument("--force", action="store_true", help="re-execute every notebook")
    bld.add_argument("--dry-run", action="store_true",
                     help="print the priced compute plan per page and execute nothing")
    return ap


def _list(project: Project) -> None:
    notebooks = project.notebooks()
    if not notebooks:
        print("no notebooks in _toc.yml yet")
    for nb in notebooks:
        profiles = ", ".join(project.profiles(nb)) or "none"
        print(f"{nb.relative_to(project.root)}  (profiles: {profiles})")
        for p in P.notebook_parameters(nb).values():
            doc = f"  # {p.doc}" if p.doc else ""
            print(f"    {p.describe()}{doc}")


def _dry_run(project: Project, profile: str) -> None:
    pages = [(nb.stem, P.resolve(nb, project.params_dir(nb), profile))
             for nb in project.notebooks()]
    try:
        plans = plan_mod.plan(pages)
    except ValueError as e:  # a page without counts: bad input, found before any compute
        raise P.ParamError(str(e)) from e
    rows = [p.row() for p in plans]
    cols = list(rows[0]) if rows else []
    print(f"compute plan, profile {profile}, priced at the rates of a 2-core CPU machine (shared "
          f"stores and SAEs paid by the first page that needs them):")
    print("  ".join(f"{c:>20}" for c in cols))
    for r in rows:
        print("  ".join(f"{r[c]:>20,}" if isinstance(r[c], int) else f"{r[c]:>20}" for c in cols))
    total = sum(p.total_seconds for p in plans)
    print(f"estimated total: {total / 60:.1f} minutes (steering counts its chosen layer's store "
          f"and SAE as new: the worst case)")


def main(argv: list[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    try:
        project = Project(args.root.resolve()) if args.root else Project.find()
        if args.command == "list":
            _list(project)
        elif args.command == "run":
            if args.profile not in P.PROFILES:
                raise P.ParamError(f"unknown profile {args.profile!r}; valid profiles: "
                                   f"{', '.join(P.PROFILES)}")
            r = run_notebook(project, args.notebook, args.profile, args.overrides, args.force)
            state = f"executed in {r.seconds:.0f} s" if r.executed_now else "up to date, not re-executed"
            print(f"{r.notebook.stem}: {state} -> {r.executed}")
        elif args.command == "build":
            if args.profile not in P.PROFILES:
                raise P.ParamError(f"unknown profile {args.profile!r}; valid profiles: "
                                   f"{', '.join(P.PROFILES)}")
            if args.dry_run:
                _dry_run(project, args.profile)
                return 0
            report = build(project, args.profile, args.force)
            print(f"executed {len(report.executed)} notebook(s): {', '.join(report.executed) or 'none'}")
            print(f"claims: {len(report.claims)} -> {project.output_dir(args.profile) / 'claims.json'}")
            print(f"book: {report.html}")
    except P.ParamError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    except (NotebookFailed, BuildFailed) as e:
        print(f"error: {e}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
