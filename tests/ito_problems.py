"""Shared ITO test problems: a known sparse dictionary problem and a small approximately
sparse one, with cached pursuit runs (each configuration compiles once per session)."""

import functools

import numpy as np

from interp import ito


def unit_rows(a):
    return a / np.linalg.norm(a, axis=1, keepdims=True)


def synthetic_problem():
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
