"""The infrastructure page's reductions and verdict rules, on synthetic results and the tiny
random Llama twin."""

import jax.numpy as jnp
import numpy as np
import pytest

from interp import models
from interp import penzai_bridge as pb
from interp.experiments import infrastructure as inf
from interp.models import core

N_LAYERS = 4
ARGS = dict(n_layers=N_LAYERS, penzai_rel_tol=1e-4, memory_tol_layers=0.5)


def _row(diff=1e-6, **kw):
    return {"scanned": True, "capture": diff, "intervention": diff, "unchanged": diff,
            "resid_scale": 5.0, "logit_scale": 3.0, "edit_effect": 4.0, **kw}


def _mem(one=1.001, every=N_LAYERS + 0.001, n=4):
    return [{"one_layer_extra": one + 1e-3 * i, "all_layers_extra": every + 1e-3 * i}
            for i in range(n)]


QUIET = [0.001, -0.002, 0.0, 0.003, -0.001]


def _by_id(records):
    return {r.claim_id: r for r in records}


def test_worst_ratio_uses_each_checks_own_scale():
    row = _row(capture=5e-4, intervention=1e-4, unchanged=0.0)  # resid scale 5, logit 3
    assert inf.worst_ratio(row, 1e-4) == pytest.approx(1.0)  # 5e-4 / (1e-4 * 5)
    # a scale below 1 is floored at 1: 1e-5 / 1e-4
    assert inf.worst_ratio(_row(diff=1e-5, logit_scale=0.1), 1e-4) == pytest.approx(0.1)


def test_planted_agreement_and_cost_are_reproduced():
    v = _by_id(inf.verdicts([_row()] * 4, _mem(), QUIET, **ARGS))
    assert v["J-a"].verdict == "reproduced" and v["J-a"].source == "post"
    assert v["J-b"].verdict == "reproduced" and v["J-b"].rule == "all_parts"
    assert v["J-c"].verdict == "not tested"


def test_disagreement_and_costs_are_not_reproduced():
    v = _by_id(inf.verdicts([_row(diff=0.5 + 0.01 * i) for i in range(4)],
                            _mem(one=N_LAYERS), QUIET, **ARGS))
    assert v["J-a"].verdict == "not reproduced"
    assert v["J-b"].verdict == "not reproduced"  # one-layer capture stored every layer
    slow = [0.10, 0.11, 0.12, 0.10, 0.13]
    assert _by_id(inf.verdicts([_row()] * 4, _mem(), slow, **ARGS))["J-b"].verdict \
        == "not reproduced"


def test_noise_and_too_few_items_are_inconclusive():
    noisy = [0.2, -0.15, 0.1, -0.2, 0.25]
    straddling = [_row(diff=d) for d in (1e-4, 9e-4, 2e-4, 8e-4)]  # ratios straddle 1
    v = _by_id(inf.verdicts(straddling, _mem(), noisy, **ARGS))
    assert v["J-a"].verdict == "inconclusive"
    assert v["J-b"].verdict == "inconclusive"
    v = _by_id(inf.verdicts([_row()] * 2, _mem(n=2), QUIET[:2], **ARGS))
    assert v["J-a"].verdict == "inconclusive" and v["J-b"].verdict == "inconclusive"


def test_missing_penzai_model_is_not_tested_and_unscanned_is_refused():
    v = _by_id(inf.verdicts(None, _mem(), QUIET, penzai_skip_reason="gemma3", **ARGS))
    assert v["J-a"].verdict == "not tested" and "gemma3" in v["J-a"].reason
    with pytest.raises(ValueError, match="layer_stack=True"):
        inf.verdicts([_row(scanned=False)] * 4, _mem(), QUIET, **ARGS)


# --------------------------------------------------------------------- measurements (tiny twin)


@pytest.fixture(scope="module")
def tiny():
    return models.load("tiny-llama")


def _tokens(batch=2, seq=10, seed=0):
    return jnp.asarray(np.random.default_rng(seed).integers(0, 256, (batch, seq)), jnp.int32)


def test_plain_forward_is_the_forward_without_hooks(tiny):
    toks = _tokens()
    plain = inf.plain_forward(tiny.arch, tiny.params, toks, tiny.cfg)
    np.testing.assert_allclose(plain, core.forward(tiny.arch, tiny.params, toks, tiny.cfg).logits,
                               atol=1e-5, rtol=1e-5)


def test_one_layer_capture_costs_one_layer_of_memory(tiny):
    (row,) = inf.capture_memory(tiny, [(2, 16)])
    assert row["one_layer_extra"] == pytest.approx(1.0, abs=0.1)
    assert row["all_layers_extra"] == pytest.approx(tiny.cfg.n_layers, abs=0.1)


def test_penzai_checks_agree_on_the_scanned_model(tiny):
    pm = pb.to_penzai(tiny.cfg, tiny.params, layer_stack=True)
    vec = np.random.default_rng(1).standard_normal((1, tiny.cfg.d_model))
    (row,) = inf.penzai_checks(tiny, pm, [_tokens()], vec)
    assert row["scanned"] and inf.worst_ratio(row, 1e-4) < 1
    assert row["edit_effect"] > 1e-2  # the intervention changed the output


def test_inactive_overhead_gives_one_finite_value_per_repeat(tiny):
    out = inf.inactive_overhead(tiny, _tokens(), repeats=3, min_seconds=0.01)
    assert out.shape == (3,) and np.isfinite(out).all() and (out > -1).all()
