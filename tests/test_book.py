"""The book CLI: parameter validation, execution, staleness, failure handling, HTML build.

Runs against the small fixture book in tests/fixtures/book (two notebooks: `good`, which
records a claim, and `fails`, which raises when its `should_fail` parameter is true).
"""

from __future__ import annotations

import json
import re
import shutil
import subprocess
import sys
import time
from pathlib import Path

import pytest

from interp.book import params as P
from interp.book.__main__ import main
from interp.book.execute import (apply_carriage_returns, merge_parameter_cells,
                                 shorten_machine_paths, tidy_outputs)
from interp.book.execute import library_hash as real_library_hash
from interp.book.site import (BuildFailed, PageTiming, check_tables_rendered, timing_table,
                              unrendered_tables)

FIXTURE = Path(__file__).parent / "fixtures" / "book"


@pytest.fixture
def book(tmp_path, monkeypatch) -> Path:
    # Pin the library hash so edits elsewhere in lib/ during a test run cannot make pages
    # stale mid-test; test_library_change_makes_pages_stale covers the real hash.
    monkeypatch.setattr("interp.book.execute.library_hash", lambda: "pinned")
    root = tmp_path / "book"
    shutil.copytree(FIXTURE, root, ignore=shutil.ignore_patterns("_build", "make_fixtures.py"))
    return root


def cli(root: Path, *args: str) -> int:
    return main(["--root", str(root), *args])


# --- parameters ---------------------------------------------------------------------------

def test_parameters_cell_types_docs_and_constraints():
    src = ('steps = 3  # how many {min: 1, max: 100}\n'
           'label = "a # b"  # text with a hash\n'
           'rate = 0.5\n'
           'flag = True  # on/off\n'
           'sizes = [1, 2]\n')
    params = P.parse_parameters(src)
    assert [p.type_name for p in params.values()] == ["int", "str", "float", "bool", "list"]
    assert params["steps"].constraints == {"min": 1, "max": 100}
    assert params["steps"].doc == "how many"
    assert params["label"].default == "a # b" and params["label"].doc == "text with a hash"


def test_parameters_cell_rejects_code_and_unknown_constraints():
    with pytest.raises(P.ParamError, match="only `name = literal`"):
        P.parse_parameters("import os\n")
    with pytest.raises(P.ParamError, match="unknown constraint"):
        P.parse_parameters("x = 1  # doc {maximum: 3}\n")


@pytest.mark.parametrize("value,ok", [(3, True), (3.0, False), (True, False), ("3", False)])
def test_int_parameters_accept_only_ints(value, ok):
    params = P.parse_parameters("n = 1\n")
    if ok:
        assert P.validate(params, {"n": value}, "test") == {"n": value}
    else:
        with pytest.raises(P.ParamError, match="'n'.*expects type int"):
            P.validate(params, {"n": value}, "test")


def test_float_parameter_accepts_int_and_coerces():
    params = P.parse_parameters("lr = 0.1\n")
    out = P.validate(params, {"lr": 1}, "test")
    assert out == {"lr": 1.0} and isinstance(out["lr"], float)


def test_overrides_are_read_as_yaml():
    assert P.parse_overrides(["a=3", "b=0.5", "c=hello", "d=[1, 2]", "e=true"]) == {
        "a": 3, "b": 0.5, "c": "hello", "d": [1, 2], "e": True}
    with pytest.raises(P.ParamError, match="key=value"):
        P.parse_overrides(["novalue"])


# --- CLI validation (exit 2 before any compute) --------------------------------------------

def test_unknown_parameter_exits_2_naming_it_and_the_valid_names(book, capsys):
    assert cli(book, "run", "good", "--profile", "cpu", "--set", "no_such_param=1") == 2
    err = capsys.readouterr().err
    assert "no_such_param" in err
    assert "steps, scale, label, verbose, sizes" in err
    assert not (book / "_build" / "executed" / "cpu" / "good.ipynb").exists()


def test_text_for_int_exits_2_naming_parameter_and_type(book, capsys):
    assert cli(book, "run", "good", "--profile", "cpu", "--set", "steps=many") == 2
    err = capsys.readouterr().err
    assert "'steps'" in err and "int" in err


def test_unknown_key_in_profile_file_exits_2(book, capsys):
    (book / "params" / "good" / "smoke.yaml").write_text("steps: 2\nstepz: 3\n")
    assert cli(book, "run", "good", "--profile", "smoke") == 2
    err = capsys.readouterr().err
    assert "'stepz'" in err and "smoke.yaml" in err


@pytest.mark.parametrize("args,needle", [
    (["run", "good", "--profile", "gpu"], "profile file not found"),
    (["run", "good", "--profile", "huge"], "unknown profile 'huge'"),
    (["run", "nope", "--profile", "cpu"], "unknown notebook 'nope'"),
    (["run", "good", "--set", "steps=1000"], "'steps'.*<= 100"),
    (["run", "good", "--set", "label=c"], "'label'.*one of"),
])
def test_bad_input_exits_2_with_a_clear_message(book, capsys, args, needle):
    assert cli(book, *args) == 2
    assert re.search(needle, capsys.readouterr().err)


def test_list_shows_parameters_types_defaults_and_profiles(book, capsys):
    assert cli(book, "list") == 0
    out = capsys.readouterr().out
    assert "book/good.ipynb  (profiles: cpu, smoke)" in out
    assert "steps: int = 3 {'min': 1, 'max': 100}  # how many terms to sum" in out
    assert "should_fail: bool = False" in out


# --- execution, staleness, failure ---------------------------------------------------------

def _outputs_text(nb: dict) -> str:
    texts = []
    for cell in nb["cells"]:
        for out in cell.get("outputs", []):
            texts.append("".join(out.get("text", "")))
            for value in out.get("data", {}).values():
                texts.append("".join(value) if isinstance(value, list) else str(value))
    return "\n".join(texts)


def test_run_executes_a_copy_with_parameters_claims_and_provenance(book, capsys):
    source = (book / "book" / "good.ipynb").read_bytes()
    assert cli(book, "run", "good", "--profile", "cpu", "--set", "steps=4") == 0
    assert (book / "book" / "good.ipynb").read_bytes() == source  # source untouched
    executed = json.loads((book / "_build/executed/cpu/good.ipynb").read_text())
    text = _outputs_text(executed)
    assert "total 2.5" in text  # cpu.yaml scale 0.25 x (1+2+3+4) from --set steps=4
    assert "Provenance" in json.dumps(executed["cells"][-2])
    assert "parameter hash" in text and "git revision" in text and "wall time" in text
    assert executed["metadata"]["interp"]["parameters"]["steps"] == 4
    # no path of the build machine anywhere in the page's notebook (it is downloadable)
    raw = (book / "_build/executed/cpu/good.ipynb").read_text()
    assert str(book) not in raw and str(book.resolve()) not in raw
    # one parameters view: the values used, each change naming the notebook's default
    tagged = [c for c in executed["cells"] if {"parameters", "injected-parameters"}
              & set(c["metadata"].get("tags", []))]
    assert len(tagged) == 1
    assert "".join(tagged[0]["source"]).splitlines() == [
        "# Parameters of this run (profile cpu); a changed value names the notebook's default",
        "steps = 4  # notebook default: 3; how many terms to sum",
        "scale = 0.25  # notebook default: 0.5; multiplies the sum",
        "label = 'a # not a comment'  # a text parameter",
        "verbose = False  # print more",
        "sizes = [1, 2]  # a list parameter"]
    records = [json.loads(x) for x in (book / "_build/executed/cpu/good.claims.jsonl")
               .read_text().splitlines()]
    (rec,) = records
    assert {k: rec[k] for k in ("claim_id", "verdict", "numbers", "notebook", "source",
                                "rule")} == {
        "claim_id": "FX-1", "verdict": "reproduced", "numbers": {"total": 2.5},
        "notebook": "good", "source": "exploratory", "rule": "threshold"}
    assert rec["effect"]["n"] == 4 and rec["effect"]["threshold"] == 0.1  # what decided it

    capsys.readouterr()
    assert cli(book, "run", "good", "--profile", "cpu", "--set", "steps=4") == 0
    assert "up to date" in capsys.readouterr().out
    assert cli(book, "run", "good", "--profile", "cpu", "--set", "steps=5") == 0
    assert "executed in" in capsys.readouterr().out


def test_library_change_makes_pages_stale(book, capsys, monkeypatch):
    assert re.fullmatch(r"[0-9a-f]{16}", real_library_hash())
    assert cli(book, "run", "fails", "--profile", "smoke") == 0
    assert cli(book, "run", "fails", "--profile", "smoke") == 0
    assert "up to date" in capsys.readouterr().out
    monkeypatch.setattr("interp.book.execute.library_hash", lambda: "changed")
    assert cli(book, "run", "fails", "--profile", "smoke") == 0
    assert "executed in" in capsys.readouterr().out


def test_failure_exits_1_naming_notebook_and_cell_and_keeps_good_copies(book, capsys):
    assert cli(book, "run", "fails", "--profile", "smoke") == 0
    good_copy = (book / "_build/executed/smoke/fails.ipynb").read_bytes()
    assert cli(book, "run", "fails", "--profile", "smoke", "--set", "should_fail=true") == 1
    err = capsys.readouterr().err
    assert "notebook fails failed at cell" in err and "if should_fail:" in err
    assert "ValueError: deliberate failure" in err
    assert (book / "_build/executed/smoke/failed/fails.ipynb").exists()
    assert (book / "_build/executed/smoke/fails.ipynb").read_bytes() == good_copy


def test_build_renders_html_offline_and_second_build_executes_nothing(book, capsys, monkeypatch):
    assert cli(book, "build", "--profile", "smoke") == 0
    captured = capsys.readouterr()
    out, err = captured.out, captured.err
    assert "executed 2 notebook(s): good, fails" in out
    # says which notebook runs before it runs, then each page's time and the total
    assert "[1/2] good (profile smoke) ..." in err and "[2/2] fails (profile smoke) ..." in err
    assert re.search(r"^good +executed +\d+\.\d", err, re.M)
    assert re.search(r"^total +\d+\.\d", err, re.M)
    html = book / "_build" / "smoke" / "html"
    assert (html / "index.html").exists()
    good = (html / "book" / "good.html").read_text()
    assert "total 1.5" in good and "Provenance" in good
    # the claims table and the provenance table are HTML tables, not pipe text
    assert good.count("<table") == 2 and unrendered_tables(html) == {}
    scripts = re.findall(r'<script[^>]*src="([^"]+)"', good)
    assert scripts and not [s for s in scripts if s.startswith(("http:", "https:", "//"))]
    assert any("mathjax/tex-mml-chtml.js" in s for s in scripts)
    assert (html / "_static" / "mathjax" / "tex-mml-chtml.js").exists()
    claims_page = (html / "book" / "claims.html").read_text()
    assert "FX-1" in claims_page and "reproduced" in claims_page
    claims = json.loads((book / "_build" / "smoke" / "claims.json").read_text())
    assert [(c["notebook"], c["claim_id"], c["verdict"]) for c in claims] == [
        ("good", "FX-1", "inconclusive")]  # smoke sums 2 terms: < 3 items is inconclusive

    assert cli(book, "build", "--profile", "smoke") == 0
    captured = capsys.readouterr()
    assert "executed 0 notebook(s): none" in captured.out
    assert re.search(r"^good +cached +\d+\.\d +executed in \d+ s when cached", captured.err,
                     re.M)

    # A table that does not render fails the build, naming the page and the line.
    monkeypatch.setattr("interp.book.site.RENDER_DEFAULTS",
                        {"nb_render_markdown_format": "commonmark"})
    assert cli(book, "build", "--profile", "smoke") == 1
    err = capsys.readouterr().err
    assert "literal pipe text" in err and "book/good.html" in err
    assert "first: '| | |'" in err or "first: '| id | claim | verdict | numbers |'" in err


def test_build_fails_when_a_notebook_fails_and_keeps_the_others(book, capsys):
    assert cli(book, "build", "--profile", "cpu") == 1  # fails/cpu.yaml sets should_fail
    err = capsys.readouterr().err
    assert "1 notebook(s) failed: fails" in err
    assert (book / "_build/executed/cpu/good.ipynb").exists()
    assert (book / "_build/executed/cpu/failed/fails.ipynb").exists()


def test_module_entry_point_runs():
    proc = subprocess.run([sys.executable, "-m", "interp.book", "--help"], capture_output=True,
                          text=True, timeout=60)
    assert proc.returncode == 0 and "build" in proc.stdout


def test_real_book_notebooks_have_all_three_profiles_and_valid_parameters():
    """Every notebook of the real book validates with smoke, cpu and gpu before CI runs it."""
    from interp.book.project import Project

    project = Project(Path(__file__).resolve().parents[1])
    for nb in project.notebooks():
        for profile in P.PROFILES:
            P.resolve(nb, project.params_dir(nb), profile)


def test_real_book_notebooks_are_valid_committed_sources():
    """nbformat 4.5 needs a unique id per cell (papermill and Jupyter Book warn, and will fail,
    without one), and sources are committed without outputs."""
    import nbformat

    from interp.book.project import Project

    project = Project(Path(__file__).resolve().parents[1])
    for path in project.notebooks():
        nb = nbformat.read(path, as_version=nbformat.NO_CONVERT)
        ids = [c.get("id") for c in nb.cells]
        assert all(ids) and len(set(ids)) == len(ids), (path.name, ids)
        nbformat.validate(nb)
        assert not any(c.get("outputs") for c in nb.cells if c.cell_type == "code"), path.name


def test_provenance_redacts_secret_names_only():
    from interp.book.provenance import redact

    out = redact({"api_key": "sk-123", "auth_token": "t", "max_new_tokens": 5, "n_tokens": 9,
                  "openai_key": "k", "monkey": 1})
    assert out == {"api_key": "<redacted>", "auth_token": "<redacted>", "max_new_tokens": 5,
                   "n_tokens": 9, "openai_key": "<redacted>", "monkey": 1}


# --- the rendered pages ---------------------------------------------------------------------

GOOD_PAGE = """<html><head><title>| not | shown |</title></head><body>
<p>Prose with a | pipe inside.</p>
<table><tr><td>| a | b |</td></tr></table>
<pre>| a | b |
|---|---|</pre>
<p>See <code>| x |</code>.</p>
</body></html>"""
BAD_PAGE = """<html><body><h1>Results</h1>
<p>| a | b |
|---|---|
| 1 | 2 |</p></body></html>"""


def test_html_check_finds_pipe_table_text_outside_tables_and_code(tmp_path):
    (tmp_path / "book").mkdir()
    (tmp_path / "_static").mkdir()
    (tmp_path / "book" / "good.html").write_text(GOOD_PAGE)
    (tmp_path / "book" / "bad.html").write_text(BAD_PAGE)
    (tmp_path / "_static" / "theme.html").write_text(BAD_PAGE)  # theme files are not pages
    assert unrendered_tables(tmp_path) == {"book/bad.html": ["| a | b |", "|---|---|",
                                                             "| 1 | 2 |"]}
    with pytest.raises(BuildFailed, match=r"book/bad\.html \(3 line\(s\), first: '\| a \| b \|'\)"):
        check_tables_rendered(tmp_path)
    (tmp_path / "book" / "bad.html").unlink()
    check_tables_rendered(tmp_path)  # only good pages: passes


def test_carriage_returns_keep_each_lines_final_state():
    assert apply_carriage_returns("\rstep 1/3 slow\rstep 3/3\ndone\r\n") == (
        "step 3/3 slow\ndone\n")  # overwrite, as a terminal does (tqdm pads with spaces)
    assert apply_carriage_returns("\r 0%|   | 0/2\r50%|#  | 1/2\r100%|###| 2/2\n") == (
        "100%|###| 2/2\n")


def test_tidy_outputs_merges_progress_refreshes_into_one_box_without_machine_paths(tmp_path):
    venv = "/home/someone/proj/.venv/lib/python3.11/site-packages"
    outputs = [
        {"output_type": "stream", "name": "stderr",
         "text": f"{venv}/tqdm/auto.py:21: TqdmWarning: IProgress not found.\n"},
        {"output_type": "stream", "name": "stderr", "text": "\rtrain:   0%|     | 0/2"},
        {"output_type": "stream", "name": "stderr", "text": ["\rtrain:  50%|##   ", "| 1/2"]},
        {"output_type": "stream", "name": "stderr", "text": "\rtrain: 100%|#####| 2/2\n"},
        {"output_type": "stream", "name": "stdout", "text": "loss 0.5\n"},
        {"output_type": "display_data", "data": {"text/plain": "<Figure>"}, "metadata": {}},
        {"output_type": "stream", "name": "stdout", "text": f"saved {tmp_path}/out.npz\n"},
        {"output_type": "stream", "name": "stderr", "text": "\r   \r"},
    ]
    tidy = tidy_outputs(outputs, tmp_path)
    assert [(o["output_type"], o.get("name"), o.get("text")) for o in tidy] == [
        ("stream", "stderr", "tqdm/auto.py:21: TqdmWarning: IProgress not found.\n"
                             "train: 100%|#####| 2/2\n"),
        ("stream", "stdout", "loss 0.5\n"),
        ("display_data", None, None),
        ("stream", "stdout", "saved out.npz\n")]
    assert outputs[1]["text"] == "\rtrain:   0%|     | 0/2"  # the input is not modified


def test_machine_paths_in_warnings_become_short_names(tmp_path):
    import tempfile

    text = (f"{tempfile.gettempdir()}/ipykernel_123/456.py:3: UserWarning: careful\n"
            f"{Path.home()}/elsewhere/x.py:1: UserWarning: w\n")
    assert shorten_machine_paths(text, tmp_path) == (
        "<cell>:3: UserWarning: careful\n~/elsewhere/x.py:1: UserWarning: w\n")


def _code(source, tags=(), outputs=(), count=None):
    return {"cell_type": "code", "execution_count": count, "id": source[:8],
            "metadata": {"tags": list(tags)}, "outputs": list(outputs), "source": source}


def test_parameters_and_injected_cells_become_one_view_marking_changed_values():
    cells = [{"cell_type": "markdown", "id": "m", "metadata": {}, "source": "# Title"},
             _code("steps = 3  # how many {min: 1}\nlr = 0.1\napi_key = ''  # the secret\n",
                   ["parameters"], count=1),
             _code("# Parameters\nsteps = 5\nlr = 0.1\napi_key = 'sk-1'\n",
                   ["injected-parameters"], count=2),
             _code("print(steps)", count=3)]
    out = merge_parameter_cells(cells, {"steps": 5, "lr": 0.1, "api_key": "sk-1"}, "smoke")
    assert [c["id"] for c in out] == ["m", "steps = ", "print(st"]
    view = out[1]
    assert view["metadata"]["tags"] == ["parameters"] and view["execution_count"] == 2
    assert view["source"].splitlines() == [
        "# Parameters of this run (profile smoke); a changed value names the notebook's default",
        "steps = 5  # notebook default: 3; how many",
        "lr = 0.1",
        "api_key = '<redacted>'  # notebook default: '<redacted>'; the secret"]
    assert "sk-1" not in json.dumps(out)


def test_injected_cell_alone_becomes_the_view():
    cells = [_code("# Parameters\nn = 2\n", ["injected-parameters"]), _code("print(n)")]
    out = merge_parameter_cells(cells, {"n": 2}, "cpu")
    assert len(out) == 2 and out[0]["source"].splitlines()[1:] == [
        "n = 2  # not in the notebook's parameters cell"]


def test_timing_table_lists_pages_status_and_total():
    table = timing_table([PageTiming("ghost_grads", "executed", 61.04, sae_training=40.26),
                          PageTiming("ito", "cached", 0.21, 95.0)])
    assert table.splitlines() == [
        "page         status      wall s  SAE train s  note",
        "ghost_grads  executed      61.0         40.3",
        "ito          cached         0.2               executed in 95 s when cached",
        "total                      61.2         40.3"]


def test_sae_training_seconds_sums_the_runs_recorded_since_a_time(tmp_path, monkeypatch):
    import os

    from interp.book import site

    from interp import cache

    monkeypatch.setenv("INTERP_CACHE", str(tmp_path))
    runs = tmp_path / "sae-runs"
    for name, record, age in [("old", {"seconds": 100.0}, 3600), ("a", {"seconds": 2.5}, 0),
                              ("b", {"seconds": 4.0}, 0), ("bad", "{not json", 0),
                              ("none", {"other": 1}, 0)]:
        (runs / name).mkdir(parents=True)
        done = runs / name / "done.json"
        if isinstance(record, dict):  # what lm_sae.train_cached writes
            cache.write_checked_json(done, record)
        else:
            done.write_text(record)
        t = time.time() - age
        os.utime(done, (t, t))
    assert site.sae_training_seconds(time.time() - 60) == pytest.approx(6.5)
    assert site.sae_training_seconds(time.time() + 60) == 0.0


def test_gather_claims_refuses_a_claim_without_source_or_rule(tmp_path):
    """Every verdict on the Claims page says where its claim comes from and which rule decided
    it: a record made with the bare writer fails the build, naming the claim."""
    from types import SimpleNamespace

    from interp.book import site

    good = {"claim_id": "X-1", "claim": "c", "verdict": "inconclusive", "source": "post",
            "rule": "directional"}
    bare = {"claim_id": "X-2", "claim": "c", "verdict": "reproduced", "source": "", "rule": ""}
    path = tmp_path / "page.claims.jsonl"
    path.write_text(json.dumps(good) + "\n")
    result = SimpleNamespace(claims=path, notebook=tmp_path / "page.ipynb")
    assert [r["claim_id"] for r in site.gather_claims([result])] == ["X-1"]
    path.write_text(json.dumps(good) + "\n" + json.dumps(bare) + "\n")
    with pytest.raises(site.BuildFailed, match="without a source or a rule: page:X-2"):
        site.gather_claims([result])
