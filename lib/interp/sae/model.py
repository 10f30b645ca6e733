"""`SAE`: a trained sparse autoencoder as an immutable pytree (params are leaves, the config is
static), with the common `encode` / `decode` interface of every architecture.

An `SAE` always works on raw activations: any input scaling used in training has been folded
into its weights (`fold_input_scale`)."""

from __future__ import annotations

from dataclasses import dataclass

import jax
import jax.numpy as jnp

from . import common, precision, registry
from .config import SAEConfig


@jax.tree_util.register_pytree_node_class
@dataclass(frozen=True)
class SAE:
    params: dict
    config: SAEConfig

    def tree_flatten(self):
        return (self.params,), self.config

    @classmethod
    def tree_unflatten(cls, config, children):
        return cls(children[0], config)

    def encode(self, x):
        """Latent activations f(x), shape (..., d_sae)."""
        return registry.get(self.config.architecture).encode(self.params, x, self.config)

    def decode(self, f):
        """Reconstruction x_hat = W_dec f + b_dec, shape (..., d_in), in the config's
        compute_dtype (always the dense product: decoding arbitrary codes needs no sparsity)."""
        return (precision.matmul(f, self.params["W_dec"], self.config.compute_dtype)
                + self.params["b_dec"])

    def __call__(self, x):
        return self.decode(self.encode(x))

    @property
    def feature_axes(self) -> dict[str, int]:
        return registry.get(self.config.architecture).FEATURE_AXES

    @property
    def decoder_norms(self):
        return common.decoder_norms(self.params)


def init_sae(key, config: SAEConfig) -> SAE:
    """A freshly initialised SAE (see `common.init_dictionary`)."""
    return SAE(registry.get(config.architecture).init(key, config), config)


def encode(sae: SAE, x):
    return sae.encode(x)


def decode(sae: SAE, f):
    return sae.decode(f)


def fold_input_scale(params: dict, scale) -> dict:
    """Weights for raw x from weights trained on c*x: W_enc' = c W_enc, b_dec' = b_dec / c,
    W_dec' = W_dec / c. With or without the pre-encoder bias,
    W_enc'(x - b_dec') = W_enc(c x - b_dec), and (W_dec f + b_dec) / c is the raw x_hat
    (the b_dec fold is the one SAELens issue #354 forgot)."""
    out = dict(params)
    out["W_enc"] = params["W_enc"] * scale
    out["W_dec"] = params["W_dec"] / scale
    out["b_dec"] = params["b_dec"] / scale
    return out


def select_features(sae: SAE, keep) -> SAE:
    """The SAE restricted to the latents where `keep` (bool mask or index array) is true."""
    keep = jnp.asarray(keep)
    idx = jnp.nonzero(keep)[0] if keep.dtype == jnp.bool_ else keep
    params = dict(sae.params)
    for name, axis in sae.feature_axes.items():
        params[name] = jnp.take(params[name], idx, axis=axis)
    config = sae.config.replace(d_sae=int(idx.shape[0]),
                                k=min(sae.config.k, max(int(idx.shape[0]), 1)))
    return SAE(params, config)


def prune_small_decoder_norms(sae: SAE, threshold: float = 0.99) -> SAE:
    """Anthropic Feb-2024 item 2: with ||d_i|| <= 1 allowed, drop latents whose decoder norm
    ended below `threshold` after training."""
    return select_features(sae, sae.decoder_norms >= threshold)
