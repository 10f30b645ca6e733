"""penzai model surgery on our weights must give our logits, with and without an ActAdd edit."""

import dataclasses

import jax.numpy as jnp
import numpy as np
import pytest

from interp import hooks, models
from interp import penzai_bridge as pb

TOL = 1e-4


@pytest.fixture(scope="module")
def tiny():
    m = models.load("tiny-llama")
    return m, pb.to_penzai(m.cfg, m.params)


@pytest.fixture(scope="module")
def tokens():
    return np.random.default_rng(0).integers(0, 256, (2, 11)).astype(np.int32)


def _maxdiff(a, b):
    return float(jnp.abs(jnp.asarray(a) - jnp.asarray(b)).max())


def test_logits_agree_without_intervention(tiny, tokens):
    m, pm = tiny
    ours = m.forward(tokens).logits
    assert _maxdiff(ours, pb.logits(pm, tokens)) < TOL
    assert float(jnp.abs(ours).max()) > 0.5  # the comparison is not between near-zero logits


def test_addvector_matches_hooks_add_every_position(tiny, tokens):
    m, pm = tiny
    v = np.random.default_rng(1).standard_normal(m.cfg.d_model).astype(np.float32)
    ours = m.forward(tokens, hooks=hooks.add("resid_pre", v, layers=2)).logits
    theirs = pb.logits(pb.add_at_resid_pre(pm, 2, v), tokens)
    assert _maxdiff(ours, theirs) < TOL
    assert _maxdiff(ours, m.forward(tokens).logits) > 1e-2  # the edit changed the output


def test_front_position_actadd_matches(tiny, tokens):
    m, pm = tiny
    n, t = 3, tokens.shape[1]
    steer = np.random.default_rng(2).standard_normal((n, m.cfg.d_model)).astype(np.float32)
    front = hooks.add("resid_pre", steer, layers=0, positions=tuple(range(n)))
    ours = m.forward(tokens, hooks=front).logits
    padded = np.zeros((t, m.cfg.d_model), np.float32)
    padded[:n] = steer
    theirs = pb.logits(pb.add_at_resid_pre(pm, 0, padded), tokens)
    assert _maxdiff(ours, theirs) < TOL


def test_mha_head_layout_also_agrees():
    """n_kv_heads == n_heads takes penzai's plain `heads` axis: a different weight layout."""
    cfg = dataclasses.replace(models.llama.TINY, n_kv_heads=4)
    params = models.llama.init_params(cfg, 3)
    m = models.Model("tiny-mha", cfg, params, None)
    toks = np.arange(8, dtype=np.int32)[None]
    assert _maxdiff(m.forward(toks).logits, pb.logits(pb.to_penzai(cfg, params), toks)) < TOL


def test_bad_inputs_are_named(tiny):
    m, pm = tiny
    with pytest.raises(ValueError, match="out of range"):
        pb.add_at_resid_pre(pm, m.cfg.n_layers, np.zeros(m.cfg.d_model))
    with pytest.raises(ValueError, match="vector must be"):
        pb.add_at_resid_pre(pm, 0, np.zeros((1, 2, m.cfg.d_model)))
    with pytest.raises(ValueError, match="llama architecture only"):
        pb.penzai_config(dataclasses.replace(m.cfg, arch="gemma3"))


# --------------------------------------------------------------------- scanned model, callbacks


@pytest.fixture(scope="module")
def stacked(tiny):
    m, _ = tiny
    return pb.to_penzai(m.cfg, m.params, layer_stack=True)


def test_layer_stack_model_scans_and_agrees(tiny, stacked, tokens):
    import jax

    m, _ = tiny
    assert _maxdiff(m.forward(tokens).logits, pb.logits(stacked, tokens)) < TOL
    jaxpr = str(jax.make_jaxpr(lambda t: pb.logits(stacked, t))(tokens))
    assert "scan[" in jaxpr  # penzai runs its blocks under lax.scan, as ours do


def test_intercepting_captures_each_block_under_jit_and_scan(tiny, stacked, tokens):
    import jax
    from penzai.models.transformer import model_parts

    m, _ = tiny
    sink = []
    with pb.intercepting(model_parts.TransformerBlock, pb.send_to(sink)):
        out = jax.jit(lambda t: pb.logits(stacked, t))(tokens)
        jax.effects_barrier()
    ours = m.forward(tokens, hooks=hooks.capture("resid_post")).captures["resid_post"]
    assert len(sink) == m.cfg.n_layers
    assert _maxdiff(np.stack(sink), ours) < TOL
    assert _maxdiff(out, pb.logits(stacked, tokens)) < TOL


def test_intercepting_restores_the_class(stacked, tokens):
    from penzai.models.transformer import model_parts

    before = pb.logits(stacked, tokens)
    with pytest.raises(RuntimeError, match="boom"):
        with pb.intercepting(model_parts.TransformerBlock, pb.add_vector(np.ones(64))):
            raise RuntimeError("boom")
    assert "__call__" not in model_parts.TransformerBlock.__dict__  # inherited call is back
    assert _maxdiff(pb.logits(stacked, tokens), before) == 0.0


def test_add_vector_interceptor_matches_hooks_add_at_every_layer(tiny, stacked, tokens):
    from penzai.models.transformer import model_parts

    m, _ = tiny
    v = np.random.default_rng(4).standard_normal(m.cfg.d_model).astype(np.float32)
    with pb.intercepting(model_parts.TransformerBlock, pb.add_vector(v)):
        theirs = pb.logits(stacked, tokens)
    ours = m.forward(tokens, hooks=hooks.add("resid_post", v)).logits
    assert _maxdiff(ours, theirs) < TOL
    assert _maxdiff(ours, m.forward(tokens).logits) > 1e-2
