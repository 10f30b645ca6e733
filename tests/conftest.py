"""Fixtures shared by several test files."""

import pytest


@pytest.fixture(scope="session")
def tiny_acts():
    """A 300-activation store of the tiny Llama twin on the real corpus, with 4 held-out
    contexts: the smallest real input for the LM pipeline (interp.lm_sae, interp.arms)."""
    from interp import lm_sae

    try:
        return lm_sae.activations("tiny-llama", "blocks.1.resid_post", n_tokens=300,
                                  context_len=32, heldout_contexts=4, batch_size=4,
                                  progress=False)
    except FileNotFoundError:
        pytest.skip("corpus not fetched (python -m interp.data.corpus fetch)")
