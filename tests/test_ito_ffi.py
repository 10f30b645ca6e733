"""gradient_pursuit(kernel="ffi") (issue #16): the C++ iteration kernel gives the XLA pursuit's
codes (same atoms, values to float32 rounding) in every mode, batched, vmapped and on a
frontier, and refuses what it does not implement with a clear error."""

import jax
import numpy as np
import pytest

from interp import ito
from interp.sae import sparse_ffi
from ito_problems import fvu_of

if not sparse_ffi.available():  # pragma: no cover - g++ is on the README's machine
    pytest.skip("the FFI kernels do not build here (no g++?)", allow_module_level=True)


def _same_codes(a, b, n_atoms):
    np.testing.assert_allclose(np.asarray(a.to_dense(n_atoms)), np.asarray(b.to_dense(n_atoms)),
                               rtol=1e-4, atol=1e-5)


@pytest.mark.parametrize("options", [{}, {"support": "nonzero"}, {"residual": "incremental"},
                                     {"step": 0.3}, {"n_iterations": 14}])
def test_ffi_pursuit_equals_the_xla_pursuit(small_problem, options):
    D, X = small_problem
    xla = ito.gradient_pursuit(D, X, 8, precision="highest", kernel="xla", **options)
    ffi = ito.gradient_pursuit(D, X, 8, precision="highest", kernel="ffi", **options)
    _same_codes(ffi, xla, D.shape[0])
    assert np.all(np.asarray(ffi.values) >= 0) and np.all(np.asarray(ffi.l0()) <= 8)
    assert np.mean(np.asarray(ffi.l0())) > 4  # a real pursuit, not empty codes


def test_ffi_pursuit_recovers_the_known_support(synthetic):
    D, X, bias, support = synthetic
    codes = ito.gradient_pursuit(D, X, 5, bias=bias, kernel="ffi")
    idx, val = np.asarray(codes.indices), np.asarray(codes.values)
    found = [set(i[v > 0]) == set(s) for i, v, s in zip(idx, val, support)]
    assert np.mean(found) >= 0.95
    assert fvu_of(X, codes, D, bias) == pytest.approx(
        fvu_of(X, ito.gradient_pursuit(D, X, 5, bias=bias, kernel="xla"), D, bias), rel=1e-3)


def test_ffi_frontier_leading_dims_and_vmap(small_problem):
    D, X = small_problem
    front = ito.gradient_pursuit(D, X, 8, frontier=True, precision="highest", kernel="ffi")
    want = ito.gradient_pursuit(D, X, 8, frontier=True, precision="highest", kernel="xla")
    assert list(front.ks) == list(want.ks)
    for k in (1, 5, 8):
        _same_codes(front.at(k), want.at(k), D.shape[0])
    codes = ito.gradient_pursuit(D, X.reshape(5, 8, -1), 8, kernel="ffi")
    assert codes.indices.shape == (5, 8, 8)
    # vmapped over inputs (dictionary shared) and over dictionaries (inputs shared)
    run = lambda D_, X_: ito.gradient_pursuit(D_, X_, 8, kernel="ffi").to_dense(D.shape[0])  # noqa: E731
    per_x = jax.vmap(run, (None, 0))(D, X.reshape(5, 8, -1))
    np.testing.assert_allclose(np.asarray(per_x).reshape(40, -1),
                               np.asarray(codes.to_dense(D.shape[0])).reshape(40, -1),
                               rtol=1e-4, atol=1e-5)
    D2 = np.stack([D, D[::-1].copy()])
    per_D = jax.vmap(run, (0, None))(D2, X)
    for i in range(2):
        np.testing.assert_allclose(np.asarray(per_D[i]), np.asarray(run(D2[i], X)),
                                   rtol=1e-4, atol=1e-5)


def test_ffi_kernel_refuses_what_it_does_not_do_and_is_the_cpu_default(small_problem):
    D, X = small_problem
    assert ito.pursuit._kernel(None, 1) == "ffi" and ito.pursuit._kernel(None, 3) == "xla"
    assert ito.pursuit._kernel(None, 1, dense_updates=True) == "xla"
    with pytest.raises(ValueError, match="max_topk"):
        ito.gradient_pursuit(D, X, 8, max_topk=2, kernel="ffi")
    with pytest.raises(ValueError, match="unknown kernel"):
        ito.gradient_pursuit(D, X, 8, kernel="numba")
