"""Notebook parameters: read the `parameters` cell, validate profiles and overrides.

Jupyter Book has no parametrized pages, so the book's contract is papermill's: each
notebook has one code cell tagged `parameters` holding simple assignments
`name = literal  # what it is {min: 0, max: 29}`. The literal's type is the parameter's
type; an optional `{...}` at the end of the comment declares constraints (`min`, `max`,
`choices`). Everything is checked before any compute, so a typo costs a second, not a run.
"""

from __future__ import annotations

import ast
import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

PROFILES = ("smoke", "cpu", "gpu")
CONSTRAINT_KEYS = ("min", "max", "choices")
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
        doc, constraints = _split_constraints(name, comment)
        params[name] = Param(name, _TYPE_NAMES.get(type(value), type(value).__name__), value, doc,
                             constraints)
    return params


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
    if not comment.endswith("}") or "{" not in comment:
        return comment, {}
    start = comment.rindex("{")
    try:
        constraints = yaml.safe_load(comment[start:])
    except yaml.YAMLError as e:
        raise ParamError(f"parameter {name!r}: cannot read constraints {comment[start:]!r}: {e}")
    unknown = set(constraints) - set(CONSTRAINT_KEYS)
    if unknown:
        raise ParamError(f"parameter {name!r}: unknown constraint(s) {sorted(unknown)}; "
                         f"allowed: {list(CONSTRAINT_KEYS)}")
    return comment[:start].strip(), constraints


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
    return _TYPE_NAMES.get(type(value)) == expected


def validate(params: dict[str, Param], values: dict[str, Any], source: str) -> dict[str, Any]:
    """Check names, types and constraints; return values with floats coerced."""
    valid = ", ".join(params)
    out: dict[str, Any] = {}
    for key, value in values.items():
        if key not in params:
            raise ParamError(f"unknown parameter {key!r} (from {source}); valid parameters: {valid}")
        p = params[key]
        if not _type_ok(p.type_name, value):
            raise ParamError(f"parameter {key!r} (from {source}) expects type {p.type_name}, "
                             f"got {type(value).__name__} {value!r}")
        if p.type_name == "float":
            value = float(value)
        c = p.constraints
        if "choices" in c and value not in c["choices"]:
            raise ParamError(f"parameter {key!r} (from {source}) must be one of {c['choices']}, "
                             f"got {value!r}")
        if "min" in c and value < c["min"]:
            raise ParamError(f"parameter {key!r} (from {source}) must be >= {c['min']}, got {value!r}")
        if "max" in c and value > c["max"]:
            raise ParamError(f"parameter {key!r} (from {source}) must be <= {c['max']}, got {value!r}")
        out[key] = value
    return out


def resolve(notebook: Path, params_dir: Path, profile: str, overrides: list[str] | None = None
            ) -> dict[str, Any]:
    """The full parameter values for a run: defaults, then the profile, then `--set`."""
    if profile not in PROFILES:
        raise ParamError(f"unknown profile {profile!r}; valid profiles: {', '.join(PROFILES)}")
    params = notebook_parameters(notebook)
    values = {k: p.default for k, p in params.items()}
    values |= validate(params, load_profile(params_dir, profile), f"profile {profile}.yaml")
    values |= validate(params, parse_overrides(overrides or []), "--set")
    return values
