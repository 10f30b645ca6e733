"""Claims of the post, each with a verdict computed from a notebook's measurements.

A notebook states each claim it tests once, with where the claim comes from and the rule that
decides it, and hands over the measurement as an `interp.stats.Effect`:

    gain = stats.Effect.paired(ghost_per_seed, resample_per_seed)
    claims.judge("G-2", "Ghost grads under-perform resampling", source="post",
                 rule="directional", effect=gain, expected_sign=-1)

`judge` computes the verdict with the named rule of `interp.stats` (never typed by hand) and
records the effect's mean, CI, n and minimal detectable effect next to it. `not_tested` records
a claim the page does not measure. When the notebook is executed by `python -m interp.book`,
records are appended to the JSON-lines file named by the environment variable
`INTERP_CLAIMS_FILE`, which the book build gathers into the Claims page and
`_build/claims.json`.

Sources: `post` (a claim of the post's own summary), `replicated` (a claim of Anthropic's
updates or earlier papers that the post replicates), `exploratory` (the book's own follow-up
questions). Identities that must hold by construction are tests, not claims.
"""

from __future__ import annotations

import inspect
import json
import math
import numbers
import os
from collections.abc import Mapping
from dataclasses import asdict, dataclass, field
from typing import Any

from interp import stats
from interp.stats import VERDICTS

CLAIMS_FILE_ENV = "INTERP_CLAIMS_FILE"
SOURCES = ("post", "replicated", "exploratory")
RULES = ("directional", "equivalence", "threshold", "all_parts")


@dataclass(frozen=True)
class Claim:
    claim_id: str
    claim: str
    verdict: str
    numbers: dict[str, Any] = field(default_factory=dict)
    notebook: str = ""
    source: str = ""
    rule: str = ""
    effect: dict[str, Any] | None = None
    reason: str = ""

    def __post_init__(self):
        if self.verdict not in VERDICTS:
            raise ValueError(f"verdict must be one of {VERDICTS}, got {self.verdict!r}")
        if not self.claim_id or not isinstance(self.claim_id, str):
            raise ValueError("claim_id must be a non-empty string such as 'G-1'")
        if self.source and self.source not in SOURCES:
            raise ValueError(f"claim {self.claim_id}: source must be one of {SOURCES}, "
                             f"got {self.source!r}")


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
           notebook: str | None = None, *, source: str = "", rule: str = "",
           effect: Mapping[str, Any] | None = None, reason: str = "") -> Claim:
    """Record one claim's verdict; returns the record (also kept for `table()`).

    Prefer `judge` (which computes the verdict from an Effect with a named rule) and
    `not_tested`; `record` is the low-level writer they share."""
    c = Claim(claim_id, claim, verdict, _jsonable(numbers or {}),
              notebook or os.environ.get("INTERP_NOTEBOOK", ""), source, rule,
              _jsonable(dict(effect)) if effect is not None else None, reason)
    _recorded[:] = [r for r in _recorded if r.claim_id != claim_id] + [c]
    path = os.environ.get(CLAIMS_FILE_ENV)
    if path:
        with open(path, "a", encoding="utf-8") as f:
            f.write(json.dumps(asdict(c)) + "\n")
    return c


def judge(claim_id: str, claim: str, *, source: str, rule: str,
          effect: stats.Effect | None = None,
          parts: Mapping[str, stats.Effect] | None = None,
          numbers: dict[str, Any] | None = None, **rule_args) -> Claim:
    """Decide a claim with a named rule of `interp.stats` and record it.

    rule "directional" (`expected_sign`), "equivalence" (`margin`), "threshold" (`threshold`,
    `higher_is_reproduced`) read `effect`; rule "all_parts" (`part_rule`, `margin`,
    `expected_sign`) reads `parts`, a name -> Effect mapping, Holm-adjusted across parts. The
    effect's mean, CI, n and minimal detectable effect go into the record with the rule's
    arguments, so a reader sees what decided it."""
    if source not in SOURCES:
        raise ValueError(f"claim {claim_id}: source must be one of {SOURCES}, got {source!r}")
    if rule not in RULES:
        raise ValueError(f"claim {claim_id}: rule must be one of {RULES}, got {rule!r}")
    if rule == "all_parts":
        if not parts or effect is not None:
            raise ValueError(f"claim {claim_id}: rule 'all_parts' takes `parts` "
                             f"(name -> Effect), not `effect`")
        details = stats.all_parts_details(parts, rule_args.pop("part_rule", stats.NONE_HELPS),
                                          **rule_args)
        verdict = details.pop("verdict")
        summary = {"parts": details.pop("parts"), **details}
        return record(claim_id, claim, verdict, numbers, source=source, rule=rule,
                      effect=summary)
    if effect is None or parts is not None:
        raise ValueError(f"claim {claim_id}: rule {rule!r} takes one `effect` (an "
                         f"interp.stats.Effect)")
    decide = getattr(stats, rule)
    try:
        bound = inspect.signature(decide).bind(effect, **rule_args)
    except TypeError as e:
        raise ValueError(f"claim {claim_id}: rule {rule!r}: {e}") from None
    bound.apply_defaults()  # the record shows every argument that decided it
    args = {k: v for k, v in bound.arguments.items() if k != "effect"}
    return record(claim_id, claim, decide(**bound.arguments), numbers, source=source,
                  rule=rule, effect={**effect.to_record(), **args})


def inconclusive(claim_id: str, claim: str, *, source: str, rule: str, reason: str,
                 numbers: dict[str, Any] | None = None,
                 effect: stats.Effect | None = None) -> Claim:
    """Record a claim whose measurement ran but left its rule nothing to decide on (no common
    L0 range, no compression that kept the output, ...): inconclusive, saying why. An `effect`
    that was measured but cannot decide (its design condition failed) is shown with it."""
    if not reason:
        raise ValueError(f"claim {claim_id}: say why it is inconclusive")
    return record(claim_id, claim, stats.INCONCLUSIVE, numbers, source=source, rule=rule,
                  reason=reason, effect=None if effect is None else effect.to_record())


def not_tested(claim_id: str, claim: str, *, source: str, reason: str,
               numbers: dict[str, Any] | None = None) -> Claim:
    """Record a claim this page does not measure, with the reason (never 'inconclusive')."""
    if not reason:
        raise ValueError(f"claim {claim_id}: say why it is not tested")
    return record(claim_id, claim, stats.NOT_TESTED, numbers, source=source, rule="none",
                  reason=reason)


def effect_summary(effect: Mapping[str, Any] | None) -> str:
    """'+0.012 [-0.003, 0.027], n 3, MDE 0.02' for a recorded effect; '' when there is none."""
    if not effect:
        return ""
    if "parts" in effect:
        return "; ".join(f"{k}: {effect_summary(v)}" for k, v in effect["parts"].items())
    ci = effect.get("ci") or ("nan", "nan")
    text = (f"{format_signed(effect.get('mean'))} [{format_value(_num(ci[0]))}, "
            f"{format_value(_num(ci[1]))}], n {effect.get('n')}")
    mde = _num(effect.get("mde"))
    if isinstance(mde, float) and math.isfinite(mde):
        text += f", MDE {format_value(mde)}"
    return text


def _num(v: Any) -> Any:
    try:
        return float(v)
    except (TypeError, ValueError):
        return v


def format_signed(v: Any) -> str:
    v = _num(v)
    return f"{v:+.4g}" if isinstance(v, float) and math.isfinite(v) else str(v)


def recorded() -> list[Claim]:
    return list(_recorded)


def table(claims: list[Claim] | None = None) -> str:
    """A Markdown table of claims, for display in a notebook: verdict, the effect that decided
    it (mean [95% CI], n, minimal detectable effect), the rule and the other numbers."""
    rows = claims if claims is not None else _recorded
    lines = ["| id | claim | source | verdict | effect [95% CI], n, MDE | rule | numbers |",
             "|---|---|---|---|---|---|---|"]
    for c in rows:
        nums = ", ".join(f"{k} = {format_value(v)}" for k, v in c.numbers.items())
        if c.reason:
            nums = f"{c.reason}; {nums}" if nums else c.reason
        cells = [_table_cell(c.claim_id), _table_cell(c.claim), c.source or "?",
                 f"**{c.verdict}**", _table_cell(effect_summary(c.effect)), c.rule or "?",
                 _table_cell(nums)]
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


def _table_cell(text: str) -> str:
    """A '|' in a claim would end its table cell early; escape it (and keep rows one line)."""
    return str(text).replace("|", "\\|").replace("\n", " ")


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
