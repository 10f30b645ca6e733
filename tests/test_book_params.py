"""Parameter validation of the book's notebooks: non-finite floats, float spellings YAML 1.1
reads as text, list elements (type, bounds, choices), and every real profile against its
notebook. Everything here runs in well under a second per test (no notebook is executed).
"""

from __future__ import annotations

import dataclasses
import json
import math
import re
from pathlib import Path

import pytest

from interp.book import params as P
from interp.book.__main__ import main
from interp.book.project import Project

ROOT = Path(__file__).resolve().parents[1]
FIXTURE = Path(__file__).parent / "fixtures" / "book"
PROFILE_FILES = sorted((ROOT / "params").glob("*/*.yaml"))

# Element constraints of the real notebooks' list parameters, as the `{items: ...}` to end
# each parameter's comment with in book/<notebook>.ipynb. Layers: the steering page's model
# is fixed (SmolLM2-135M, 30 layers), so its bound is static.
DECLARED_ITEMS = {
    "ghost_grads": {"l1_coeffs": {"gt": 0.0}, "seeds": {"min": 0},
                    "resample_at": {"gt": 0.0, "lt": 1.0}},
    "recipe": {"l1_values": {"gt": 0.0}, "seeds": {"min": 0},
               "width_check_expansions": {"min": 1}, "stacking_windows": {"min": 1}},
    "ito": {"l1_coeffs": {"gt": 0.0}, "test_ks": {"min": 1}, "ce_ks": {"min": 1},
            "fixed_steps": {"gt": 0.0}, "max_topks": {"min": 1}, "tiny_thresholds": {"gt": 0.0}},
    "steering": {"candidate_layers": {"min": 0, "max": 29}, "coeffs": {"gt": 0.0}},
    "toy_models": {"tms_feature_probabilities": {"gt": 0.0, "max": 1.0},
                   "sae_architectures": {"choices": ["relu", "gated", "topk"]},
                   "sae_l1_coeffs": {"gt": 0.0}, "sae_topk_k": {"min": 1},
                   "tracr_programs": {"choices": ["frac_prevs", "sort", "hist", "reverse"]},
                   "tracr_width_fractions": {"gt": 0.0, "max": 1.0},
                   "tracr_sae_l1_coeffs": {"gt": 0.0}},
    "autointerp": {"llm_baselines": {"choices": ["random", "other_latent"]},
                   "l0_sweep_l1_coeffs": {"gt": 0.0}},
}


def _check(source: str, **values):
    return P.validate(P.parse_parameters(source), values, "test")


def _refused(source: str, pattern: str, **values) -> str:
    with pytest.raises(P.ParamError, match=pattern) as e:
        _check(source, **values)
    return str(e.value)


# --- NaN and infinities ----------------------------------------------------------------------

@pytest.mark.parametrize("value", [math.nan, "nan", ".nan", "NaN"])
def test_nan_is_refused_even_for_an_unbounded_float(value):
    _refused("rate = 0.5\n", r"'rate'.*must be a number, got nan", rate=value)


@pytest.mark.parametrize("decl", ["{min: 0.0}", "{max: 1.0}", "{min: 0.0, max: 1.0}"])
def test_nan_is_refused_for_a_bounded_float(decl):
    _refused(f"lr = 0.1  # rate {decl}\n", r"'lr'.*got nan", lr=math.nan)


@pytest.mark.parametrize("decl,value", [("{min: 0.0}", math.inf), ("{min: 0.0}", "inf"),
                                        ("{max: 1.0}", -math.inf), ("{max: 1.0}", "-Infinity"),
                                        ("{min: 0}", ".inf")])
def test_inf_is_refused_where_a_bound_is_declared(decl, value):
    msg = _refused(f"lr = 0.1  # rate {decl}\n", r"'lr'.*must be finite", lr=value)
    assert "inf" in msg


def test_inf_is_accepted_for_an_unbounded_float_and_nan_where_declared():
    assert _check("rate = 0.5\n", rate="inf") == {"rate": math.inf}
    out = _check("rate = 0.5  # may be missing {allow_nan: true}\n", rate=math.nan)
    assert math.isnan(out["rate"])


# --- float spellings YAML 1.1 reads as text -----------------------------------------------

@pytest.mark.parametrize("text", ["1e-3", "1E5", ".5", "-2.5e-4", "+1e3", "3.", "2e+2"])
def test_set_reads_every_float_spelling_as_a_float(text):
    values = P.parse_overrides([f"l1_coeff={text}"])
    out = P.validate(P.parse_parameters("l1_coeff = 0.004\n"), values, "--set")
    assert isinstance(out["l1_coeff"], float)
    assert out["l1_coeff"] == pytest.approx(float(text))


@pytest.mark.parametrize("text", ["1_000", "0x10", "1e", "e3", "1e-3x", " 1e-3", "1.2.3", "many"])
def test_text_that_is_not_a_float_is_still_refused(text):
    _refused("l1_coeff = 0.004\n", r"'l1_coeff'.*expects type float", l1_coeff=text)


def test_float_text_stays_text_for_a_str_parameter():
    assert _check('label = "x"\n', label="1e-3") == {"label": "1e-3"}


def test_profile_file_with_yaml11_float_spellings(tmp_path):
    nb_source = "l1_coeff = 0.004  # {min: 0.0}\nl1_coeffs = [0.01, 0.1]  # {items: {gt: 0.0}}\n"
    (tmp_path / "cpu.yaml").write_text("l1_coeff: 1e-3\nl1_coeffs: [1e-3, 2E-2, .5]\n")
    out = P.validate(P.parse_parameters(nb_source), P.load_profile(tmp_path, "cpu"), "cpu.yaml")
    assert out["l1_coeff"] == pytest.approx(1e-3)
    assert out["l1_coeffs"] == pytest.approx([1e-3, 2e-2, 0.5])
    assert all(isinstance(v, float) for v in out["l1_coeffs"])


# --- list elements -------------------------------------------------------------------------

def test_list_elements_must_have_the_default_elements_type():
    msg = _refused("seeds = [0, 1]\n", r"'seeds'.*element \[0\] expects type int", seeds=["a", "b"])
    assert "'a'" in msg
    _refused("seeds = [0, 1]\n", r"element \[1\] expects type int, got float 1.5", seeds=[0, 1.5])
    _refused('names = ["a"]\n', r"element \[0\] expects type str", names=[3])


def test_float_list_elements_accept_ints_and_float_text_and_refuse_nan():
    out = _check("coeffs = [1.0, 2.0]\n", coeffs=[1, "1e-3", 2.5])
    assert out["coeffs"] == pytest.approx([1.0, 1e-3, 2.5])
    assert all(isinstance(v, float) for v in out["coeffs"])
    _refused("coeffs = [1.0, 2.0]\n", r"'coeffs'.*element \[1\] must be a number, got nan",
             coeffs=[1.0, "nan"])


@pytest.mark.parametrize("decl,values,pattern", [
    ("{items: {gt: 0.0}}", [-1, 0], r"element \[0\] must be > 0.0, got -1.0"),
    ("{items: {gt: 0.0}}", [0.1, 0], r"element \[1\] must be > 0.0, got 0.0"),
    ("{items: {min: 0.0}}", [0.1, "inf"], r"element \[1\] must be finite"),
    ("{items: {min: 0, max: 1}}", [0.5, 2], r"element \[1\] must be <= 1, got 2.0"),
    ("{items: {lt: 1.0}}", [1.0], r"element \[0\] must be < 1.0, got 1.0"),
])
def test_list_element_bounds(decl, values, pattern):
    _refused(f"l1_coeffs = [0.01, 0.1]  # sweep {decl}\n", r"'l1_coeffs'.*" + pattern,
             l1_coeffs=values)


def test_list_element_choices_and_layer_bound_name_key_index_value_and_what_is_allowed():
    msg = _refused('programs = ["sort"]  # {items: {choices: ["sort", "hist"]}}\n',
                   r"'programs'.*element \[1\] must be one of \['sort', 'hist'\], got 'nosuch'",
                   programs=["sort", "nosuch"])
    assert "(from test)" in msg
    _refused("layers = [3, 6]  # {items: {min: 0, max: 29}}\n",
             r"'layers'.*element \[0\] must be <= 29, got 99", layers=[99])


def test_list_parameters_accept_tuples_as_lists_and_keep_valid_values():
    src = "layers = [3, 6]  # layers {items: {min: 0, max: 29}}\n"
    assert _check(src, layers=(0, 29)) == {"layers": [0, 29]}
    assert P.parse_parameters(src)["layers"].doc == "layers"


def test_items_declarations_are_checked_when_the_cell_is_read():
    with pytest.raises(P.ParamError, match=r"'xs.items'.*unknown constraint.*maximum"):
        P.parse_parameters("xs = [1]  # {items: {maximum: 3}}\n")
    with pytest.raises(P.ParamError, match=r"'n'.*`items` constraints need a list"):
        P.parse_parameters("n = 1  # {items: {min: 0}}\n")


def test_a_default_outside_its_own_declaration_is_reported(tmp_path):
    nb = _notebook(tmp_path, "layers = [3, 40]  # {items: {max: 29}}\n")
    (tmp_path / "params").mkdir()
    (tmp_path / "params" / "cpu.yaml").write_text("{}\n")
    with pytest.raises(P.ParamError, match=r"parameters cell of nb.ipynb.*element \[1\].*<= 29"):
        P.resolve(nb, tmp_path / "params", "cpu")


def _notebook(folder: Path, source: str) -> Path:
    import nbformat

    cell = nbformat.v4.new_code_cell(source)
    cell.metadata["tags"] = ["parameters"]
    path = folder / "nb.ipynb"
    nbformat.write(nbformat.v4.new_notebook(cells=[cell]), path)
    return path


# --- CLI: exit status 2, nothing executed ----------------------------------------------------

@pytest.mark.parametrize("override,pattern", [
    ("sizes=[a, b]", r"'sizes'.*element \[0\] expects type int, got str 'a'"),
    ("scale=nan", r"'scale'.*got nan"),
    ("scale=.nan", r"'scale'.*got nan"),
])
def test_cli_refuses_bad_values_with_status_2_before_any_compute(tmp_path, capsys, override,
                                                                 pattern):
    import shutil

    root = tmp_path / "book"
    shutil.copytree(FIXTURE, root, ignore=shutil.ignore_patterns("_build", "make_fixtures.py"))
    assert main(["--root", str(root), "run", "good", "--set", override]) == 2
    assert re.search(pattern, capsys.readouterr().err)
    assert not (root / "_build" / "executed").exists()


def test_cli_overrides_in_yaml11_float_spellings_resolve_to_floats():
    project = Project(FIXTURE)
    nb = project.notebook("good")
    values = P.resolve(nb, project.params_dir(nb), "cpu", ["scale=1e-3", "sizes=[1, 2, 3]"])
    assert values["scale"] == pytest.approx(1e-3) and isinstance(values["scale"], float)
    assert values["sizes"] == [1, 2, 3]


# --- the real book -------------------------------------------------------------------------

@pytest.mark.parametrize("profile_file", PROFILE_FILES,
                         ids=[f"{p.parent.name}/{p.stem}" for p in PROFILE_FILES])
def test_every_profile_validates_against_its_notebook(profile_file):
    notebook = ROOT / "book" / f"{profile_file.parent.name}.ipynb"
    assert notebook.exists(), f"{profile_file} has no notebook {notebook}"
    assert profile_file.stem in P.PROFILES, f"{profile_file}: not one of {P.PROFILES}"
    values = P.resolve(notebook, profile_file.parent, profile_file.stem)
    assert values.keys() == P.notebook_parameters(notebook).keys()


def _with_declared_items(notebook: str) -> dict[str, P.Param]:
    """The notebook's parameters, with DECLARED_ITEMS added where the cell lacks them."""
    params = P.notebook_parameters(ROOT / "book" / f"{notebook}.ipynb")
    for name, items in DECLARED_ITEMS.get(notebook, {}).items():
        p = params[name]
        if "items" not in p.constraints:
            params[name] = dataclasses.replace(p, constraints={**p.constraints, "items": items})
    return params


@pytest.mark.parametrize("profile_file", PROFILE_FILES,
                         ids=[f"{p.parent.name}/{p.stem}" for p in PROFILE_FILES])
def test_declared_element_constraints_hold_for_defaults_and_profiles(profile_file):
    params = _with_declared_items(profile_file.parent.name)
    P.validate(params, {k: p.default for k, p in params.items()}, "defaults")
    P.validate(params, P.load_profile(profile_file.parent, profile_file.stem), profile_file.name)


@pytest.mark.parametrize("notebook,key,value,pattern", [
    ("ghost_grads", "seeds", "[a, b]", r"'seeds'.*element \[0\] expects type int, got str 'a'"),
    ("recipe", "seeds", "[-1]", r"'seeds'.*element \[0\] must be >= 0, got -1"),
    ("steering", "candidate_layers", "[99]", r"'candidate_layers'.*element \[0\] must be <= 29, got 99"),
    ("toy_models", "tracr_programs", "[nosuch]", r"'tracr_programs'.*element \[0\] must be one of"),
    ("ghost_grads", "l1_coeffs", "[-1, 0]", r"'l1_coeffs'.*element \[0\] must be > 0.0, got -1"),
    ("ito", "l1_coeffs", "[1e-3, 0]", r"'l1_coeffs'.*element \[1\] must be > 0.0, got 0.0"),
    ("autointerp", "llm_baselines", "[other]", r"'llm_baselines'.*element \[0\] must be one of"),
    ("reference_sae", "l1_coeff", "inf", r"'l1_coeff'.*must be finite"),
    ("ghost_grads", "ghost_all_fraction", "nan", r"'ghost_all_fraction'.*got nan"),
])
def test_reviewers_bad_values_are_refused_for_the_real_notebooks(notebook, key, value, pattern):
    values = P.parse_overrides([f"{key}={value}"])
    with pytest.raises(P.ParamError, match=pattern):
        P.validate(_with_declared_items(notebook), values, "--set")


def test_declared_choices_match_the_library():
    from interp.sae.config import ARCHITECTURES
    from interp.toy.tracr_models import PROGRAMS

    toy = DECLARED_ITEMS["toy_models"]
    assert sorted(toy["tracr_programs"]["choices"]) == sorted(PROGRAMS)
    assert sorted(toy["sae_architectures"]["choices"]) == sorted(ARCHITECTURES)


def test_notebooks_declare_their_list_element_constraints():
    """Fails until each notebook's parameters cell carries the `{items: ...}` above."""
    missing = []
    for notebook, declared in DECLARED_ITEMS.items():
        params = P.notebook_parameters(ROOT / "book" / f"{notebook}.ipynb")
        missing += [f"book/{notebook}.ipynb: end the comment of `{name}` with "
                    f"{{items: {_flow(items)}}}"
                    for name, items in declared.items()
                    if params[name].constraints.get("items") != items]
    assert not missing, "\n".join(missing)


def _flow(constraints: dict) -> str:
    """A constraint mapping as it is written in a parameters cell: {min: 0, max: 29}."""
    return "{" + ", ".join(f"{k}: {json.dumps(v)}" for k, v in constraints.items()) + "}"


def test_a_comment_with_an_equals_sign_is_refused_before_papermill_drops_it():
    with pytest.raises(P.ParamError, match="'margin'.*contains '='.*reword"):
        P.parse_parameters("margin = 0.02  # the post calls beta1 = 0 slight {gt: 0.0}\n")
