"""interp.models.sampling: the top-k nucleus fast path keeps the full sort's nucleus."""

import jax
import jax.numpy as jnp
import numpy as np

from interp.models import sampling


def test_nucleus_candidates_match_full_sort():
    """interp.models.sampling: the top-k fast path keeps the same nucleus as the full sort."""
    logits = jnp.concatenate([jnp.asarray([[6.0, 5.5, 5.0, 4.0]]),
                              jnp.zeros((1, 3000))], axis=1)
    keys = jax.random.split(jax.random.key(0), 3000)
    fast = jax.vmap(lambda k: sampling.sample_logits(logits, k, temperature=1.0, top_p=0.5,
                                                      greedy=False, candidates=64))(keys)
    full = jax.vmap(lambda k: sampling._nucleus_full_sort(logits, None, None, k, 0.5))(keys)
    fast, full = np.asarray(fast)[:, 0], np.asarray(full)[:, 0]
    assert set(fast) == set(full)
    np.testing.assert_allclose(np.bincount(fast, minlength=4)[:4] / 3000,
                               np.bincount(full, minlength=4)[:4] / 3000, atol=0.04)
    # a flat distribution is not covered by 64 candidates: the full sort runs (nucleus > 64)
    flat = jnp.zeros((1, 3000))
    wide = jax.vmap(lambda k: sampling.sample_logits(flat, k, temperature=1.0, top_p=0.5,
                                                     greedy=False, candidates=64))(keys[:500])
    assert len(set(np.asarray(wide)[:, 0])) > 64
