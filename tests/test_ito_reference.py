"""interp.ito.reference: the non-negative OMP reference is the NNLS optimum on its support."""

import numpy as np
from scipy.optimize import nnls

from interp import ito


def test_omp_is_the_nnls_optimum_on_its_support(small_problem):
    D, X = small_problem
    codes = ito.nn_omp(D, X[:5], 4)
    for x, idx, val in zip(X[:5], codes.indices, codes.values):
        ref, _ = nnls(D[idx].T.astype(np.float64), x.astype(np.float64))
        np.testing.assert_allclose(val, ref, atol=1e-8)
