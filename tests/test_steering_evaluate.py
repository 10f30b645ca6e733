"""interp.steering.evaluate: the steered delta cross-entropy (the steering cost)."""

import jax.numpy as jnp
import numpy as np
import pytest

from interp.steering import actadd, evaluate


def test_steered_delta_ce_matches_a_hooked_forward(tiny):
    site = "blocks.1.resid_post"
    pair = actadd.prompt_pair(tiny, "abc", "xyz")
    h = np.asarray(actadd.actadd_vector(tiny, site, pair))
    tokens = np.asarray([actadd.encode_prompt(tiny, "the quick brown fox jumps")] * 3)
    dce = evaluate.steered_delta_ce(tiny, site, np.stack([0 * h, h, 30 * h]), tokens, batch_size=4)
    assert dce[0] == pytest.approx(0.0, abs=1e-6)
    assert dce[2] != pytest.approx(0.0, abs=1e-4)
    # a full forward with the hook gives the same steered CE
    from interp.evaluation import next_token_losses
    clean = tiny.forward(tokens).logits
    steered = tiny.forward(tokens, hooks=actadd.steering_hooks(tiny, site, 30 * h)).logits
    ce_s, _ = next_token_losses(steered, clean, jnp.asarray(tokens))
    ce_c, _ = next_token_losses(clean, clean, jnp.asarray(tokens))
    assert dce[2] == pytest.approx(float(ce_s.mean() - ce_c.mean()), abs=1e-4)
