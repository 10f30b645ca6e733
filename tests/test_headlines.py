"""interp.headlines: the post's headline claims combined from their decisive sub-claims."""

import pytest

from interp import headlines
from interp.book import site

R, N, I, T = "reproduced", "not reproduced", "inconclusive", "not tested"


@pytest.mark.parametrize("parts,expected", [
    ([R, R], R),
    ([R, N], N),            # one refutation is enough
    ([I, N], N),
    ([R, I], I),
    ([R, None], I),         # a decisive sub-claim that was not recorded
    ([R, T], I),
    ([T, None], T),         # nothing measured
    ([None, None], T),
])
def test_combine(parts, expected):
    assert headlines.combine(parts) == expected


def test_every_snippet_has_one_headline_with_decisive_sub_claims():
    pages = [h.page for h in headlines.HEADLINES]
    assert len(pages) == 7 and len(set(pages)) == 7
    assert all(h.decisive and h.quote for h in headlines.HEADLINES)


def test_judge_all_and_the_claims_page_tables():
    records = [{"claim_id": "G-2", "claim": "ghost under-performs", "verdict": R,
                "notebook": "ghost_grads", "source": "post", "rule": "directional",
                "effect": {"mean": 0.1, "ci": [0.05, 0.15], "n": 3, "mde": 0.08}},
               {"claim_id": "G-3", "claim": "scaled | competitive", "verdict": I,
                "notebook": "ghost_grads", "source": "post", "rule": "equivalence",
                "effect": None},
               {"claim_id": "G-4", "claim": "first K", "verdict": I, "notebook": "ghost_grads",
                "source": "exploratory", "rule": "directional"}]
    ghost = next(h for h in headlines.judge_all(records) if h["page"] == "ghost_grads")
    assert ghost["decisive"] == {"G-2": R, "G-3": I} and ghost["verdict"] == I
    text = site.headlines_table(records)
    assert "G-2: reproduced, G-3: inconclusive" in text and "not recorded" in text
    table = site.claims_table(records)
    assert table.index("Claims of the post's own summary") < table.index("follow-up")
    assert "+0.1 [0.05, 0.15], n 3, MDE 0.08" in table
    assert "scaled \\| competitive" in table  # a '|' stays inside its cell
