"""interp.metrics against hand-computed values and invariants."""

import jax.numpy as jnp
import numpy as np
import pytest

from interp import metrics


@pytest.fixture
def xs():
    rng = np.random.default_rng(0)
    x = rng.standard_normal((200, 8)) + 3.0  # a large mean: FVU must subtract it
    x_hat = 0.8 * x + 0.1 * rng.standard_normal(x.shape)
    return x, x_hat


def test_l0_counts_nonzeros():
    f = np.array([[0.0, 1.0, 2.0], [0.0, 0.0, 0.0], [3.0, -1.0, 0.5]])
    assert metrics.l0(f) == pytest.approx(5 / 3)


def test_mse_nmse_fvu_definitions(xs):
    x, x_hat = xs
    err = np.mean(np.sum((x - x_hat) ** 2, -1))
    assert metrics.mse(x, x_hat) == pytest.approx(err)
    assert metrics.normalized_mse(x, x_hat) == pytest.approx(err / np.mean(np.sum(x**2, -1)))
    var = np.mean(np.sum((x - x.mean(0)) ** 2, -1))
    assert metrics.fvu(x, x_hat) == pytest.approx(err / var)
    assert metrics.explained_variance(x, x_hat) == pytest.approx(1 - err / var)
    # predicting the mean gives FVU exactly 1; a perfect reconstruction gives 0
    assert metrics.fvu(x, np.broadcast_to(x.mean(0), x.shape)) == pytest.approx(1.0)
    assert metrics.fvu(x, x) == 0.0  # exact: x - x is exactly 0


def test_shrinkage_recovers_a_known_scale(xs):
    x, _ = xs
    assert metrics.shrinkage(x, 0.7 * x) == pytest.approx(0.7)
    assert metrics.relative_reconstruction_bias(x, 1.3 * x) == pytest.approx(1.3)


def test_density_dead_dense_and_histogram():
    f = np.zeros((100, 4))
    f[:50, 0] = 1.0   # density 0.5 (dense)
    f[:5, 1] = 2.0    # density 0.05
    f[:1, 2] = 1.0    # density 0.01; latent 3 never fires
    density = metrics.feature_density(f)
    np.testing.assert_allclose(density, [0.5, 0.05, 0.01, 0.0])
    assert metrics.dead_fraction(density) == 0.25
    assert metrics.dense_fraction(density, 0.1) == 0.25
    counts, edges, n_dead = metrics.density_histogram(density, bins=7)
    assert n_dead == 1 and counts.sum() == 3 and len(edges) == 8


def test_metrics_work_on_jax_arrays(xs):
    x, x_hat = xs
    got = metrics.fvu(jnp.asarray(x, jnp.float32), jnp.asarray(x_hat, jnp.float32))
    assert float(got) == pytest.approx(metrics.fvu(x, x_hat), rel=1e-4)


def test_max_cosine_similarity():
    true = np.eye(3)
    learned = np.array([[2.0, 0, 0], [0, 0, -1], [0, 1, 1]])
    np.testing.assert_allclose(metrics.max_cosine_similarity(learned, true),
                               [1.0, np.sqrt(0.5), np.sqrt(0.5)])
