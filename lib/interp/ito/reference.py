"""Non-negative orthogonal matching pursuit (OMP with NNLS on the support): the slow, exact
reference the fast pursuits are checked against.

OMP (Pati, Rezaiifar & Krishnaprasad 1993) selects atoms like matching pursuit but refits all
coefficients on the support after each selection; with the non-negativity constraint the refit is
non-negative least squares (Lawson & Hanson; `scipy.optimize.nnls`), as in non-negative OMP
(Bruckstein, Elad & Zibulevsky 2008). Gradient pursuit approximates this refit with one gradient
step per iteration. Plain numpy, one example at a time: not for accelerators.
"""

from __future__ import annotations

import numpy as np
from scipy.optimize import nnls

from .pursuit import Frontier, SparseCodes


def nn_omp(dictionary, x, k: int, *, bias=None, frontier: bool = False):
    """Non-negative OMP codes for x [..., d]; same output layout as `gradient_pursuit`
    (`SparseCodes` with [..., k] slots, or a `Frontier` with the codes after every k' <= k)."""
    D = np.asarray(dictionary, np.float64)
    X = np.asarray(x, np.float64)
    if D.ndim != 2 or X.shape[-1:] != D.shape[1:]:
        raise ValueError(f"need dictionary [n_atoms, d] and x [..., d]; got {D.shape}, {X.shape}")
    if isinstance(k, bool) or not isinstance(k, (int, np.integer)) or not 1 <= k <= D.shape[0]:
        raise ValueError(f"k must be an int in [1, n_atoms={D.shape[0]}]; got {k!r}")
    if not np.all(np.isfinite(X)):
        raise ValueError("x contains NaN or inf")
    if bias is not None:
        X = X - np.asarray(bias, np.float64)
    lead = X.shape[:-1]
    Y = X.reshape(-1, D.shape[1])
    norms = np.linalg.norm(D, axis=1)
    valid = norms > 0
    Du = np.where(valid[:, None], D / np.where(valid, norms, 1.0)[:, None], 0.0)
    idx = np.zeros((k, Y.shape[0], k), np.int32)  # [snapshot, example, slot]
    val = np.zeros((k, Y.shape[0], k), np.float64)
    for b, y in enumerate(Y):
        support: list[int] = []
        coef = np.zeros(0)
        r = y.copy()
        for t in range(k):
            g = Du @ r
            g[~valid] = -np.inf
            g[support] = -np.inf
            i = int(np.argmax(g))
            if g[i] > 0:
                support.append(i)
                coef, _ = nnls(Du[support].T, y)
                r = y - coef @ Du[support]
            idx[t:, b, :len(support)] = support
            val[t:, b, :len(support)] = coef / norms[support]
            if g[i] <= 0:
                break
    idx = idx.reshape(k, *lead, k)
    val = val.reshape(k, *lead, k)
    if frontier:
        return Frontier(np.arange(1, k + 1), SparseCodes(idx, val))
    return SparseCodes(idx[-1], val[-1])
