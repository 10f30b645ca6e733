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


@pytest.fixture(scope="module")
def synthetic():
    """ITO: a known dictionary and known 5-sparse codes (tests/ito_problems.py)."""
    from ito_problems import synthetic_problem

    return synthetic_problem()


@pytest.fixture(scope="module")
def small_problem():
    """ITO: the small approximately sparse problem (tests/ito_problems.py)."""
    from ito_problems import SMALL_D, SMALL_X

    return SMALL_D, SMALL_X


@pytest.fixture(scope="module")
def tiny():
    """Steering: the tiny random-init Llama twin (a test file's own `tiny` fixture overrides it)."""
    from interp import models

    return models.load("tiny-llama")


@pytest.fixture(scope="module")
def smol():
    """Steering: SmolLM2-135M, the steering page's model."""
    from interp import models

    return models.load("smollm2-135m", progress=False)


@pytest.fixture(scope="module")
def cat_split():
    """autointerp: a latent firing on " cat" in random text, its examples and split
    (tests/autointerp_helpers.py)."""
    from autointerp_helpers import corpus, word_latent
    from interp import autointerp as A

    toks = corpus(seed=1)
    ex = A.select_examples(word_latent(toks, " cat"), toks, latent=0, n_top=20, n_random=10)
    return toks, ex, A.split(ex, n_explain=5, n_score_top=10, n_score_random=10)
