"""Ground-truth recovery metrics: checked on dictionaries whose answer is known exactly."""

import numpy as np
import pytest

from interp.toy import recovery


def _random_unit_rows(rng, n, d):
    a = rng.normal(size=(n, d))
    return a / np.linalg.norm(a, axis=1, keepdims=True)


def test_permuted_rescaled_superset_is_perfect_recovery():
    rng = np.random.default_rng(0)
    true = _random_unit_rows(rng, 6, 10)
    extra = _random_unit_rows(rng, 4, 10)
    learned = np.concatenate([3.0 * true[::-1], extra])  # permuted, rescaled, extra latents
    assert recovery.mean_max_cosine(true, learned) == pytest.approx(1.0)
    assert recovery.fraction_recovered(true, learned, 0.99) == 1.0
    np.testing.assert_allclose(recovery.max_cosine_per_feature(true, learned), 1.0)


def test_cosine_is_signed_so_negated_directions_do_not_count():
    true = np.eye(3)
    assert recovery.mean_max_cosine(true, -np.eye(3)) == pytest.approx(0.0)  # best is 0 (others)
    assert recovery.mean_max_cosine(true[:1], -true[:1]) == pytest.approx(-1.0)


def test_known_angle_gives_its_cosine_and_threshold_splits():
    true = np.array([[1.0, 0.0], [0.0, 1.0]])
    theta = np.deg2rad([10.0, 40.0])  # learned dirs 10 deg off feature 0, 40 deg off... both
    learned = np.stack([np.cos(theta), np.sin(theta)], axis=1)
    per = recovery.max_cosine_per_feature(true, learned)
    np.testing.assert_allclose(per, [np.cos(np.deg2rad(10)), np.sin(np.deg2rad(40))])
    assert recovery.fraction_recovered(true, learned, 0.9) == 0.5
    assert recovery.mean_max_cosine(true, learned) == pytest.approx(per.mean())


def test_bad_inputs_are_named():
    with pytest.raises(ValueError, match="zero-norm rows"):
        recovery.mean_max_cosine(np.zeros((2, 3)), np.eye(3))
    with pytest.raises(ValueError, match="dim"):
        recovery.mean_max_cosine(np.eye(3), np.eye(4))
    with pytest.raises(ValueError, match="NaN"):
        recovery.mean_max_cosine(np.full((1, 3), np.nan), np.eye(3))
    with pytest.raises(ValueError, match="threshold"):
        recovery.fraction_recovered(np.eye(3), np.eye(3), 1.5)
    with pytest.raises(ValueError, match="2-D"):
        recovery.mean_max_cosine(np.ones(3), np.eye(3))


def test_nonzero_rows_masks_dropped_features():
    W = np.array([[1.0, 0.0], [0.0, 0.0], [0.3, 0.4]])
    assert recovery.nonzero_rows(W, 0.1).tolist() == [True, False, True]


def test_latent_alignment_names_the_basis_direction():
    basis = np.eye(4)
    labels = ["tokens:a", "tokens:b", "one", "frac_prevs"]
    learned = np.array([[0, 0, 0, 2.0], [1.0, 1.0, 0, 0], [0.1, 0, 0, 1.0]])
    al = recovery.latent_alignment(learned, basis, labels)
    assert al.best_label[0] == "frac_prevs" and al.best_label[2] == "frac_prevs"
    assert al.best_cosine[1] == pytest.approx(1 / np.sqrt(2))
    assert al.fraction_aligned(0.9) == pytest.approx(2 / 3)
    assert al.labels_covered(0.9) == {"frac_prevs"}
    with pytest.raises(ValueError, match="labels"):
        recovery.latent_alignment(learned, basis, labels[:3])


def test_code_correlation_finds_the_latent_that_tracks_each_feature():
    rng = np.random.default_rng(1)
    x = rng.uniform(size=(500, 3))
    f = np.stack([np.zeros(500), 2 * x[:, 2] + 1, x[:, 0] ** 2, rng.normal(size=500)], axis=1)
    corr = recovery.code_correlation(x, f)
    assert corr[2] == pytest.approx(1.0)
    assert 0.95 < corr[0] < 1.0       # a monotone but non-linear code
    assert corr[1] < 0.3              # nothing tracks feature 1
