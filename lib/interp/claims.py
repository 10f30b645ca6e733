"""Claims of the post, each with a verdict computed from a notebook's measurements.

A notebook calls `record(...)` once per claim it tests. The verdict is an argument
computed by the notebook's code (never typed as a literal); helpers below turn numbers
into verdicts with explicit, documented rules. When the notebook is executed by
`python -m interp.book`, records are appended to the JSON-lines file named by the
environment variable `INTERP_CLAIMS_FILE`, which the book build gathers into the
Claims page and `_build/claims.json`.
"""

from __future__ import annotations

import json
import math
import numbers
import os
from dataclasses import asdict, dataclass, field
from typing import Any

VERDICTS = ("reproduced", "not reproduced", "inconclusive")
CLAIMS_FILE_ENV = "INTERP_CLAIMS_FILE"


@dataclass(frozen=True)
class Claim:
    claim_id: str
    claim: str
    verdict: str
    numbers: dict[str, Any] = field(default_factory=dict)
    notebook: str = ""

    def __post_init__(self):
        if self.verdict not in VERDICTS:
            raise ValueError(f"verdict must be one of {VERDICTS}, got {self.verdict!r}")
        if not self.claim_id or not isinstance(self.claim_id, str):
            raise ValueError("claim_id must be a non-empty string such as 'G-1'")


_recorded: list[Claim] = []


def _jsonable(value: Any) -> Any:
    """Numbers from numpy/jax become plain floats so the record is portable."""
    if isinstance(value, dict):
        return {str(k): _jsonable(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_jsonable(v) for v in value]
    if isinstance(value, (str, bool)) or value is None:
        return value
    if isinstance(value, numbers.Integral):
        return int(value)
    try:
        f = float(value)
    except (TypeError, ValueError):
        return str(value)
    return f if math.isfinite(f) else str(f)


def record(claim_id: str, claim: str, verdict: str, numbers: dict[str, Any] | None = None,
           notebook: str | None = None) -> Claim:
    """Record one claim's verdict; returns the record (also kept for `table()`)."""
    c = Claim(claim_id, claim, verdict, _jsonable(numbers or {}),
              notebook or os.environ.get("INTERP_NOTEBOOK", ""))
    _recorded[:] = [r for r in _recorded if r.claim_id != claim_id] + [c]
    path = os.environ.get(CLAIMS_FILE_ENV)
    if path:
        with open(path, "a", encoding="utf-8") as f:
            f.write(json.dumps(asdict(c)) + "\n")
    return c


def recorded() -> list[Claim]:
    return list(_recorded)


def verdict_from_comparison(effect: float, spread: float, expected_sign: int = 1) -> str:
    """Verdict for a claim that 'A beats B', given effect = A - B and a noise level.

    The rule: an effect whose magnitude does not exceed `spread` (e.g. the standard
    deviation over seeds, or a bootstrap half-width) is inconclusive; otherwise the
    claim is reproduced when the effect has the expected sign and not reproduced when
    it has the opposite sign.
    """
    if not (math.isfinite(effect) and math.isfinite(spread)):
        return "inconclusive"
    if abs(effect) <= abs(spread):
        return "inconclusive"
    return "reproduced" if effect * expected_sign > 0 else "not reproduced"


def verdict_from_threshold(value: float, threshold: float, higher_is_reproduced: bool = True,
                           margin: float = 0.0) -> str:
    """Verdict for a claim 'value is above (or below) threshold', with a grey zone of +-margin."""
    if not math.isfinite(value):
        return "inconclusive"
    delta = value - threshold if higher_is_reproduced else threshold - value
    if abs(delta) <= margin:
        return "inconclusive"
    return "reproduced" if delta > 0 else "not reproduced"


def table(claims: list[Claim] | None = None) -> str:
    """A Markdown table of claims, for display in a notebook."""
    rows = claims if claims is not None else _recorded
    lines = ["| id | claim | verdict | numbers |", "|---|---|---|---|"]
    for c in rows:
        nums = ", ".join(f"{k} = {format_value(v)}" for k, v in c.numbers.items())
        lines.append(f"| {c.claim_id} | {c.claim} | **{c.verdict}** | {nums} |")
    return "\n".join(lines)


def show(claims: list[Claim] | None = None):
    """Display the claims table in a notebook (IPython Markdown)."""
    from IPython.display import Markdown, display

    display(Markdown(table(claims)))


def format_value(v: Any) -> str:
    """Compact text for a number or a nested structure of numbers (4 significant digits)."""
    if isinstance(v, float):
        return f"{v:.4g}"
    if isinstance(v, dict):
        return "{" + ", ".join(f"{k}: {format_value(x)}" for k, x in v.items()) + "}"
    if isinstance(v, (list, tuple)):
        return "[" + ", ".join(format_value(x) for x in v) + "]"
    return str(v)
