"""What `interp.sae` expects of an SAE architecture module (`relu.py`, `gated.py`, `topk.py`).

Training, checkpoints, dead-latent strategies and sharding only reach an architecture through
these names, so adding one is a module that satisfies `SAEArchitecture`, an entry in
`registry.ARCHITECTURES` and in `config.ARCHITECTURES` (see "How to add an SAE architecture" in
the README); `tests/test_extension_points.py` checks every registered module against it.
"""

from __future__ import annotations

from typing import Protocol, runtime_checkable

import jax

from .config import SAEConfig


@runtime_checkable
class SAEArchitecture(Protocol):
    FEATURE_AXES: dict[str, int]
    """Which axis of each parameter indexes latents (for sharding, pruning, resampling)."""
    SAELENS_NAME: str
    """The SAELens `architecture` this exports to (`checkpoint.export_saelens`)."""

    def init(self, key: jax.Array, cfg: SAEConfig) -> dict:
        """Parameters {"W_enc", "W_dec", "b_dec", ...}; W_dec rows have unit norm."""

    def pre_activations(self, params: dict, x: jax.Array, cfg: SAEConfig) -> jax.Array:
        """[..., d_in] -> [..., d_sae] before the sparsifying nonlinearity (what ghost grads
        and the auxiliary top-k loss read for dead latents)."""

    def encode(self, params: dict, x: jax.Array, cfg: SAEConfig) -> jax.Array:
        """[..., d_in] -> latent activations f [..., d_sae], zero where inactive."""

    def forward(self, params: dict, x: jax.Array, cfg: SAEConfig) -> dict:
        """{"z": pre-activations, "f": codes, "x_hat": reconstruction, "sparsity": the
        per-example sparsity penalty before its coefficient}, plus any extra loss term the
        training loss knows by name (gated: "aux_recon")."""
