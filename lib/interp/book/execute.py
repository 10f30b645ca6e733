"""Execute one notebook with a parameter profile into an executed copy (papermill).

The source notebook is never modified. The executed copy carries a hash of everything
that determines it (notebook, parameter values, profile, library source); a rerun with
the same hash executes nothing. A failing notebook is saved under `failed/` for
inspection, and the last good executed copy is kept.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import time
from dataclasses import dataclass
from pathlib import Path

from interp.book import params as P
from interp.book.project import Project
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
    import interp

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


def _provenance_cells(values: dict, profile: str, root: Path) -> list[dict]:
    code = ("import json\nfrom interp.book import provenance\n"
            f"_provenance = provenance.show(parameters=json.loads({json.dumps(values)!r}), "
            f"profile={profile!r}, root={str(root)!r})")
    import nbformat

    code_cell = nbformat.v4.new_code_cell(code)
    code_cell.metadata["tags"] = list(PROVENANCE_TAGS)
    return [nbformat.v4.new_markdown_cell("## Provenance"), code_cell]


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
    source.cells += _provenance_cells(values, profile, project.root)
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

    out = json.loads(staged_out.read_text(encoding="utf-8"))
    out["metadata"]["interp"] = {"exec_hash": digest, "profile": profile, "parameters": values,
                                 "seconds": round(seconds, 1)}
    staged_out.write_text(json.dumps(out, indent=1), encoding="utf-8")
    os.replace(staged_out, executed)
    os.replace(staged_claims, claims)
    (out_dir / "failed" / notebook.name).unlink(missing_ok=True)
    return RunResult(notebook, executed, claims, True, seconds)
