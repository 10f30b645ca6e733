"""Notebook parameters: read the `parameters` cell, validate profiles and overrides.

Jupyter Book has no parametrized pages, so the book's contract is papermill's: each
notebook has one code cell tagged `parameters` holding simple assignments
`name = literal  # what it is {min: 0, max: 29}`. The literal's type is the parameter's
type (a list's element type is its default elements' type); an optional `{...}` at the end of
the comment declares constraints: `min`, `max` (inclusive), `gt`, `lt` (strict), `choices`,
`allow_nan` (NaN is refused unless true; infinities wherever a bound is set) and, for lists,
`items: {...}` with the same keys for every element: `seeds = [0, 1]  # {items: {min: 0}}`.
Float parameters also accept text in a float spelling (`1e-3`, `.5`, `+1E5`, `inf`), which
YAML 1.1 leaves as a string. Everything is checked before any compute, so a typo costs a
second, not a run.
"""

from __future__ import annotations

import ast
import json
import math
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

PROFILES = ("smoke", "cpu", "gpu")
ITEM_CONSTRAINT_KEYS = ("min", "max", "gt", "lt", "choices", "allow_nan")
BOUND_KEYS = ("min", "max", "gt", "lt")
CONSTRAINT_KEYS = (*ITEM_CONSTRAINT_KEYS, "items")
# What Python's float() reads, minus its leniencies (spaces, underscores): YAML 1.1 leaves
# `1e-3`, `1E5`, `+1e3`, `inf` and `nan` as strings, so float parameters accept them here.
_FLOAT_TEXT = re.compile(r"[+-]?(?:(?:\d+\.?\d*|\.\d+)(?:[eE][+-]?\d+)?|\.?inf(?:inity)?|\.?nan)",
                         re.IGNORECASE)
_TYPE_NAMES = {bool: "bool", int: "int", float: "float", str: "str", list: "list", dict: "dict",
               type(None): "none"}


class ParamError(ValueError):
    """A parameter problem found before execution (the CLI exits with status 2)."""


@dataclass(frozen=True)
class Param:
    name: str
    type_name: str
    default: Any
    doc: str = ""
    constraints: dict = field(default_factory=dict)
    item_type: str | None = None  # lists: the type every element must have (None: any)

    def describe(self) -> str:
        extra = f" {self.constraints}" if self.constraints else ""
        return f"{self.name}: {self.type_name} = {self.default!r}{extra}"


def parameters_cell_source(notebook: dict) -> str:
    cells = [c for c in notebook.get("cells", [])
             if c.get("cell_type") == "code" and "parameters" in c.get("metadata", {}).get("tags", [])]
    if len(cells) != 1:
        raise ParamError(f"expected exactly one code cell tagged 'parameters', found {len(cells)}")
    src = cells[0]["source"]
    return "".join(src) if isinstance(src, list) else src


def read_notebook(path: Path) -> dict:
    try:
        return json.loads(Path(path).read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise ParamError(f"notebook not found: {path}") from None
    except json.JSONDecodeError as e:
        raise ParamError(f"notebook {path} is not valid JSON: {e}") from None


def parse_parameters(source: str) -> dict[str, Param]:
    """Parameters declared by a `parameters` cell, in order of appearance."""
    tree = ast.parse(source)
    lines = source.splitlines()
    params: dict[str, Param] = {}
    for node in tree.body:
        if not (isinstance(node, ast.Assign) and len(node.targets) == 1
                and isinstance(node.targets[0], ast.Name)):
            raise ParamError(f"parameters cell line {node.lineno}: only `name = literal` "
                             "assignments are allowed")
        name = node.targets[0].id
        try:
            value = ast.literal_eval(node.value)
        except ValueError:
            raise ParamError(f"parameter {name!r}: default must be a literal") from None
        comment = _comment(lines[node.end_lineno - 1])
        if "=" in comment:
            # papermill reads a parameter line with a second '=' as unparseable, warns and
            # leaves it out of the parameters it knows; say so before any compute instead.
            raise ParamError(f"parameter {name!r}: its comment contains '=' ({comment!r}), "
                             f"which papermill cannot parse; reword it")
        doc, constraints = _split_constraints(name, comment)
        type_name = _TYPE_NAMES.get(type(value), type(value).__name__)
        if "items" in constraints and type_name != "list":
            raise ParamError(f"parameter {name!r}: `items` constraints need a list default, "
                             f"got {type_name}")
        params[name] = Param(name, type_name, value, doc, constraints,
                             _element_type(value) if type_name == "list" else None)
    return params


def _element_type(default: list) -> str | None:
    """The elements' common type (ints and floats mix as float); None when empty or mixed."""
    names = {_TYPE_NAMES.get(type(v), type(v).__name__) for v in default}
    if names == {"int", "float"}:
        return "float"
    return names.pop() if len(names) == 1 else None


def _comment(line: str) -> str:
    """The trailing `# ...` of a line, ignoring '#' inside string literals."""
    in_str: str | None = None
    for i, ch in enumerate(line):
        if in_str:
            if ch == in_str:
                in_str = None
        elif ch in "'\"":
            in_str = ch
        elif ch == "#":
            return line[i + 1:].strip()
    return ""


def _split_constraints(name: str, comment: str) -> tuple[str, dict]:
    start = _trailing_braces_start(comment)
    if start is None:
        return comment, {}
    try:
        constraints = yaml.safe_load(comment[start:])
    except yaml.YAMLError as e:
        raise ParamError(f"parameter {name!r}: cannot read constraints {comment[start:]!r}: {e}")
    _check_constraint_keys(name, constraints, CONSTRAINT_KEYS)
    if "items" in constraints:
        _check_constraint_keys(f"{name}.items", constraints["items"], ITEM_CONSTRAINT_KEYS)
    return comment[:start].strip(), constraints


def _trailing_braces_start(comment: str) -> int | None:
    """Where the `{...}` that ends the comment opens (it may nest: `{items: {min: 0}}`)."""
    if not comment.endswith("}"):
        return None
    depth = 0
    for i in range(len(comment) - 1, -1, -1):
        depth += {"}": 1, "{": -1}.get(comment[i], 0)
        if depth == 0:
            return i
    return None


def _check_constraint_keys(name: str, constraints: Any, allowed: tuple[str, ...]) -> None:
    if not isinstance(constraints, dict):
        raise ParamError(f"parameter {name!r}: constraints must be a mapping such as "
                         f"{{min: 0}}, got {constraints!r}")
    unknown = set(constraints) - set(allowed)
    if unknown:
        raise ParamError(f"parameter {name!r}: unknown constraint(s) {sorted(unknown)}; "
                         f"allowed: {list(allowed)}")


def notebook_parameters(path: Path) -> dict[str, Param]:
    return parse_parameters(parameters_cell_source(read_notebook(path)))


def load_profile(params_dir: Path, profile: str) -> dict[str, Any]:
    path = Path(params_dir) / f"{profile}.yaml"
    if not path.exists():
        have = sorted(p.stem for p in Path(params_dir).glob("*.yaml")) if Path(params_dir).is_dir() else []
        raise ParamError(f"profile file not found: {path} (profiles present: {have or 'none'})")
    try:
        data = yaml.safe_load(path.read_text(encoding="utf-8")) or {}
    except yaml.YAMLError as e:
        raise ParamError(f"profile {path} is not valid YAML: {e}") from None
    if not isinstance(data, dict):
        raise ParamError(f"profile {path} must be a mapping of parameter names to values")
    return data


def parse_overrides(pairs: list[str]) -> dict[str, Any]:
    """`--set key=value` pairs; values are read as YAML (so 3 is an int, 0.1 a float)."""
    out: dict[str, Any] = {}
    for pair in pairs:
        if "=" not in pair:
            raise ParamError(f"--set expects key=value, got {pair!r}")
        key, raw = pair.split("=", 1)
        try:
            out[key.strip()] = yaml.safe_load(raw)
        except yaml.YAMLError:
            out[key.strip()] = raw
    return out


def _type_ok(expected: str, value: Any) -> bool:
    if expected == "none":
        return True  # a None default means 'optional, any type'
    if expected == "bool":
        return isinstance(value, bool)
    if expected == "int":
        return isinstance(value, int) and not isinstance(value, bool)
    if expected == "float":
        return isinstance(value, (int, float)) and not isinstance(value, bool)
    if expected == "list":
        return isinstance(value, (list, tuple))
    return _TYPE_NAMES.get(type(value)) == expected


def _coerce(expected: str, value: Any) -> Any:
    """Floats from ints or float text (`1e-3`), lists from tuples; anything else unchanged."""
    if expected == "float" and isinstance(value, str) and _FLOAT_TEXT.fullmatch(value):
        return float(re.sub(r"\.(?=[a-zA-Z])", "", value))  # YAML's `.inf` is Python's `inf`
    if expected == "list" and isinstance(value, tuple):
        return list(value)
    return value


def _check_value(what: str, expected: str | None, value: Any, c: dict) -> Any:
    """One value (a parameter or one list element) against its type and constraints."""
    if expected is not None:
        value = _coerce(expected, value)
        if not _type_ok(expected, value):
            raise ParamError(f"{what} expects type {expected}, "
                             f"got {type(value).__name__} {value!r}")
        if expected == "float":
            value = _to_float(what, value)
    if isinstance(value, float):
        _check_finite(what, value, c)
    if "choices" in c and value not in c["choices"]:
        raise ParamError(f"{what} must be one of {c['choices']}, got {value!r}")
    try:
        _check_bounds(what, value, c)
    except TypeError:  # an untyped value (None default, mixed list) against a numeric bound
        raise ParamError(f"{what} must be a number within "
                         f"{ {k: c[k] for k in BOUND_KEYS if k in c} }, got {value!r}") from None
    return value


def _check_bounds(what: str, value: Any, c: dict) -> None:
    if "min" in c and value < c["min"]:
        raise ParamError(f"{what} must be >= {c['min']}, got {value!r}")
    if "max" in c and value > c["max"]:
        raise ParamError(f"{what} must be <= {c['max']}, got {value!r}")
    if "gt" in c and not value > c["gt"]:
        raise ParamError(f"{what} must be > {c['gt']}, got {value!r}")
    if "lt" in c and not value < c["lt"]:
        raise ParamError(f"{what} must be < {c['lt']}, got {value!r}")


def _to_float(what: str, value: Any) -> float:
    try:
        return float(value)
    except OverflowError:
        raise ParamError(f"{what} expects a float, got {value!r} (too large)") from None


def _check_finite(what: str, value: float, c: dict) -> None:
    """NaN passes every comparison, so it is refused unless declared; inf where bounded."""
    if math.isnan(value) and not c.get("allow_nan", False):
        raise ParamError(f"{what} must be a number, got nan (declare {{allow_nan: true}} to "
                         "accept it)")
    if math.isinf(value) and any(k in c for k in BOUND_KEYS):
        bounds = ", ".join(f"{k} {c[k]}" for k in BOUND_KEYS if k in c)
        raise ParamError(f"{what} must be finite ({bounds}), got {value!r}")


def _check_elements(what: str, p: Param, values: list) -> list:
    item_constraints = p.constraints.get("items", {})
    return [_check_value(f"{what} element [{i}]", p.item_type, v, item_constraints)
            for i, v in enumerate(values)]


def validate(params: dict[str, Param], values: dict[str, Any], source: str) -> dict[str, Any]:
    """Check names, types and constraints, list elements too; return floats coerced."""
    valid = ", ".join(params)
    out: dict[str, Any] = {}
    for key, value in values.items():
        if key not in params:
            raise ParamError(f"unknown parameter {key!r} (from {source}); valid parameters: {valid}")
        p = params[key]
        what = f"parameter {key!r} (from {source})"
        constraints = {k: v for k, v in p.constraints.items() if k != "items"}
        value = _check_value(what, p.type_name, value, constraints)
        if p.type_name == "list":
            value = _check_elements(what, p, value)
        out[key] = value
    return out


def resolve(notebook: Path, params_dir: Path, profile: str, overrides: list[str] | None = None
            ) -> dict[str, Any]:
    """The full parameter values for a run: defaults, then the profile, then `--set`."""
    if profile not in PROFILES:
        raise ParamError(f"unknown profile {profile!r}; valid profiles: {', '.join(PROFILES)}")
    params = notebook_parameters(notebook)
    values = validate(params, {k: p.default for k, p in params.items()},
                      f"the parameters cell of {Path(notebook).name}")
    values |= validate(params, load_profile(params_dir, profile), f"profile {profile}.yaml")
    values |= validate(params, parse_overrides(overrides or []), "--set")
    return values
