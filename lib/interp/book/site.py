"""Build the HTML book from executed notebooks, with the generated Claims page.

Jupyter Book executes nothing here (`execute_notebooks: off`): the runner has already
executed each page with its profile, so a staging tree is assembled from the config,
the markdown pages and the executed copies, and Jupyter Book 1.x renders it with
warnings as errors. MathJax is served from a local copy so the book reads offline.
"""

from __future__ import annotations

import importlib.metadata as md
import json
import shutil
import subprocess
import sys
from dataclasses import dataclass, field
from pathlib import Path

from interp.book.execute import NotebookFailed, RunResult, run_notebook
from interp.book.project import Project
from interp.claims import VERDICTS, format_value

CLAIMS_MARKER = "<!-- claims-table -->"


class BuildFailed(RuntimeError):
    """Some notebooks failed or the HTML build reported warnings."""


@dataclass
class BuildReport:
    results: list[RunResult] = field(default_factory=list)
    failures: list[NotebookFailed] = field(default_factory=list)
    html: Path | None = None
    claims: list[dict] = field(default_factory=list)

    @property
    def executed(self) -> list[str]:
        return [r.notebook.stem for r in self.results if r.executed_now]


def execute_stale(project: Project, profile: str, force: bool = False) -> BuildReport:
    """Execute every notebook of the book whose executed copy is missing or stale."""
    report = BuildReport()
    for nb in project.notebooks():
        try:
            result = run_notebook(project, nb.stem, profile, force=force)
        except NotebookFailed as e:
            print(f"FAILED {e}", file=sys.stderr)
            report.failures.append(e)
            continue
        state = f"executed in {result.seconds:.0f} s" if result.executed_now else "up to date"
        print(f"{nb.stem}: {state}", file=sys.stderr)
        report.results.append(result)
    return report


def gather_claims(results: list[RunResult]) -> list[dict]:
    """Claim records of every executed notebook (the last record per id wins)."""
    records: list[dict] = []
    for r in results:
        latest: dict[str, dict] = {}
        for line in r.claims.read_text(encoding="utf-8").splitlines():
            if line.strip():
                rec = json.loads(line)
                rec["notebook"] = r.notebook.stem
                latest[rec["claim_id"]] = rec
        records.extend(latest.values())
    return records


def claims_table(records: list[dict]) -> str:
    if not records:
        return "*No notebook has recorded a claim yet.*"
    counts = {v: sum(r["verdict"] == v for r in records) for v in VERDICTS}
    summary = ", ".join(f"{n} {v}" for v, n in counts.items())
    lines = [f"**{len(records)} claims tested:** {summary}.", "",
             "| claim | notebook | verdict | numbers |", "|---|---|---|---|"]
    for r in records:
        nums = ", ".join(f"{k} = {format_value(v)}" for k, v in r.get("numbers", {}).items())
        text = r["claim"].replace("|", "\\|")
        lines.append(f"| **{r['claim_id']}** {text} | {{doc}}`{r['notebook']}` | "
                     f"{r['verdict']} | {nums.replace('|', '/')} |")
    return "\n".join(lines)


def mathjax_dir() -> Path:
    """MathJax 3 (es5 bundle) shipped by the `django-static-mathjax` wheel, for offline math."""
    try:
        files = md.files("django-static-mathjax") or []
    except md.PackageNotFoundError:
        raise BuildFailed("package django-static-mathjax is missing (requirements-nodeps.txt); "
                          "it provides MathJax for reading the book offline") from None
    entry = next(f for f in files if str(f).endswith("es5/tex-mml-chtml.js"))
    return Path(entry.locate()).parent


def stage(project: Project, profile: str, results: list[RunResult], records: list[dict]) -> Path:
    """Assemble the tree Jupyter Book renders: config, pages, executed notebooks."""
    site = project.build_dir / f"site-{profile}"
    if site.exists():
        shutil.rmtree(site)
    site.mkdir(parents=True)
    for name in ("_config.yml", "_toc.yml"):
        shutil.copy(project.root / name, site / name)
    shutil.copytree(project.root / "book", site / "book",
                    ignore=shutil.ignore_patterns("*.ipynb", ".ipynb_checkpoints", "_build"))
    for r in results:
        shutil.copy(r.executed, site / r.notebook.relative_to(project.root))
    claims_page = site / "book" / "claims.md"
    if claims_page.exists():
        text = claims_page.read_text(encoding="utf-8")
        claims_page.write_text(text.replace(CLAIMS_MARKER, claims_table(records)),
                               encoding="utf-8")
    shutil.copytree(mathjax_dir(), site / "_offline" / "mathjax")
    return site


def build_html(site: Path, dest: Path) -> Path:
    """Run Jupyter Book on the staging tree with warnings as errors; move HTML to `dest`."""
    jb = Path(sys.executable).parent / "jupyter-book"
    cmd = [str(jb) if jb.exists() else "jupyter-book", "build", str(site), "--builder", "html",
           "-W", "-n", "--keep-going"]
    proc = subprocess.run(cmd, capture_output=True, text=True)
    if proc.returncode != 0:
        tail = "\n".join((proc.stdout + proc.stderr).splitlines()[-40:])
        raise BuildFailed(f"jupyter-book build failed (exit {proc.returncode}):\n{tail}")
    if dest.exists():
        shutil.rmtree(dest)
    shutil.move(str(site / "_build" / "html"), dest)
    return dest / "index.html"


def build(project: Project, profile: str = "cpu", force: bool = False) -> BuildReport:
    """Execute what is stale, then build the HTML and `claims.json` for `profile`."""
    report = execute_stale(project, profile, force)
    if report.failures:
        names = ", ".join(f.notebook for f in report.failures)
        raise BuildFailed(f"{len(report.failures)} notebook(s) failed: {names}; the executed "
                          f"copies that succeeded are kept in {project.executed_dir(profile)}")
    report.claims = gather_claims(report.results)
    out = project.output_dir(profile)
    out.mkdir(parents=True, exist_ok=True)
    (out / "claims.json").write_text(json.dumps(report.claims, indent=1), encoding="utf-8")
    site = stage(project, profile, report.results, report.claims)
    report.html = build_html(site, out / "html")
    return report
