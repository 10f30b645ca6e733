"""The steering-vector variants compared in the post (GDM Progress Update #1, snippet 1), all [P, d] and
all added at the same front positions and layer:

    orig        h_A                                     ActAdd's vector
    recon       W_dec^T delta_f                         its SAE reconstruction
    recon+err   recon + error                           == orig (a sanity check)
    single      alpha * d_k / ||d_k|| at one position   one feature, norm-matched to h_A there
    handpicked  W_dec^T (delta_f * 1_S)                  only the concept features S
    pruned      h_A - W_dec^T (delta_f * 1_R)            the vector minus irrelevant features R
    ablate(i)   h_A - delta_f[:, i] d_i                  for the importance ranking
"""

from __future__ import annotations

from collections.abc import Iterable

import numpy as np

from interp.steering.decompose import Decomposition


def orig(dec: Decomposition) -> np.ndarray:
    return dec.vector


def recon(dec: Decomposition) -> np.ndarray:
    return dec.recon


def recon_plus_error(dec: Decomposition) -> np.ndarray:
    return dec.recon + dec.error


def single(dec: Decomposition, feature: int, position: int | None = None) -> np.ndarray:
    """The unit decoder direction of `feature` at `position` (default: where |delta_f| of the
    feature is largest), scaled to the norm of h_A there: at coefficient c it has the same
    norm as c * h_A at that position, so coefficient sweeps of `single` and `orig` are matched
    in strength at the concept position."""
    if position is None:
        position = int(np.argmax(np.abs(dec.delta_f[:, feature])))
    d = dec.w_dec[feature]
    out = np.zeros_like(dec.vector)
    sign = 1.0 if dec.delta_f[position, feature] >= 0 else -1.0
    out[position] = sign * d / np.linalg.norm(d) * np.linalg.norm(dec.vector[position])
    return out


def handpicked(dec: Decomposition, features: Iterable[int]) -> np.ndarray:
    return dec.feature_vector(list(features))


def pruned(dec: Decomposition, irrelevant: Iterable[int]) -> np.ndarray:
    return dec.vector - dec.feature_vector(list(irrelevant))


def ablate(dec: Decomposition, feature: int) -> np.ndarray:
    return dec.vector - dec.feature_vector([feature])

