"""interp.steering.evaluate: steered delta cross-entropy, the judge and completion CE."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from interp.steering import actadd, evaluate


def test_steered_delta_ce_and_judge(tiny):
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
    # judge: a probability; completion CE matches a direct computation
    judge = evaluate.Judge(" ok?", "a", "b")
    prompt = actadd.encode_prompt(tiny, "hi")
    comp = [list(tiny.tokenizer.encode("there", add_bos=False)), []]
    p, ce = evaluate.judge_and_ce(tiny, prompt, comp, judge, batch_size=4)
    assert np.all((p > 0) & (p < 1)) and np.isnan(ce[1])
    row = prompt + comp[0]
    lp = jax.nn.log_softmax(tiny.forward([row]).logits[0], -1)
    want = -np.mean([float(lp[len(prompt) - 1 + i, t]) for i, t in enumerate(comp[0])])
    assert ce[0] == pytest.approx(want, abs=1e-4)
