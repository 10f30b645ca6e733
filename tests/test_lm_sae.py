"""The shared LM pipeline (interp.lm_sae): one cached harvest plus held-out tokens, and the
evaluation dict, on the tiny Llama twin and the real corpus."""

import numpy as np
import pytest

from interp import lm_sae


@pytest.fixture(scope="module")
def acts():
    try:
        return lm_sae.activations("tiny-llama", "blocks.1.resid_post", n_tokens=300,
                                  context_len=32, heldout_contexts=4, batch_size=4,
                                  progress=False)
    except FileNotFoundError:
        pytest.skip("corpus not fetched (python -m interp.data.corpus fetch)")


def test_activations_shape_and_reuse(acts):
    assert acts.store.spec.n_contexts == 10  # ceil(300 / 31) contexts give >= 300 non-BOS rows
    assert acts.store.num_rows(drop_bos=True) >= 300
    assert acts.d_in == acts.model.cfg.d_model == 64
    assert acts.heldout.shape == (4, 32)
    assert (acts.heldout[:, 0] == acts.model.cfg.bos_id).all()
    # the held-out contexts are not among the training contexts
    train = {tuple(r) for r in acts.store.tokens()}
    assert not any(tuple(r) in train for r in acts.heldout)
    again = lm_sae.activations(acts.model, acts.site, n_tokens=300, context_len=32,
                               heldout_contexts=4, batch_size=4, progress=False)
    assert again.store.path == acts.store.path  # one shared, content-addressed harvest
    np.testing.assert_array_equal(again.heldout, acts.heldout)


def test_evaluate_keys_and_identity(acts):
    class Identity:
        def encode(self, x):
            return x

        def decode(self, f):
            return f

    r = lm_sae.evaluate(acts.model, acts.site, Identity(), acts.heldout, progress=False)
    assert {"l0", "fvu", "mse", "loss_recovered", "delta_ce", "kl"} <= set(r)
    assert r["loss_recovered"] == 1.0 and r["delta_ce"] == 0.0 and r["fvu"] == 0.0


def test_bad_arguments():
    with pytest.raises(KeyError, match="unknown site"):
        lm_sae.activations("tiny-llama", "blocks.1.nowhere", n_tokens=10, progress=False)
    with pytest.raises(ValueError, match="reserved for evaluation"):
        lm_sae.activations("tiny-llama", split="heldout", n_tokens=10, progress=False)
    with pytest.raises(ValueError, match="unknown model"):
        lm_sae.activations("gpt-7", n_tokens=10, progress=False)
