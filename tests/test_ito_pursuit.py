"""interp.ito.pursuit: gradient and matching pursuit against known sparse solutions, the exact
line search, fixed-shape batching, frontiers and input checks."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from scipy.optimize import minimize_scalar

from interp import ito
from ito_problems import fvu_of, frontiers, gp, per_example_fvu


def test_gradient_pursuit_recovers_known_support(synthetic):
    D, X, bias, support = synthetic
    codes = ito.gradient_pursuit(D, X, 5, bias=bias)
    idx, val = np.asarray(codes.indices), np.asarray(codes.values)
    found = [set(i[v > 0]) == set(s) for i, v, s in zip(idx, val, support)]
    assert np.mean(found) >= 0.95
    # with refinement steps, every recovered support reproduces x (hence its codes) exactly
    refined = ito.gradient_pursuit(D, X, 5, bias=bias, n_iterations=60, precision="highest")
    rel_err = np.sum((X - np.asarray(refined.decode(D, bias))) ** 2, -1) / np.sum(
        (X - bias) ** 2, -1)
    assert np.all(rel_err[np.asarray(found)] < 1e-8)
    # forgetting the bias breaks recovery: the test can fail
    no_bias = ito.gradient_pursuit(D, X, 5)
    assert fvu_of(X, no_bias, D, bias) > 10 * fvu_of(X, codes, D, bias)


def test_matching_pursuit_and_omp_recover_known_support(synthetic):
    D, X, bias, support = synthetic
    for codes in (ito.matching_pursuit(D, X, 5, bias=bias), ito.nn_omp(D, X[:50], 5, bias=bias)):
        idx, val = np.asarray(codes.indices), np.asarray(codes.values)
        found = [set(i[v > 0]) == set(s) for i, v, s in zip(idx, val, support)]
        assert np.mean(found) >= 0.9


@pytest.mark.parametrize("support", ito.SUPPORT_MODES)
@pytest.mark.parametrize("max_topk", [1, 3])
def test_codes_nonnegative_and_at_most_k(small_problem, support, max_topk):
    D, X = small_problem
    codes = gp(8, support=support, max_topk=max_topk)
    dense = np.asarray(codes.to_dense(D.shape[0]))
    assert dense.shape == (X.shape[0], D.shape[0])
    assert np.all(dense >= 0)
    assert np.all(np.sum(dense > 0, axis=1) <= 8)
    assert np.mean(np.sum(dense > 0, axis=1)) > 6  # the budget is actually used
    assert np.all(np.asarray(codes.l0()) == np.sum(dense > 0, axis=1))  # exact: same codes
    gp_front, mp_front, omp_front = frontiers()
    for front in (gp_front, mp_front):
        vals = np.asarray(front.codes.values)
        assert np.all(vals >= 0)
        assert np.all(np.sum(vals > 0, axis=-1) <= front.ks[:, None])


def test_step_is_the_numerical_line_search_optimum(small_problem):
    D, X = small_problem
    Du, valid = jnp.asarray(D), jnp.ones(D.shape[0], bool)
    y = jnp.asarray(X[3])
    step = jax.jit(ito.gradient_pursuit_step)
    state = ito.init_state(y, 6, valid)
    for it in range(4):
        new, eta = step(state, Du, valid, y)
        # recompute the search direction the step used: the gradient on the enlarged support
        g = np.asarray(Du @ state.residual)
        support = np.asarray(new.indices)[np.asarray(new.used)]
        u = np.zeros(D.shape[0])
        u[support] = g[support]
        alpha = np.asarray(ito.to_dense(ito.SparseCodes(state.indices, state.values), D.shape[0]))

        def loss(t, alpha=alpha, u=u):
            return float(np.sum((np.asarray(y, np.float64) - (alpha + t * u) @ D) ** 2))

        best = minimize_scalar(loss, bounds=(0.0, 10.0), method="bounded",
                               options={"xatol": 1e-10})
        assert float(eta) == pytest.approx(best.x, rel=1e-3), it
        assert loss(float(eta)) <= min(loss(float(eta) * 1.05), loss(float(eta) * 0.95))
        state = new


def test_exact_step_beats_fixed_steps(small_problem):
    D, X = small_problem
    exact = fvu_of(X, gp(8), D)
    for eta in (0.1, 0.5, 1.0, 2.0):
        assert exact < fvu_of(X, gp(8, step=eta), D)


def test_gradient_pursuit_no_worse_than_mp_and_close_to_omp(small_problem):
    D, X = small_problem
    gp_front, mp_front, omp_front = frontiers()
    for k in (2, 4, 8):
        g = per_example_fvu(X, gp_front.at(k), D)
        m = per_example_fvu(X, mp_front.at(k), D)
        o = per_example_fvu(X, omp_front.at(k), D)
        assert g.mean() <= m.mean() * 1.001, k
        assert np.mean(g <= m + 1e-5) >= 0.75, k
        assert o.mean() <= g.mean() * 1.001, k  # the exact refit is the better approximation
        assert g.mean() <= 1.1 * o.mean(), (k, g.mean(), o.mean())


def test_batched_equals_per_example(small_problem):
    D, X = small_problem
    for options in ({}, {"max_topk": 3, "support": "nonzero"}):
        batched = gp(8, **options)
        for b in range(4):
            one = ito.gradient_pursuit(D, X[b:b + 1], 8, precision="highest", **options)
            # compared as dense codes: an unused slot's index is meaningless, and one matmul row
            # against a batch of 40 sums in another order (float32)
            np.testing.assert_allclose(np.asarray(one.to_dense(192)[0]),
                                       np.asarray(batched.to_dense(192)[b]), rtol=1e-5, atol=1e-6)
    # leading batch dims are preserved
    codes = ito.gradient_pursuit(D, X.reshape(5, 8, -1), 8, precision="highest")
    assert codes.indices.shape == (5, 8, 8)
    np.testing.assert_allclose(np.asarray(codes.to_dense(192)).reshape(40, 192),
                               np.asarray(gp(8).to_dense(192)), atol=1e-6)
    # dense (accelerator) and gathered (CPU) support updates agree
    np.testing.assert_allclose(np.asarray(gp(8, dense_updates=True, kernel="xla").to_dense(192)),
                               np.asarray(gp(8, dense_updates=False, kernel="xla").to_dense(192)),
                               atol=1e-5)


def test_frontier_matches_separate_runs(small_problem):
    D, X = small_problem
    front, mp_front, omp_front = frontiers()
    assert list(front.ks) == list(range(1, 9))
    for k in (3, 8):
        np.testing.assert_allclose(np.asarray(front.at(k).to_dense(192)),
                                   np.asarray(gp(k).to_dense(192)), atol=1e-5)
    errors = [fvu_of(X, front.at(k), D) for k in front.ks]
    assert np.all(np.diff(errors) < 0)  # each atom helps (exact line search)
    wide = ito.gradient_pursuit(D, X, 8, max_topk=3, frontier=True, precision="highest")
    assert list(wide.ks) == [3, 6, 8]
    np.testing.assert_allclose(np.asarray(wide.at(8).to_dense(192)),
                               np.asarray(gp(8, max_topk=3).to_dense(192)), atol=1e-5)
    mp3 = ito.matching_pursuit(D, X, 3, precision="highest")
    np.testing.assert_allclose(np.asarray(mp_front.at(3).to_dense(192)),
                               np.asarray(mp3.to_dense(192)), atol=1e-6)
    # float64 NNLS, row by row, the same operations in both runs
    np.testing.assert_allclose(omp_front.at(2).values[:5, :2], ito.nn_omp(D, X[:5], 2).values,
                               rtol=1e-7)
    with pytest.raises(ValueError, match="not on this frontier"):
        wide.at(5)


def test_max_topk_trades_quality_for_iterations(small_problem):
    D, X = small_problem
    fvu = {m: fvu_of(X, gp(8, max_topk=m), D) for m in (1, 3)}
    assert fvu[1] < fvu[3]  # 3 iterations instead of 8: coarser codes
    # at a fixed number of iterations (3), adding 3 atoms per iteration beats adding 1
    assert fvu[3] < fvu_of(X, gp(3), D)


def test_nonunit_dictionary_gives_same_reconstruction(small_problem):
    D, X = small_problem
    scales = np.random.default_rng(2).uniform(0.2, 3.0, D.shape[0]).astype(np.float32)
    Ds = D * scales[:, None]
    Ds[5] = 0.0  # a dead atom is never used
    unit = ito.gradient_pursuit(np.where(np.arange(192)[:, None] == 5, 0.0, D), X, 8,
                                precision="highest")
    scaled = ito.gradient_pursuit(Ds, X, 8, precision="highest")
    np.testing.assert_allclose(np.asarray(scaled.decode(Ds)), np.asarray(unit.decode(D)),
                               atol=1e-4)
    assert not np.any(np.asarray(scaled.to_dense(192))[:, 5])


def test_incremental_residual_is_exact_without_clipping(synthetic):
    D, X, bias, _ = synthetic
    exact = ito.gradient_pursuit(D, X, 5, bias=bias)
    inc = ito.gradient_pursuit(D, X, 5, bias=bias, residual="incremental")
    assert abs(fvu_of(X, exact, D, bias) - fvu_of(X, inc, D, bias)) < 1e-3


def test_bad_input_errors(small_problem):
    D, X = small_problem
    with pytest.raises(ValueError, match="k must be"):
        ito.gradient_pursuit(D, X, 0)
    with pytest.raises(ValueError, match="exceeds"):
        ito.gradient_pursuit(D, X, 193)
    with pytest.raises(ValueError, match="unknown support"):
        ito.gradient_pursuit(D, X, 3, support="sometimes")
    with pytest.raises(ValueError, match="max_topk"):
        ito.gradient_pursuit(D, X, 3, max_topk=4)
    with pytest.raises(ValueError, match="step"):
        ito.gradient_pursuit(D, X, 3, step=-1.0)
    with pytest.raises(ValueError, match=r"x must be \[..., d\]"):
        ito.gradient_pursuit(D, X[:, :5], 3)
    with pytest.raises(ValueError, match="NaN"):
        ito.gradient_pursuit(D, np.full_like(X, np.nan), 3)
    with pytest.raises(ValueError, match="unknown precision"):
        ito.gradient_pursuit(D, X, 3, precision="fp8")
    with pytest.raises(ValueError, match="unknown ITO method"):
        ito.encoder(D, 3, method="lasso")
    with pytest.raises(ValueError, match="W_dec"):
        ito.encoder({"W_enc": D.T}, 3)
