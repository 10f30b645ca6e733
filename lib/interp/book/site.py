"""Build the HTML book from executed notebooks, with the generated Claims page.

Jupyter Book executes nothing here (`execute_notebooks: off`): the runner has already
executed each page with its profile, so a staging tree is assembled from the config,
the markdown pages and the executed copies, and Jupyter Book 1.x renders it with
warnings as errors. MathJax is served from a local copy so the book reads offline.
The built pages are then checked for Markdown tables left as literal `| a | b |` text,
which Sphinx does not warn about. The build says which notebook it is running and ends
with each page's wall time.
"""

from __future__ import annotations

import importlib.metadata as md
import json
import re
import shutil
import subprocess
import sys
import time
from dataclasses import dataclass, field
from html.parser import HTMLParser
from pathlib import Path

import yaml

from interp.book.execute import NotebookFailed, RunResult, run_notebook
from interp.book.project import Project
from interp import cache, headlines
from interp.claims import SOURCES, VERDICTS, effect_summary, format_value

CLAIMS_MARKER = "<!-- claims-table -->"
HEADLINES_MARKER = "<!-- headlines-table -->"
SOURCE_TITLES = {
    "post": "Claims of the post's own summary",
    "replicated": "Claims of Anthropic's updates and earlier papers that the post replicates",
    "exploratory": "The book's own follow-up questions",
}
# Notebook outputs displayed as Markdown are parsed with the book's own MyST parser (the
# myst-nb default, CommonMark, has no tables and leaves every results table as pipe text).
RENDER_DEFAULTS = {"nb_render_markdown_format": "myst"}


class BuildFailed(RuntimeError):
    """Some notebooks failed or the HTML build reported warnings."""


@dataclass(frozen=True)
class PageTiming:
    page: str
    status: str  # "executed", "cached" or "FAILED"
    seconds: float  # wall time in this build
    executed_seconds: float | None = None  # the recorded run time of a cached page
    sae_training: float | None = None  # seconds of SAE training it recorded (executed pages)


@dataclass
class BuildReport:
    results: list[RunResult] = field(default_factory=list)
    failures: list[NotebookFailed] = field(default_factory=list)
    html: Path | None = None
    claims: list[dict] = field(default_factory=list)
    timings: list[PageTiming] = field(default_factory=list)

    @property
    def executed(self) -> list[str]:
        return [r.notebook.stem for r in self.results if r.executed_now]


def sae_training_seconds(since: float) -> float:
    """Seconds of SAE training that `lm_sae.train_cached` recorded (each run's `done.json` in
    the cache's "sae-runs") since the time `since`: how much of a page's wall time went into
    training SAEs (what the sparse kernels of issue #16 speed up). Unreadable records count 0."""
    total = 0.0
    for done in (cache.cache_root() / "sae-runs").glob("*/done.json"):
        try:
            if done.stat().st_mtime >= since:
                total += float(cache.read_checked_json(done)["seconds"])
        except (OSError, ValueError, KeyError, TypeError, cache.CorruptCacheError):
            continue
    return total


def _recorded_seconds(executed: Path) -> float | None:
    try:
        return json.loads(executed.read_text(encoding="utf-8"))["metadata"]["interp"]["seconds"]
    except (FileNotFoundError, KeyError, json.JSONDecodeError):
        return None


def execute_stale(project: Project, profile: str, force: bool = False) -> BuildReport:
    """Execute every notebook of the book whose executed copy is missing or stale.

    Says which notebook starts before it runs: a cold build spends minutes on one page.
    """
    report = BuildReport()
    notebooks = project.notebooks()
    for i, nb in enumerate(notebooks, 1):
        print(f"[{i}/{len(notebooks)}] {nb.stem} (profile {profile}) ...", file=sys.stderr,
              flush=True)
        start = time.time()
        try:
            result = run_notebook(project, nb.stem, profile, force=force)
        except NotebookFailed as e:
            print(f"FAILED {e}", file=sys.stderr, flush=True)
            report.failures.append(e)
            report.timings.append(PageTiming(nb.stem, "FAILED", time.time() - start))
            continue
        seconds = time.time() - start
        if result.executed_now:
            report.timings.append(PageTiming(nb.stem, "executed", seconds,
                                             sae_training=sae_training_seconds(start)))
            state = f"executed in {seconds:.0f} s"
        else:
            recorded = _recorded_seconds(result.executed)
            report.timings.append(PageTiming(nb.stem, "cached", seconds, recorded))
            state = "up to date, reused from cache"
        print(f"{nb.stem}: {state}", file=sys.stderr, flush=True)
        report.results.append(result)
    return report


def timing_table(timings: list[PageTiming]) -> str:
    """Each page's wall time in this build, whether it ran or came from cache, and the total."""
    width = max([len(t.page) for t in timings] + [len("total")])
    lines = [f"{'page':<{width}}  {'status':<8}  {'wall s':>8}  {'SAE train s':>11}  note"]
    for t in timings:
        note = (f"executed in {t.executed_seconds:.0f} s when cached"
                if t.executed_seconds is not None else "")
        train = "" if t.sae_training is None else f"{t.sae_training:.1f}"
        lines.append(f"{t.page:<{width}}  {t.status:<8}  {t.seconds:>8.1f}  {train:>11}  "
                     f"{note}".rstrip())
    total = sum(t.seconds for t in timings)
    train_total = sum(t.sae_training or 0.0 for t in timings)
    lines.append(f"{'total':<{width}}  {'':<8}  {total:>8.1f}  {train_total:>11.1f}")
    return "\n".join(lines)


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
    unsourced = [f"{r['notebook']}:{r['claim_id']}" for r in records
                 if not r.get("source") or not r.get("rule")]
    if unsourced:
        raise BuildFailed(f"claims without a source or a rule: {', '.join(unsourced)}; record "
                          f"them with interp.claims.judge / inconclusive / not_tested")
    return records


def _cell(text: object) -> str:
    return str(text).replace("|", "\\|").replace("\n", " ")


def headlines_table(records: list[dict]) -> str:
    """The post's seven headline claims, each combined from its decisive sub-claims."""
    lines = ["| snippet | the post says | decided by | verdict |", "|---|---|---|---|"]
    for h in headlines.judge_all(records):
        parts = ", ".join(f"{cid}: {v or 'not recorded'}" for cid, v in h["decisive"].items())
        lines.append(f"| {{doc}}`{h['snippet']} <{h['page']}>` | \"{_cell(h['quote'])}\" | "
                     f"{_cell(parts)} | **{h['verdict']}** |")
    return "\n".join(lines)


def claims_table(records: list[dict]) -> str:
    """Every claim, grouped by where it comes from, with the effect and rule that decided it."""
    if not records:
        return "*No notebook has recorded a claim yet.*"
    counts = {v: sum(r["verdict"] == v for r in records) for v in VERDICTS}
    summary = ", ".join(f"{n} {v}" for v, n in counts.items())
    lines = [f"**{len(records)} claims:** {summary}.", ""]
    groups = [(s, SOURCE_TITLES[s]) for s in SOURCES] + [("", "Claims without a stated source")]
    for source, title in groups:
        rows = [r for r in records if r.get("source", "") == source]
        if not rows:
            continue
        lines += [f"**{title}**", "",
                  "| claim | page | verdict | effect [95% CI], n, MDE | rule | numbers |",
                  "|---|---|---|---|---|---|"]
        for r in rows:
            nums = ", ".join(f"{k} = {format_value(v)}" for k, v in r.get("numbers", {}).items())
            if r.get("reason"):
                nums = f"{r['reason']}; {nums}" if nums else r["reason"]
            lines.append(f"| **{r['claim_id']}** {_cell(r['claim'])} | {{doc}}`{r['notebook']}` "
                         f"| {r['verdict']} | {_cell(effect_summary(r.get('effect')))} | "
                         f"{r.get('rule') or '?'} | {_cell(nums)} |")
        lines.append("")
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
    shutil.copy(project.root / "_toc.yml", site / "_toc.yml")
    write_staged_config(project.root / "_config.yml", site / "_config.yml")
    shutil.copytree(project.root / "book", site / "book",
                    ignore=shutil.ignore_patterns("*.ipynb", ".ipynb_checkpoints", "_build"))
    for r in results:
        shutil.copy(r.executed, site / r.notebook.relative_to(project.root))
    claims_page = site / "book" / "claims.md"
    if claims_page.exists():
        text = claims_page.read_text(encoding="utf-8")
        text = text.replace(HEADLINES_MARKER, headlines_table(records))
        claims_page.write_text(text.replace(CLAIMS_MARKER, claims_table(records)),
                               encoding="utf-8")
    shutil.copytree(mathjax_dir(), site / "_offline" / "mathjax")
    return site


def write_staged_config(source: Path, dest: Path) -> None:
    """The book's `_config.yml` with the render settings every page needs filled in."""
    config = yaml.safe_load(source.read_text(encoding="utf-8")) or {}
    sphinx_config = config.setdefault("sphinx", {}).setdefault("config", {})
    for key, value in RENDER_DEFAULTS.items():
        sphinx_config.setdefault(key, value)
    dest.write_text(yaml.safe_dump(config, sort_keys=False), encoding="utf-8")


# --- a check on the built HTML --------------------------------------------------------------

PIPE_ROW = re.compile(r"^\s*\|.*\|\s*$")


class _RenderedText(HTMLParser):
    """The text a reader sees as prose: outside tables, code, scripts and styles."""

    SKIPPED = {"table", "pre", "code", "script", "style", "textarea", "head"}
    BLOCKS = {"p", "div", "br", "li", "tr", "section", "h1", "h2", "h3", "h4", "h5", "h6",
              "blockquote", "dd", "dt"}

    def __init__(self):
        super().__init__(convert_charrefs=True)
        self.skipping = 0
        self.parts: list[str] = []

    def handle_starttag(self, tag, attrs):
        if tag in self.SKIPPED:
            self.skipping += 1
        elif tag in self.BLOCKS:
            self.parts.append("\n")

    def handle_endtag(self, tag):
        if tag in self.SKIPPED:
            self.skipping = max(0, self.skipping - 1)
        elif tag in self.BLOCKS:
            self.parts.append("\n")

    def handle_data(self, data):
        if not self.skipping:
            self.parts.append(data)


def literal_pipe_rows(html: str) -> list[str]:
    """Lines of rendered prose that look like a Markdown table row (`| a | b |`)."""
    parser = _RenderedText()
    parser.feed(html)
    parser.close()
    return [line.strip() for line in "".join(parser.parts).splitlines() if PIPE_ROW.match(line)]


def unrendered_tables(html_dir: Path) -> dict[str, list[str]]:
    """Pages of a built book holding Markdown table text that did not render as a table."""
    found = {}
    for page in sorted(Path(html_dir).rglob("*.html")):
        rel = page.relative_to(html_dir)
        if rel.parts[0] in ("_static", "_sources"):
            continue
        rows = literal_pipe_rows(page.read_text(encoding="utf-8", errors="replace"))
        if rows:
            found[str(rel)] = rows
    return found


def check_tables_rendered(html_dir: Path) -> None:
    found = unrendered_tables(html_dir)
    if found:
        pages = "; ".join(f"{page} ({len(rows)} line(s), first: {rows[0]!r})"
                          for page, rows in found.items())
        raise BuildFailed(f"Markdown tables left as literal pipe text in the built HTML "
                          f"({html_dir}): {pages}. Display tables with interp.display.show_table "
                          "and keep nb_render_markdown_format: myst in _config.yml")


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
    try:
        if report.failures:
            names = ", ".join(f.notebook for f in report.failures)
            raise BuildFailed(f"{len(report.failures)} notebook(s) failed: {names}; the executed "
                              f"copies that succeeded are kept in {project.executed_dir(profile)}")
        report.claims = gather_claims(report.results)
        out = project.output_dir(profile)
        out.mkdir(parents=True, exist_ok=True)
        (out / "claims.json").write_text(json.dumps(report.claims, indent=1), encoding="utf-8")
        (out / "headlines.json").write_text(
            json.dumps(headlines.judge_all(report.claims), indent=1), encoding="utf-8")
        print("building the HTML ...", file=sys.stderr, flush=True)
        start = time.time()
        site = stage(project, profile, report.results, report.claims)
        report.html = build_html(site, out / "html")
        report.timings.append(PageTiming("(HTML build)", "built", time.time() - start))
        check_tables_rendered(out / "html")
    finally:
        print(timing_table(report.timings), file=sys.stderr, flush=True)
    return report
