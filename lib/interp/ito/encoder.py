"""ITO as a drop-in SAE encoder: a pytree with the SAE's `encode(x) -> f` / `decode(f) -> x_hat`
interface, so notebooks can swap an SAE's encoder for a pursuit on its decoder, and splice it
into a model with `hooks.splice(site, ito.encode, ito.decode, encoder)`."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass

import jax
import jax.numpy as jnp

from .pursuit import PRECISIONS, SUPPORT_MODES, gradient_pursuit, matching_pursuit

METHODS = ("gradient_pursuit", "matching_pursuit")


@jax.tree_util.register_pytree_node_class
@dataclass(frozen=True)
class ITOEncoder:
    """Sparse codes by pursuit on a fixed dictionary (rows = atoms, e.g. an SAE's W_dec).

    `dictionary` and `bias` are leaves (jit/vmap see arrays); the pursuit settings are static."""

    dictionary: jax.Array  # [n_atoms, d]
    bias: jax.Array  # [d]
    k: int
    method: str = "gradient_pursuit"
    max_topk: int = 1
    support: str = "persistent"
    precision: str | None = None

    def tree_flatten(self):
        return (self.dictionary, self.bias), (self.k, self.method, self.max_topk, self.support,
                                              self.precision)

    @classmethod
    def tree_unflatten(cls, aux, children):
        return cls(*children, *aux)

    def sparse_codes(self, x):
        """Codes in slot form ([..., k] indices and values)."""
        if self.method == "gradient_pursuit":
            return gradient_pursuit(self.dictionary, x, self.k, bias=self.bias,
                                    max_topk=self.max_topk, support=self.support,
                                    precision=self.precision)
        return matching_pursuit(self.dictionary, x, self.k, bias=self.bias,
                                precision=self.precision)

    def encode(self, x):
        """Dense non-negative codes [..., n_atoms] with at most k non-zeros (the SAE shape)."""
        return self.sparse_codes(x).to_dense(self.dictionary.shape[0])

    def decode(self, f):
        """x_hat = f @ D + bias, as an SAE decodes."""
        return jnp.matmul(f, self.dictionary, precision=self.precision) + self.bias

    def __call__(self, x):
        return self.sparse_codes(x).decode(self.dictionary, self.bias)

    def replace(self, **changes) -> ITOEncoder:
        return encoder(self.dictionary, bias=self.bias, **{**self._settings(), **changes})

    def _settings(self):
        return {f.name: getattr(self, f.name) for f in dataclasses.fields(self)
                if f.name not in ("dictionary", "bias")}


def _dictionary_and_bias(source):
    """(W_dec, b_dec) from an array, a params dict, or an object with `.params` (an SAE)."""
    params = getattr(source, "params", source)
    if isinstance(params, dict):
        if "W_dec" not in params:
            raise ValueError(f"params dict has no 'W_dec' (keys: {sorted(params)})")
        return jnp.asarray(params["W_dec"]), params.get("b_dec")
    return jnp.asarray(source), None


def encoder(source, k: int, *, bias=None, method: str = "gradient_pursuit", max_topk: int = 1,
            support: str = "persistent", precision: str | None = None) -> ITOEncoder:
    """An ITO encoder with fixed k from a dictionary [n_atoms, d], an SAE params dict
    (W_dec, b_dec) or an `interp.sae.SAE`; `bias` overrides the SAE's b_dec.

    >>> enc = encoder(sae, k=32); f = enc.encode(x); x_hat = enc.decode(f)
    """
    D, sae_bias = _dictionary_and_bias(source)
    if D.ndim != 2:
        raise ValueError(f"dictionary must be [n_atoms, d]; got shape {D.shape}")
    if method not in METHODS:
        raise ValueError(f"unknown ITO method {method!r}; choose from {METHODS}")
    if support not in SUPPORT_MODES:
        raise ValueError(f"unknown support mode {support!r}; choose from {SUPPORT_MODES}")
    if isinstance(k, bool) or not isinstance(k, int) or not 1 <= k <= D.shape[0]:
        raise ValueError(f"k must be an int in [1, n_atoms={D.shape[0]}]; got {k!r}")
    if not isinstance(max_topk, int) or not 1 <= max_topk <= k:
        raise ValueError(f"max_topk must be an int in [1, k={k}]; got {max_topk!r}")
    if method == "matching_pursuit" and max_topk != 1:
        raise ValueError("max_topk applies to gradient_pursuit only")
    b = bias if bias is not None else sae_bias
    b = jnp.zeros((D.shape[1],), D.dtype) if b is None else jnp.asarray(b)
    if b.shape != (D.shape[1],):
        raise ValueError(f"bias must have shape ({D.shape[1]},); got {b.shape}")
    if precision is not None and precision not in PRECISIONS:
        raise ValueError(f"unknown precision {precision!r}; choose from {PRECISIONS} or None")
    return ITOEncoder(D, b, k, method, max_topk, support, precision)


def encode(model, x):
    """`model.encode(x)` as a module-level function (for `hooks.splice`, which keys its jit cache
    on the function): works for ITO encoders, SAEs and `ShrinkageControlled`."""
    return model.encode(x)


def decode(model, f):
    """`model.decode(f)` as a module-level function (see `encode`)."""
    return model.decode(f)
