"""interp.steering.teacher_forced: the concept log-probability effect, its sweeps and curves."""

import jax
import numpy as np
import pytest

from interp.steering import actadd, evaluate, sweep, teacher_forced

SITE = "blocks.1.resid_post"
CONCEPTS = [teacher_forced.Concept("ab", ("a", "b")), teacher_forced.Concept("x-y", ("x",), ("y", "z"))]


def direct_effect(model, prompts, delta, concept):
    """The same quantity from a full forward with the steering hook: log-softmax at the last
    position, log-sum-exp over the concept's ids (minus the opposite set's)."""
    logits = model.forward(prompts, hooks=actadd.steering_hooks(model, SITE, delta)).logits[:, -1]
    logp = np.asarray(jax.nn.log_softmax(logits.astype(np.float32), axis=-1), np.float64)
    lse = lambda ids: np.log(np.exp(logp[:, ids]).sum(-1))  # noqa: E731
    plus = lse(teacher_forced.word_ids(model, concept.words))
    return plus - (lse(teacher_forced.word_ids(model, concept.minus_words))
                   if concept.minus_words else 0.0)


def test_effect_equals_a_full_hooked_forward(tiny):
    prompts = np.asarray([actadd.encode_prompt(tiny, t) for t in ("hello ther", "abcdefghij",
                                                                  "the cat sa")])
    h = np.asarray(actadd.actadd_vector(tiny, SITE, actadd.prompt_pair(tiny, "abc", "xyz")))
    deltas = np.stack([0 * h, 3.0 * h, 20.0 * h])
    got = teacher_forced.concept_logprobs(tiny, SITE, prompts, deltas, CONCEPTS, batch_size=4)
    assert got.shape == (3, 3, 2)
    for k in range(3):
        for c, concept in enumerate(CONCEPTS):
            want = direct_effect(tiny, prompts, deltas[k], concept)
            # float32 logits from two differently compiled programs
            np.testing.assert_allclose(got[k, :, c], want, rtol=1e-4, atol=1e-4)
    assert np.abs(got[2] - got[0]).max() > 1e-2  # the vector changes the effect


def test_batches_do_not_change_the_result(tiny):
    prompts = np.asarray([actadd.encode_prompt(tiny, "abcdefgh")] * 5)
    h = np.asarray(actadd.actadd_vector(tiny, SITE, actadd.prompt_pair(tiny, "ab", "cd")))
    deltas = np.stack([c * h for c in (0.0, 1.0, 5.0)])
    one = teacher_forced.concept_logprobs(tiny, SITE, prompts, deltas, CONCEPTS, batch_size=64)
    small = teacher_forced.concept_logprobs(tiny, SITE, prompts, deltas, CONCEPTS, batch_size=4)
    np.testing.assert_allclose(small, one, rtol=1e-5, atol=1e-5)


def test_bad_words_and_shapes_are_refused_by_name(tiny, smol):
    with pytest.raises(ValueError, match="' honeymoon' is 3 tokens"):
        teacher_forced.word_ids(smol, [" wedding", " honeymoon"], "wedding")
    with pytest.raises(ValueError, match="twice"):
        teacher_forced.word_ids(tiny, ["a", "a"], "c")
    with pytest.raises(ValueError, match="no words"):
        teacher_forced.word_ids(tiny, [], "c")
    prompts = np.asarray([actadd.encode_prompt(tiny, "ab")])
    with pytest.raises(ValueError, match="front positions"):
        teacher_forced.concept_logprobs(tiny, SITE, prompts, np.zeros((1, 5, tiny.cfg.d_model)),
                                        CONCEPTS)
    with pytest.raises(ValueError, match="resid_pre / resid_post site, not resid_mid"):
        actadd.resume_layer(tiny, "blocks.1.resid_mid")
    with pytest.raises(ValueError, match="not resid_mid"):  # the delta CE shares the rule
        evaluate.steered_delta_ce(tiny, "blocks.1.resid_mid", np.zeros((1, 2, tiny.cfg.d_model)),
                                  prompts)
    assert actadd.resume_layer(tiny, "blocks.1.resid_pre") == 1
    assert actadd.resume_layer(tiny, "blocks.1.resid_post") == 2


def test_run_curve_and_summary(tiny):
    prompts = np.asarray([actadd.encode_prompt(tiny, t) for t in ("hello worl", "abcdefghij")])
    h = np.asarray(actadd.actadd_vector(tiny, SITE, actadd.prompt_pair(tiny, "abc", "xyz")))
    pts = [sweep.Point("unsteered", 0.0, h), sweep.Point("orig", 2.0, h),
           sweep.Point("orig", 1.0, h), sweep.Point("half", 1.0, h[:2])]
    res = teacher_forced.run(tiny, SITE, prompts, pts, CONCEPTS, prompts, resid_norm=10.0)
    assert [r.variant for r in res] == ["unsteered", "orig", "orig", "half"]
    assert res[0].delta_ce == pytest.approx(0.0, abs=1e-6)
    assert res[1].rel_norm == pytest.approx(2.0 * np.linalg.norm(h, axis=-1).max() / 10.0, rel=1e-5)
    cur = teacher_forced.curve(res, "orig", "ab")
    # exact: coefficients are copied from the points; unsteered leads, then by coefficient
    np.testing.assert_array_equal(cur["coeff"], [0.0, 1.0, 2.0])
    assert cur["effect"].shape == (3, 2)
    np.testing.assert_allclose(cur["effect"][0], 0.0, atol=1e-12)
    np.testing.assert_allclose(cur["effect"][2], res[1].of("ab") - res[0].of("ab"), atol=1e-12)
    rows = teacher_forced.summary_rows(res, "x-y")
    assert rows[0]["gain"] == pytest.approx(0.0, abs=1e-12)  # the unsteered point minus itself
    assert rows[1]["ci low"] <= rows[1]["gain"] <= rows[1]["ci high"]
    with pytest.raises(ValueError, match="not scored"):
        res[0].of("wedding")
    with pytest.raises(ValueError, match="unsteered"):
        teacher_forced.curve(res[1:], "orig", "ab")


def test_gain_curves_draw_one_curve_per_variant(tiny):
    import matplotlib
    matplotlib.use("Agg")
    from interp.steering import plots

    prompts = np.asarray([actadd.encode_prompt(tiny, t) for t in ("hello worl", "abcdefghij")])
    h = np.asarray(actadd.actadd_vector(tiny, SITE, actadd.prompt_pair(tiny, "abc", "xyz")))
    pts = [sweep.Point("unsteered", 0.0, h)] + [sweep.Point(v, c, h) for c in (1.0, 2.0)
                                                  for v in ("orig", "recon+err")]
    res = teacher_forced.run(tiny, SITE, prompts, pts, CONCEPTS, prompts)
    fig, rows = plots.gain_curves(res, ["orig", "recon+err"], "ab", "t")
    ax = fig.axes[0]
    assert [t.get_text() for t in ax.get_legend().get_texts()] == ["orig", "recon+err (= orig)"]
    assert len(ax.lines) >= 2 and len(rows) == len(pts)
    assert set(plots.TABLE_COLUMNS) <= set(rows[0])
