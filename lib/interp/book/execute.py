"""Execute one notebook with a parameter profile into an executed copy (papermill).

The executed copy is tidied to read as a page: one parameters cell showing the values used,
progress bars in their final state (one output box each), no paths of the build machine.
The source notebook is never modified. The executed copy carries a hash of everything
that determines it (notebook, parameter values, profile, library source); a rerun with
the same hash executes nothing. A failing notebook is saved under `failed/` for
inspection, and the last good executed copy is kept.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import shutil
import sysconfig
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

import interp
from interp.book import params as P
from interp.book.project import Project
from interp.book.provenance import redact
from interp.cache import content_hash

PROVENANCE_TAGS = ["remove-input", "provenance"]


class NotebookFailed(RuntimeError):
    """A cell raised during execution; names the notebook and the failing cell."""

    def __init__(self, notebook: str, cell: str, error: str, saved: Path):
        self.notebook, self.cell, self.error, self.saved = notebook, cell, error, saved
        super().__init__(f"notebook {notebook} failed at cell {cell}: {error} "
                         f"(executed copy saved for inspection: {saved})")


@dataclass(frozen=True)
class RunResult:
    notebook: Path
    executed: Path
    claims: Path
    executed_now: bool
    seconds: float


def library_hash() -> str:
    """Hash of the `interp` package source, so library changes make pages stale."""
    pkg = Path(interp.__file__).parent
    h = hashlib.sha256()
    for path in sorted(pkg.rglob("*.py")):
        h.update(str(path.relative_to(pkg)).encode())
        h.update(path.read_bytes())
    return h.hexdigest()[:16]


def execution_hash(notebook: Path, values: dict, profile: str) -> str:
    nb_digest = hashlib.sha256(notebook.read_bytes()).hexdigest()
    return content_hash(nb_digest, values, profile, library_hash())


def executed_hash(path: Path) -> str | None:
    try:
        return json.loads(path.read_text(encoding="utf-8"))["metadata"]["interp"]["exec_hash"]
    except (FileNotFoundError, KeyError, json.JSONDecodeError):
        return None


def _provenance_cells(values: dict, profile: str, root: Path, cwd: Path) -> list[dict]:
    # The root is given relative to the kernel's cwd: the executed notebook (downloadable
    # from the book) then names no path of the build machine.
    relative_root = os.path.relpath(root, cwd)
    shown = json.dumps(redact(values))
    code = ("import json\nfrom interp.book import provenance\n"
            f"_provenance = provenance.show(parameters=json.loads({shown!r}), "
            f"profile={profile!r}, root={relative_root!r})")
    import nbformat

    code_cell = nbformat.v4.new_code_cell(code)
    code_cell.metadata["tags"] = list(PROVENANCE_TAGS)
    return [nbformat.v4.new_markdown_cell("## Provenance"), code_cell]


# --- tidying an executed notebook for reading -----------------------------------------------

def apply_carriage_returns(text: str) -> str:
    """What a terminal shows: each '\r' returns to the line start and later text overwrites.

    Progress bars refresh a line hundreds of times; the page keeps its final state only.
    """
    lines = []
    for raw in text.split("\n"):
        line = ""
        for segment in raw.split("\r"):
            line = segment + line[len(segment):]
        lines.append(line)
    return "\n".join(lines)


def shorten_machine_paths(text: str, root: Path) -> str:
    """Paths of the build machine (venv, repository, kernel temp files, home) as short names.

    Warnings name the file that raised them; on a page that file reads as
    `tqdm/auto.py:21`, not as an absolute path into one machine's virtualenv.
    """
    text = re.sub(r"(?:/[^\s:'\"<>/]+)+/(?:site|dist)-packages/", "", text)
    text = re.sub(re.escape(tempfile.gettempdir()) + r"/ipykernel_\d+/\d+\.py", "<cell>", text)
    stdlib = sysconfig.get_paths()["stdlib"] + os.sep
    for prefix, short in ((str(Path(root).resolve()) + os.sep, ""), (stdlib, ""),
                          (str(Path.home()), "~")):
        text = text.replace(prefix, short)
    return text


def _text(output: dict) -> str:
    text = output.get("text", "")
    return "".join(text) if isinstance(text, list) else text


def tidy_outputs(outputs: list[dict], root: Path) -> list[dict]:
    """One box per run of same-name stream outputs, in its final (carriage-returned) state."""
    merged: list[dict] = []
    for out in outputs:
        out = dict(out)
        prev = merged[-1] if merged else None
        if (out.get("output_type") == "stream" and prev is not None
                and prev.get("output_type") == "stream" and prev.get("name") == out.get("name")):
            prev["text"] = _text(prev) + _text(out)
        else:
            merged.append(out)
    tidy = []
    for out in merged:
        if out.get("output_type") == "stream":
            out["text"] = shorten_machine_paths(apply_carriage_returns(_text(out)), root)
            if not out["text"].strip():
                continue
        tidy.append(out)
    return tidy


def _tags(cell: dict) -> list[str]:
    return cell.get("metadata", {}).get("tags", [])


def _source(cell: dict) -> str:
    src = cell.get("source", "")
    return "".join(src) if isinstance(src, list) else src


def parameters_source(defaults: dict, values: dict, profile: str) -> str:
    """The parameters a page ran with, each marked with the notebook's default if it differs."""
    lines = [f"# Parameters of this run (profile {profile}); "
             "a changed value names the notebook's default"]
    for name, value in values.items():
        param = defaults.get(name)
        notes = []  # a changed value's default comes first: long docs are cut off on the page
        if param is None:
            notes.append("not in the notebook's parameters cell")
        elif param.default != value or type(param.default) is not type(value):
            notes.append(f"notebook default: {redact({name: param.default})[name]!r}")
        if param is not None and param.doc:
            notes.append(param.doc)
        comment = f"  # {'; '.join(notes)}" if notes else ""
        lines.append(f"{name} = {redact({name: value})[name]!r}{comment}")
    return "\n".join(lines) + "\n"


def merge_parameter_cells(cells: list[dict], values: dict, profile: str) -> list[dict]:
    """Replace the `parameters` cell and papermill's `injected-parameters` cell by one view."""
    defaults_at = next((i for i, c in enumerate(cells) if "parameters" in _tags(c)), None)
    injected_at = next((i for i, c in enumerate(cells) if "injected-parameters" in _tags(c)),
                       None)
    if defaults_at is None and injected_at is None:
        return cells
    keep_at = defaults_at if defaults_at is not None else injected_at
    defaults = (P.parse_parameters(_source(cells[defaults_at])) if defaults_at is not None
                else {})
    merged = dict(cells[keep_at])
    merged["source"] = parameters_source(defaults, values, profile)
    if injected_at is not None:
        merged["execution_count"] = cells[injected_at].get("execution_count")
        merged["outputs"] = [*cells[keep_at].get("outputs", []),
                             *cells[injected_at].get("outputs", [])]
    return [merged if i == keep_at else c for i, c in enumerate(cells)
            if i == keep_at or i != injected_at]


def tidy_executed(nb: dict, values: dict, profile: str, root: Path) -> dict:
    """The executed notebook as a page: one parameters view, tidy streams, no machine paths."""
    nb["cells"] = merge_parameter_cells(nb["cells"], values, profile)
    for cell in nb["cells"]:
        if cell.get("cell_type") == "code":
            cell["outputs"] = tidy_outputs(cell.get("outputs", []), root)
    pm_meta = nb.get("metadata", {}).get("papermill")
    if pm_meta:
        for key in ("input_path", "output_path"):
            if pm_meta.get(key):
                pm_meta[key] = Path(pm_meta[key]).name
        if isinstance(pm_meta.get("parameters"), dict):
            pm_meta["parameters"] = redact(pm_meta["parameters"])
        pm_meta.pop("environment_variables", None)
    return nb


def run_notebook(project: Project, name: str, profile: str = "cpu",
                 overrides: list[str] | None = None, force: bool = False,
                 progress: bool = True) -> RunResult:
    """Validate parameters, then execute `name` unless its executed copy is up to date."""
    import papermill as pm
    from papermill.exceptions import PapermillExecutionError

    notebook = project.notebook(name)
    values = P.resolve(notebook, project.params_dir(notebook), profile, overrides)
    out_dir = project.executed_dir(profile)
    out_dir.mkdir(parents=True, exist_ok=True)
    executed = out_dir / notebook.name
    claims = out_dir / f"{notebook.stem}.claims.jsonl"
    digest = execution_hash(notebook, values, profile)
    if not force and executed_hash(executed) == digest and claims.exists():
        return RunResult(notebook, executed, claims, False, 0.0)

    import nbformat

    source = nbformat.read(notebook, as_version=4)
    source = nbformat.from_dict(nbformat.validator.normalize(source)[1])  # adds missing cell ids
    source.cells += _provenance_cells(values, profile, project.root, notebook.parent)
    staged_in = out_dir / f".{notebook.stem}.input.ipynb"
    staged_out = out_dir / f".{notebook.stem}.output.ipynb"
    staged_claims = out_dir / f".{notebook.stem}.claims.jsonl"
    nbformat.write(source, staged_in)
    staged_claims.write_text("", encoding="utf-8")

    env_backup = {k: os.environ.get(k) for k in ("INTERP_CLAIMS_FILE", "INTERP_NOTEBOOK",
                                                 "INTERP_PROFILE")}
    os.environ.update(INTERP_CLAIMS_FILE=str(staged_claims), INTERP_NOTEBOOK=notebook.stem,
                      INTERP_PROFILE=profile)
    start = time.time()
    try:
        pm.execute_notebook(str(staged_in), str(staged_out), parameters=values,
                            cwd=str(notebook.parent), kernel_name="python3",
                            progress_bar=progress, log_output=False)
    except PapermillExecutionError as e:
        failed = out_dir / "failed" / notebook.name
        failed.parent.mkdir(exist_ok=True)
        shutil.move(staged_out, failed)
        first_line = (e.source or "").strip().splitlines()[:1]
        where = f"{e.cell_index} (execution count {e.exec_count}: {first_line[0] if first_line else ''!r})"
        raise NotebookFailed(notebook.stem, where, f"{e.ename}: {e.evalue}", failed) from None
    finally:
        for k, v in env_backup.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v
        staged_in.unlink(missing_ok=True)
    seconds = time.time() - start

    out = tidy_executed(json.loads(staged_out.read_text(encoding="utf-8")), values, profile,
                        project.root)
    out["metadata"]["interp"] = {"exec_hash": digest, "profile": profile,
                                 "parameters": redact(values), "seconds": round(seconds, 1)}
    staged_out.write_text(json.dumps(out, indent=1), encoding="utf-8")
    os.replace(staged_out, executed)
    os.replace(staged_claims, claims)
    (out_dir / "failed" / notebook.name).unlink(missing_ok=True)
    return RunResult(notebook, executed, claims, True, seconds)
