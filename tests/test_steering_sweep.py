"""interp.steering.sweep: comparisons at matched cost."""

import numpy as np
import pytest

from interp.steering import sweep


def test_matched_comparison_interpolates_at_equal_cost():
    ref = {"cost": np.array([0.0, 1.0, 2.0]), "effect": np.array([0.0, 1.0, 2.0]),
           "effect_se": np.array([0.1, 0.1, 0.1]), "coeff": np.arange(3)}
    better = {"cost": np.array([0.5, 1.5, 3.0]), "effect": np.array([1.5, 2.5, 9.0]),
              "effect_se": np.array([0.1, 0.1, 0.1]), "coeff": np.arange(3)}
    out = sweep.matched_comparison(better, ref)  # one prompt: the per-prompt value is the mean
    assert out["n_matched"] == 2  # cost 3.0 is outside the reference's range
    assert out["difference"] == pytest.approx(1.0)
    np.testing.assert_allclose(out["per_prompt"], [1.0])
    none = sweep.matched_comparison({**better, "cost": np.array([5.0, 6.0, 7.0])}, ref)
    assert none["n_matched"] == 0 and np.isnan(none["difference"])
