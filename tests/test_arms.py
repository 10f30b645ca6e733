"""The arms harness on the tiny Llama twin: arms x seeds x L1 sweep, shared evaluation."""

import numpy as np
import pytest

from interp import arms, lm_sae, sae


@pytest.fixture(scope="module")
def acts():
    try:
        return lm_sae.activations("tiny-llama", "blocks.1.resid_post", n_tokens=300,
                                  context_len=32, heldout_contexts=4, batch_size=4,
                                  progress=False)
    except FileNotFoundError:
        pytest.skip("corpus not fetched (python -m interp.data.corpus fetch)")


def test_run_arms_shapes_ordering_and_pruning(acts, tmp_path, monkeypatch):
    monkeypatch.setenv("INTERP_CACHE", str(tmp_path))
    base = sae.SAEConfig(d_in=64, d_sae=128, batch_size=64, steps=16, lr=3e-3,
                         lr_warmup_steps=2, dead_window_steps=4)
    arm_list = [arms.Arm("baseline"),
                arms.Arm("pruned", {"decoder_norm": "at_most_one", "decoder_init_norm": 1.0},
                         postprocess="prune_small_decoder_norms"),
                arms.Arm("ghost", {"dead_strategy": "ghost_scaled"}, l1_scale=2.0)]
    res = arms.run_arms(acts, base, arm_list, [1e-4, 3e-2], [0, 1], eval_tokens=acts.heldout,
                        progress=False)
    assert list(res) == ["baseline", "pruned", "ghost"]
    b = res["baseline"]
    assert len(b.evals) == 2 and len(b.evals[0]) == 2
    l0, fvu = b.curve("fvu", 0)
    assert l0[0] > l0[1]  # larger L1 -> sparser
    assert res["ghost"].l1_values == [2e-4, 6e-2]
    # every latent of the pruned arm has norm <= 1 and those below 0.99 were removed
    assert all(k <= 128 for k in res["pruned"].n_latents[0])
    assert b.final("dead_fraction").shape == (2, 2)
    assert b.seconds[0] > 0
    # the same run evaluated alone gives the same numbers (the shared evaluation is exact)
    run = lm_sae.train_cached(acts, base.replace(seed=1), {"l1_coeff": [1e-4, 3e-2]},
                              log_every=1, progress=False)
    alone = lm_sae.evaluate(acts.model, acts.site, run.saes()[1], acts.heldout, progress=False)
    assert alone["delta_ce"] == pytest.approx(b.evals[1][1]["delta_ce"], rel=1e-5, abs=1e-6)
    cmp = arms.compare(res["baseline"], res["baseline"], "fvu")
    assert cmp.mean == pytest.approx(0.0, abs=1e-12) or np.isnan(cmp.mean)


def test_bad_arms_are_named():
    with pytest.raises(ValueError, match="unknown postprocess"):
        arms.Arm("x", postprocess="shrink")
    with pytest.raises(ValueError, match="l1_scale"):
        arms.Arm("x", l1_scale=0)
