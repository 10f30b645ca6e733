"""Inference-time optimisation (ITO): sparse codes for a fixed dictionary by greedy pursuit,
in place of an SAE's encoder (Lewis Smith, GDM Progress Update #1; Gated SAE paper App. A).

Example::

    from interp import ito
    codes = ito.gradient_pursuit(sae.params["W_dec"], x, k=32, bias=sae.params["b_dec"])
    x_hat = codes.decode(sae.params["W_dec"], sae.params["b_dec"])     # codes.l0() <= 32
    front = ito.gradient_pursuit(W_dec, x, k=64, bias=b_dec, frontier=True)
    front.at(8)                                   # the k=8 codes, from the same single run
    ref = ito.nn_omp(W_dec, x[:64], k=8)          # slow exact-refit reference (numpy)

    enc = ito.encoder(sae, k=32)                  # SAE-shaped encode/decode, jit/vmap-able
    f = enc.encode(x)                             # [..., d_sae], >= 0, <= 32 non-zeros
    hooks.splice("resid_pre", ito.encode, ito.decode, enc, layers=12)

    rs = ito.fit_rescale_shift(((sae.encode(xb), xb) for xb in batches), W_dec, b_dec)
    controlled = ito.ShrinkageControlled(sae, rs)  # the shrinkage-only fix of the encoder

Dictionaries are [n_atoms, d] with one atom per row (an SAE's W_dec). The ITO page's
measurements and claim verdicts live in `interp.experiments.ito`, which imports this package
(never the other way round: the algorithms do not depend on models, data or claims).
"""

from .encoder import METHODS, ITOEncoder, decode, encode, encoder
from .pursuit import (RESIDUAL_MODES, SUPPORT_MODES, Frontier, PursuitState, SparseCodes,
                      decode_sparse, gradient_pursuit, gradient_pursuit_step, init_state,
                      line_search_step, matching_pursuit, matching_pursuit_step, to_dense)
from .reference import nn_omp
from .shrinkage import (RescaleShift, ShrinkageControlled, apply_rescale_shift,
                        fit_rescale_shift)

__all__ = [
    "METHODS", "RESIDUAL_MODES", "SUPPORT_MODES", "Frontier", "ITOEncoder", "PursuitState",
    "RescaleShift", "ShrinkageControlled", "SparseCodes", "apply_rescale_shift", "decode",
    "decode_sparse", "encode", "encoder", "fit_rescale_shift", "gradient_pursuit",
    "gradient_pursuit_step", "init_state", "line_search_step", "matching_pursuit",
    "matching_pursuit_step", "nn_omp", "to_dense",
]
