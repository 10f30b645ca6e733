"""Shared helpers for the interp.steering tests: a random SAE and the comparison of greedy
continuations decoded by two differently compiled programs."""

import jax
import numpy as np

from interp.sae import SAEConfig, init_sae
from interp.steering import actadd


def random_sae(d, m, seed=0):
    return init_sae(jax.random.key(seed), SAEConfig(d_in=d, d_sae=m, architecture="relu"))


GREEDY = {"temperature": 0.0, "frequency_penalty": 0.0}
LOGIT_TIE = 1e-4  # float32 logits of order 1 from two differently compiled programs


def assert_same_greedy_tokens(want, got, next_logits):
    """Greedy continuations `want` and `got` of one prompt, decoded by two differently compiled
    programs, agree token by token; they may part only where the top two logits of
    `next_logits(prefix)` (the reference model after prompt + prefix) tie within rounding."""
    for i, (a, b) in enumerate(zip(want, got)):
        if a != b:
            z = next_logits(list(want[:i]))
            assert abs(z[a] - z[b]) < LOGIT_TIE, f"step {i}: {a} != {b}, logits {z[a]}, {z[b]}"
            return
    assert len(want) == len(got)


def steered_next_logits(model, site, ids, delta):
    """next_logits(prefix) of `model` steered by `delta` [P, d] at `site` (a full forward)."""
    hooks = actadd.steering_hooks(model, site, delta)
    return lambda prefix: np.asarray(model.forward([ids + prefix], hooks=hooks).logits[0, -1])
