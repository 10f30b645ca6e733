"""interp.ito.shrinkage: the per-latent rescale-and-shift control recovers known shrinkage."""

import jax.numpy as jnp
import numpy as np
import pytest

from interp import ito
from ito_problems import unit_rows


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
