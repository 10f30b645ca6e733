"""interp.claims: verdict rules and the records the book gathers."""

import json

import numpy as np
import pytest

from interp import claims, stats


def test_record_writes_json_lines_with_plain_numbers(tmp_path, monkeypatch):
    path = tmp_path / "claims.jsonl"
    monkeypatch.setenv(claims.CLAIMS_FILE_ENV, str(path))
    monkeypatch.setenv("INTERP_NOTEBOOK", "nb")
    claims.record("T-1", "a claim", "reproduced", {"x": np.float32(0.5), "v": [np.int64(2)]})
    rec = json.loads(path.read_text())
    assert rec == {"claim_id": "T-1", "claim": "a claim", "verdict": "reproduced",
                   "numbers": {"x": 0.5, "v": [2]}, "notebook": "nb", "source": "",
                   "rule": "", "effect": None, "reason": ""}
    assert "| T-1 | a claim | ? | **reproduced** |  | ? | x = 0.5, v = [2] |" in claims.table()


def test_record_rejects_unknown_verdicts():
    with pytest.raises(ValueError, match="verdict must be one of"):
        claims.record("T-2", "a claim", "mostly reproduced")


def test_table_escapes_pipes_so_a_claim_stays_in_its_cell():
    c = claims.Claim("T-3", "A | B beats C\non two lines", "inconclusive", {"x|y": 1.5})
    rows = claims.table([c]).splitlines()
    assert rows[2] == ("| T-3 | A \\| B beats C on two lines | ? | **inconclusive** |  | ? "
                       "| x\\|y = 1.5 |")
    assert rows[2].replace("\\|", "").count("|") == 8  # seven cells


# --- judge / not_tested: verdicts from interp.stats rules ------------------------------------

def test_judge_directional_records_the_effect_and_the_rule(tmp_path, monkeypatch):
    path = tmp_path / "claims.jsonl"
    monkeypatch.setenv(claims.CLAIMS_FILE_ENV, str(path))
    clear = stats.Effect.from_seeds([1.0, 1.1, 0.9, 1.05, 0.95])
    c = claims.judge("X-1", "A beats B", source="post", rule="directional", effect=clear)
    assert c.verdict == "reproduced" and c.rule == "directional" and c.source == "post"
    rec = json.loads(path.read_text())
    assert rec["effect"]["n"] == 5 and rec["effect"]["expected_sign"] == 1
    assert rec["effect"]["ci"][0] > 0  # the CI that decided it is in the record
    opposite = claims.judge("X-1", "A beats B", source="post", rule="directional",
                            effect=clear, expected_sign=-1)
    assert opposite.verdict == "not reproduced"
    two_seeds = stats.Effect.from_seeds([1.0, 1.1])  # a huge effect, but no noise estimate
    assert claims.judge("X-1", "A beats B", source="post", rule="directional",
                        effect=two_seeds).verdict == "inconclusive"


def test_judge_equivalence_threshold_and_all_parts():
    tight = stats.Effect.from_seeds([0.001, -0.002, 0.0, 0.001, -0.001])
    assert claims.judge("X-2", "neutral", source="replicated", rule="equivalence",
                        effect=tight, margin=0.05).verdict == "reproduced"
    high = stats.Effect.from_seeds([0.95, 0.96, 0.97])
    assert claims.judge("X-3", "above 0.9", source="exploratory", rule="threshold",
                        effect=high, threshold=0.9).verdict == "reproduced"
    helps = stats.Effect.from_seeds([1.0, 1.1, 0.9, 1.0, 1.05])
    c = claims.judge("X-4", "none helps", source="post", rule="all_parts",
                     parts={"a": tight, "b": helps}, margin=0.05)
    assert c.verdict == "not reproduced"
    assert set(c.effect["parts"]) == {"a", "b"} and "p_holm" in c.effect["parts"]["b"]
    assert "a: " in claims.effect_summary(c.effect)


def test_judge_refuses_unknown_sources_rules_and_mismatched_inputs():
    e = stats.Effect.from_seeds([1.0, 2.0, 3.0])
    with pytest.raises(ValueError, match="source must be one of"):
        claims.judge("X-5", "c", source="folklore", rule="directional", effect=e)
    with pytest.raises(ValueError, match="rule must be one of"):
        claims.judge("X-5", "c", source="post", rule="vibes", effect=e)
    with pytest.raises(ValueError, match="takes `parts`"):
        claims.judge("X-5", "c", source="post", rule="all_parts", effect=e)
    with pytest.raises(ValueError, match="takes one `effect`"):
        claims.judge("X-5", "c", source="post", rule="directional")


def test_not_tested_is_its_own_status_with_a_reason():
    c = claims.not_tested("J-c", "greenlets", source="post", reason="not implemented")
    assert c.verdict == "not tested" and "not implemented" in claims.table([c])
    with pytest.raises(ValueError, match="say why"):
        claims.not_tested("J-c", "greenlets", source="post", reason="")


def test_effect_summary_reads_mean_ci_n_and_mde():
    e = stats.Effect.from_seeds([1.0, 2.0, 3.0])
    text = claims.effect_summary(e.to_record())
    assert text.startswith("+2 [") and ", n 3, MDE " in text


def test_inconclusive_records_the_reason_and_refuses_none():
    c = claims.inconclusive("T-3", "compression", source="post", rule="threshold",
                            reason="no compression kept the output")
    assert c.verdict == "inconclusive" and c.rule == "threshold" and c.reason
    with pytest.raises(ValueError, match="say why"):
        claims.inconclusive("T-3", "compression", source="post", rule="threshold", reason="")
