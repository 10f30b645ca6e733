"""Tests for interp.ito: pursuits against known sparse solutions, the exact line search, the
NNLS-OMP reference, fixed-shape batching, frontiers, the encoder adapter and shrinkage control."""

import functools
import json
import subprocess
import sys

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from scipy.optimize import minimize_scalar

from interp import hooks, ito, models, sae


def unit_rows(a):
    return a / np.linalg.norm(a, axis=1, keepdims=True)


@pytest.fixture(scope="module")
def synthetic():
    """Known dictionary (256 random unit atoms in R^64) and known 5-sparse positive codes."""
    rng = np.random.default_rng(0)
    n, d, batch, s = 256, 64, 200, 5
    D = unit_rows(rng.normal(size=(n, d))).astype(np.float32)
    support = np.stack([rng.choice(n, s, replace=False) for _ in range(batch)])
    A = np.zeros((batch, n), np.float32)
    np.put_along_axis(A, support, rng.uniform(1.0, 2.0, (batch, s)).astype(np.float32), axis=1)
    bias = rng.normal(size=d).astype(np.float32)
    return D, A @ D + bias, bias, support


def _small_problem():
    """Approximately sparse targets (about 12 active atoms of 192 in R^48, plus noise): the
    regime where pursuits trade error for L0, at an SAE-like k / d <= 1/6."""
    rng = np.random.default_rng(1)
    n, d, batch = 192, 48, 40
    D = unit_rows(rng.normal(size=(n, d))).astype(np.float32)
    A = np.where(rng.random((batch, n)) < 12 / n, rng.exponential(1.0, (batch, n)), 0.0)
    X = (A @ D + 0.3 * rng.normal(size=(batch, d))).astype(np.float32)
    return D, X


SMALL_D, SMALL_X = _small_problem()


@pytest.fixture(scope="module")
def small_problem():
    return SMALL_D, SMALL_X


@functools.cache
def gp(k, **options):
    """Gradient pursuit on the small problem, shared between tests (each config compiles once)."""
    return ito.gradient_pursuit(SMALL_D, SMALL_X, k, precision="highest", **options)


@functools.cache
def frontiers(k_max=8):
    return (ito.gradient_pursuit(SMALL_D, SMALL_X, k_max, frontier=True, precision="highest"),
            ito.matching_pursuit(SMALL_D, SMALL_X, k_max, frontier=True, precision="highest"),
            ito.nn_omp(SMALL_D, SMALL_X, k_max, frontier=True))


def fvu_of(X, codes, D, bias=None):
    x_hat = np.asarray(codes.decode(D, bias))
    return float(np.sum((X - x_hat) ** 2) / np.sum((X - X.mean(0)) ** 2))


def per_example_fvu(X, codes, D):
    return np.sum((X - np.asarray(codes.decode(D))) ** 2, axis=-1)


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
    state = ito.init_state(y, 6)
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


def test_omp_is_the_nnls_optimum_on_its_support(small_problem):
    D, X = small_problem
    from scipy.optimize import nnls
    codes = ito.nn_omp(D, X[:5], 4)
    for x, idx, val in zip(X[:5], codes.indices, codes.values):
        ref, _ = nnls(D[idx].T.astype(np.float64), x.astype(np.float64))
        np.testing.assert_allclose(val, ref, atol=1e-8)


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
    np.testing.assert_allclose(np.asarray(gp(8, dense_updates=True).to_dense(192)),
                               np.asarray(gp(8, dense_updates=False).to_dense(192)), atol=1e-5)


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


def test_encoder_adapter_matches_pursuit_and_jits(small_problem):
    D, X = small_problem
    bias = np.linspace(-1, 1, D.shape[1]).astype(np.float32)
    enc = ito.encoder({"W_dec": D, "b_dec": bias}, k=8, precision="highest")
    f = enc.encode(X)
    direct = ito.gradient_pursuit(D, X, 8, bias=bias, precision="highest")
    np.testing.assert_allclose(np.asarray(f), np.asarray(direct.to_dense(192)), atol=1e-6)
    np.testing.assert_allclose(np.asarray(enc.decode(f)), np.asarray(enc(X)), atol=1e-5)
    jitted = jax.jit(ito.encode)(enc, X)  # the encoder is a pytree: jit/vmap over its arrays
    np.testing.assert_allclose(np.asarray(jitted), np.asarray(f), atol=1e-6)
    mp = enc.replace(method="matching_pursuit")
    mp_direct = ito.matching_pursuit(D, X, 8, bias=bias, precision="highest")
    np.testing.assert_allclose(np.asarray(mp.encode(X)), np.asarray(mp_direct.to_dense(192)),
                               atol=1e-6)


def test_encoder_from_sae():
    cfg = sae.SAEConfig(d_in=16, d_sae=64)
    model = sae.init_sae(jax.random.PRNGKey(0), cfg)
    model = type(model)({**model.params, "b_dec": jnp.full((16,), 0.5)}, model.config)
    enc = ito.encoder(model, k=4)
    x = jax.random.normal(jax.random.PRNGKey(1), (10, 16))
    f = enc.encode(x)
    assert f.shape == model.encode(x).shape
    # ITO codes decode through the SAE's own decoder
    np.testing.assert_allclose(np.asarray(model.decode(f)), np.asarray(enc.decode(f)), atol=1e-5)


def test_splice_into_model():
    m = models.load("tiny-llama")
    d = m.cfg.d_model
    tokens = jnp.asarray([[1, 5, 9, 33, 7, 70, 2, 11]])
    clean = m.forward(tokens, hooks.capture("resid_pre", layers=2))
    x = clean.captures["resid_pre"]
    x = x.reshape(-1, *x.shape[-2:])[-1] if x.ndim == 4 else x  # [B, T, d]
    # a complete +/- orthonormal dictionary with k = d reconstructs exactly: logits unchanged
    Q, _ = np.linalg.qr(np.random.default_rng(3).normal(size=(d, d)))
    full = ito.encoder(np.concatenate([Q.T, -Q.T]).astype(np.float32), k=d, precision="highest")
    out = m.forward(tokens, hooks.splice("resid_pre", ito.encode, ito.decode, full, layers=2))
    # tolerance: on GPU the model's own TF32 matmuls differ between compiled programs by ~1e-3
    tol = 1e-4 if jax.default_backend() == "cpu" else 3e-3
    np.testing.assert_allclose(np.asarray(out.logits), np.asarray(clean.logits), atol=tol)
    # a lossy dictionary (the + half only; zero atoms are never used; same shapes, so no
    # recompile): splicing equals replacing the site by the ITO reconstruction
    half = np.concatenate([Q.T, np.zeros_like(Q)]).astype(np.float32)
    lossy = ito.encoder(half, k=d, precision="highest")
    spliced = m.forward(tokens, hooks.splice("resid_pre", ito.encode, ito.decode, lossy, layers=2))
    replaced = m.forward(tokens, hooks.replace("resid_pre", lossy(x), layers=2))
    np.testing.assert_allclose(np.asarray(spliced.logits), np.asarray(replaced.logits), atol=tol)
    assert np.max(np.abs(np.asarray(spliced.logits) - np.asarray(clean.logits))) > 100 * tol


def test_rescale_shift_recovers_known_shrinkage():
    rng = np.random.default_rng(4)
    n, d = 32, 24
    W = unit_rows(rng.normal(size=(n, d))).astype(np.float32)
    b_dec = rng.normal(size=d).astype(np.float32)
    true = np.where(rng.random((3000, n)) < 0.15, rng.uniform(0.5, 2.0, (3000, n)), 0.0)
    X = (true @ W + b_dec).astype(np.float32)
    scale, shift = rng.uniform(1.2, 2.0, n), rng.uniform(-0.2, 0.2, n)
    # a "shrunk" encoder: active outputs are (true - shift) / scale
    f = np.where(true > 0, (true - shift) / scale, 0.0).astype(np.float32)
    batches = [(f[i:i + 1000], X[i:i + 1000]) for i in range(0, 3000, 1000)]
    rs = ito.fit_rescale_shift(batches, W, b_dec, progress=False)
    np.testing.assert_allclose(np.asarray(rs.scale), scale, rtol=1e-3)
    np.testing.assert_allclose(np.asarray(rs.shift), shift, atol=1e-3)
    fixed = np.asarray(rs(jnp.asarray(f)))
    np.testing.assert_allclose(fixed, true, atol=2e-3)
    # the wrapper keeps the SAE interface
    base = ito.encoder(W, k=4, bias=b_dec)
    wrapped = ito.ShrinkageControlled(base, rs)
    assert wrapped.encode(X[:3]).shape == (3, n)
    with pytest.raises(ValueError, match="no batches"):
        ito.fit_rescale_shift([], W, b_dec, progress=False)


def test_rescale_shift_never_firing_latent_stays_identity():
    rng = np.random.default_rng(5)
    W = unit_rows(rng.normal(size=(8, 6))).astype(np.float32)
    f = np.abs(rng.normal(size=(500, 8))).astype(np.float32)
    f[:, 3] = 0.0
    X = (f * 1.5) @ W
    rs = ito.fit_rescale_shift([(f, X)], W, np.zeros(6, np.float32), progress=False)
    assert float(rs.scale[3]) == pytest.approx(1.0, abs=1e-3)
    assert float(rs.shift[3]) == pytest.approx(0.0, abs=1e-3)
    assert np.isfinite(np.asarray(rs.scale)).all()


def test_algorithm_package_does_not_import_the_experiments_or_the_models():
    """`interp.ito` is the algorithms only: the ITO page's wiring (interp.experiments.ito, once
    interp.ito.experiments), the models, the claims and the data must not load with it."""
    code = ("import json, sys, interp.ito; "
            "print(json.dumps(sorted(m for m in sys.modules if m.startswith('interp.'))))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    loaded = set(json.loads(out.stdout))
    assert loaded == {"interp.ito", "interp.ito.encoder", "interp.ito.pursuit",
                      "interp.ito.reference", "interp.ito.shrinkage"}, loaded
