"""interp.claims: verdict rules and the records the book gathers."""

import json
import math

import numpy as np
import pytest

from interp import claims


@pytest.mark.parametrize("effect,spread,sign,expected", [
    (0.5, 0.1, 1, "reproduced"),
    (-0.5, 0.1, 1, "not reproduced"),
    (-0.5, 0.1, -1, "reproduced"),
    (0.05, 0.1, 1, "inconclusive"),   # smaller than the seed spread
    (0.1, 0.1, 1, "inconclusive"),    # equal to it: still not evidence
    (math.nan, 0.1, 1, "inconclusive"),
])
def test_verdict_from_comparison(effect, spread, sign, expected):
    assert claims.verdict_from_comparison(effect, spread, sign) == expected


@pytest.mark.parametrize("value,threshold,higher,margin,expected", [
    (0.95, 0.9, True, 0.0, "reproduced"),
    (0.85, 0.9, True, 0.0, "not reproduced"),
    (0.85, 0.9, False, 0.0, "reproduced"),
    (0.91, 0.9, True, 0.02, "inconclusive"),
])
def test_verdict_from_threshold(value, threshold, higher, margin, expected):
    assert claims.verdict_from_threshold(value, threshold, higher, margin) == expected


def test_record_writes_json_lines_with_plain_numbers(tmp_path, monkeypatch):
    path = tmp_path / "claims.jsonl"
    monkeypatch.setenv(claims.CLAIMS_FILE_ENV, str(path))
    monkeypatch.setenv("INTERP_NOTEBOOK", "nb")
    claims.record("T-1", "a claim", "reproduced", {"x": np.float32(0.5), "v": [np.int64(2)]})
    rec = json.loads(path.read_text())
    assert rec == {"claim_id": "T-1", "claim": "a claim", "verdict": "reproduced",
                   "numbers": {"x": 0.5, "v": [2]}, "notebook": "nb"}
    assert "| T-1 | a claim | **reproduced** | x = 0.5, v = [2] |" in claims.table()


def test_record_rejects_unknown_verdicts():
    with pytest.raises(ValueError, match="verdict must be one of"):
        claims.record("T-2", "a claim", "mostly reproduced")
