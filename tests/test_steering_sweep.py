"""interp.steering.sweep: matched comparisons, per-prompt means, curves and the sweep run."""

import numpy as np
import pytest

from interp.steering import actadd, evaluate, lexicons, sweep


def test_matched_comparison_interpolates_at_equal_cost():
    ref = {"cost": np.array([0.0, 1.0, 2.0]), "effect": np.array([0.0, 1.0, 2.0]),
           "effect_se": np.array([0.1, 0.1, 0.1]), "coeff": np.arange(3)}
    better = {"cost": np.array([0.5, 1.5, 3.0]), "effect": np.array([1.5, 2.5, 9.0]),
              "effect_se": np.array([0.1, 0.1, 0.1]), "coeff": np.arange(3)}
    out = sweep.matched_comparison(better, ref)  # one prompt: the per-prompt value is the mean
    assert out["n_matched"] == 2  # cost 3.0 is outside the reference's range
    assert out["difference"] == pytest.approx(1.0)
    np.testing.assert_allclose(out["per_prompt"], [1.0])
    none = sweep.matched_comparison({**better, "cost": np.array([5.0, 6.0, 7.0])}, ref)
    assert none["n_matched"] == 0 and np.isnan(none["difference"])


def test_per_prompt_means_ignore_empty_completions():
    """sweep._per_prompt: [prompts, points * samples] -> [points, prompts] means per prompt."""
    v = np.array([[1.0, 3.0, 10.0, np.nan], [0.0, 2.0, np.nan, np.nan]])
    out = sweep._per_prompt(v, n_points=2, n_samples=2)
    np.testing.assert_allclose(out[0], [2.0, 1.0])
    assert out[1, 0] == pytest.approx(10.0) and np.isnan(out[1, 1])


def test_curve_includes_the_unsteered_point():
    def res(v, c, e):
        return sweep.Result(v, c, e, 0.1, 0.0, float("nan"), 0.0, 0.0, c / 10, 0.0, [])

    results = [res("orig", 2.0, 3.0), res("unsteered", 0.0, 0.5), res("orig", 1.0, 1.0),
               res("recon", 1.0, 9.0)]
    c = sweep.curve(results, "orig")
    np.testing.assert_array_equal(c["coeff"], [0.0, 1.0, 2.0])  # exact: copied from the results
    np.testing.assert_array_equal(c["effect"], [0.5, 1.0, 3.0])
    np.testing.assert_array_equal(sweep.curve(results, "recon", "judge")["effect_se"], [0.0, 0.0])
    assert len(sweep.curve(results, "orig", baseline=None)["coeff"]) == 2
    with pytest.raises(ValueError, match="no results"):
        sweep.curve(results, "pruned")


def test_run_keeps_effects_per_prompt(tiny):
    """sweep.run samples every point on each prompt and keeps one mean per prompt; the point's
    mean is the mean over prompts and its standard error is over prompts."""
    site = "blocks.1.resid_post"
    h = np.asarray(actadd.actadd_vector(tiny, site, actadd.prompt_pair(tiny, "ab", "xy")))
    task = sweep.Task(("hello", "a b c d", "zz"), ("a", "b", "c"), evaluate.Judge(" ok?", "a", "b"))
    points = [sweep.Point("unsteered", 0.0, h), sweep.Point("orig", 5.0, h)]
    neutral = np.asarray([actadd.encode_prompt(tiny, "the quick brown fox")] * 2)
    out = sweep.run(tiny, site, task, points, n_samples=2, max_new_tokens=3,
                    neutral_tokens=neutral, batch_size=4, progress=False)
    for r in out:
        assert r.lexicon_by_prompt.shape == r.judge_by_prompt.shape == (3,)
        assert len(r.texts) == 6  # prompt-major: 2 completions of each prompt
        assert r.judge == pytest.approx(r.judge_by_prompt.mean(), abs=1e-12)
        assert r.judge_se == pytest.approx(r.judge_by_prompt.std(ddof=1) / np.sqrt(3), abs=1e-12)
        want = lexicons.count(r.texts, task.lexicon).reshape(3, 2).mean(1)
        np.testing.assert_allclose(r.lexicon_by_prompt, want)
