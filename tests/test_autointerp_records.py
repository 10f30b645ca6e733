"""interp.autointerp.records: discretisation, records, example selection and the split."""

import numpy as np
import pytest

from autointerp_helpers import corpus, word_latent
from interp import autointerp as A


def test_discretise_follows_bills_normalisation():
    a = np.array([-1.0, 0.0, 0.99, 1.0, 5.0, 9.99, 10.0])
    assert A.discretise(a, 10.0).tolist() == [0, 0, 0, 1, 5, 9, 10]
    assert A.discretise(a, 10.0, scale=9).tolist() == [0, 0, 0, 0, 4, 8, 9]
    assert A.discretise(a, 0.0).tolist() == [0] * 7


def test_record_validates():
    with pytest.raises(ValueError, match="2 tokens"):
        A.Record(("a", "b"), [1.0])
    with pytest.raises(ValueError, match="NaN"):
        A.Record(("a",), [np.nan])
    with pytest.raises(ValueError, match="source"):
        A.Record(("a",), [1.0], source="best")


def test_select_examples_groups_are_disjoint_sorted_and_seeded():
    toks = corpus()
    acts = word_latent(toks, " cat", graded=True)
    ex = A.select_examples(acts, toks, latent=3, n_top=20, n_quantiles=4, per_quantile=2,
                           n_random=10, seed=1)
    peaks = [r.max_act for r in ex.top]
    assert len(ex.top) == 20 and peaks == sorted(peaks, reverse=True)
    assert peaks[0] == pytest.approx(acts.max()) and ex.max_act == pytest.approx(acts.max())
    assert 4 <= len(ex.quantile) <= 8 and len(ex.random) == 10
    q = sorted(r.max_act for r in ex.quantile)
    assert q[-1] <= peaks[-1] and q[0] < q[-1] - 1.0  # spread over the intervals, below the top
    texts = [r.text for r in (*ex.top, *ex.quantile, *ex.random)]
    assert len(set(texts)) == len(texts)  # disjoint (random texts are distinct with p ~ 1)
    assert ex.frequency == pytest.approx(np.mean(acts > 0))
    again = A.select_examples(acts, toks, latent=3, n_top=20, n_quantiles=4, per_quantile=2,
                              n_random=10, seed=1)
    assert [r.text for r in again.random] == [r.text for r in ex.random]
    other = A.select_examples(acts, toks, latent=3, n_top=20, seed=2)
    assert [r.text for r in other.random] != [r.text for r in ex.random]
    with pytest.raises(ValueError, match="one string per activation"):
        A.select_examples(acts[:, :5], toks)


def test_split_holds_out_the_explained_records():
    toks = corpus()
    ex = A.select_examples(word_latent(toks, " cat"), toks, n_top=12, n_random=6)
    s = A.split(ex, n_explain=5, n_score_top=5, n_score_random=4, seed=0)
    assert len(s.explain) == 5 and all(r.source == "top" for r in s.explain)
    shown = {id(r) for r in s.explain}
    assert not any(id(r) in shown for r in s.score)
    assert len(s.by_source("top")) == 5 and len(s.by_source("random")) == 4
    few = A.select_examples(word_latent(toks, " cat"), toks, n_top=3)
    with pytest.raises(ValueError, match="need at least 6"):
        A.split(few, n_explain=5)
