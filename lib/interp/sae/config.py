"""`SAEConfig`: every architecture choice and training-recipe switch as one named field.

Each option of the dead-feature menu and of Anthropic's Feb-2024 recipe is its own field, so a
notebook toggles one item at a time (the reference-SAE, ghost-grads and recipe pages). The defaults are the GDM
baseline of the Gated-SAE paper (App. D): ReLU SAE with pre-encoder bias, exact unit-norm decoder,
Adam(beta1=0, beta2=0.999), learning-rate warm-up, no cooldown, L2 divided by d_in.

Invalid values raise `ValueError` naming the field, before any compute.
"""

from __future__ import annotations

import dataclasses
import json
from dataclasses import dataclass, fields
from typing import Any

from .precision import COMPUTE_DTYPES

ARCHITECTURES = ("relu", "gated", "topk")
DEAD_STRATEGIES = ("none", "resample", "ghost", "ghost_scaled", "ghost_all", "auxk")
DECODER_NORMS = ("unit", "at_most_one", "free")
INPUT_NORMALISATIONS = ("none", "sqrt_d")
MSE_REDUCTIONS = ("mean", "sum")
B_DEC_INITS = ("zeros", "mean")
STEPS = ("dense", "sparse", "auto", "ffi")

# Scalar fields that only enter arithmetic inside the jitted step, so a sweep over them can be
# one vmapped step over stacked parameters (`train_sweep`). `seed` is swept through the init.
SWEEPABLE = (
    "l1_coeff",
    "lr",
    "adam_beta1",
    "adam_beta2",
    "lr_warmup_steps",
    "l1_warmup_steps",
    "aux_k_coeff",
    "seed",
)


@dataclass(frozen=True)
class SAEConfig:
    """Architecture, loss and training recipe of one SAE.

    Architecture
      d_in, d_sae: input width and number of latents (M).
      architecture: "relu" (baseline, f = ReLU(W_enc(x - b_dec) + b_enc)), "gated"
        (Rajamanoharan et al. 2024) or "topk" (Gao et al. 2024; keeps the k largest).
      k: active latents per token for "topk".
      pre_encoder_bias: subtract b_dec before the encoder (Anthropic Feb-2024 item 3: off).

    Loss
      l1_coeff: lambda of the sparsity penalty (ignored by "topk").
      l1_warmup_steps: lambda ramps linearly from 0 over this many steps (0 = no warm-up).
      l1_weighted_by_decoder_norm: penalty sum_i f_i ||d_i|| (Anthropic April-2024), meant for
        decoder_norm="free".
      mse_reduction: "mean" divides the squared error by d_in (GDM), "sum" sums it (Anthropic).
      mse_normalise_by_input_norm: also divide by E||x||^2 (GDM Pythia/Gemma baselines).

    Decoder and inputs (Anthropic Feb-2024 items)
      decoder_norm: "unit" (||d_i|| = 1 exactly: gradient projected, columns renormalised),
        "at_most_one" (projected back onto ||d_i|| <= 1; prune small norms afterwards with
        `prune_small_decoder_norms`), "free" (unconstrained).
      decoder_init_norm: initial ||d_i|| (used when decoder_norm != "unit").
      encoder_init_transpose: W_enc initialised as W_dec^T (else an independent draw).
      input_normalisation: "sqrt_d" scales inputs so E||x|| = sqrt(d_in) (estimated on the first
        `norm_estimation_batches`), folded back into the weights at the end of training.
      b_dec_init: "zeros" or "mean" (mean of the estimation batches).

    Optimiser and schedule
      lr, adam_beta1, adam_beta2, adam_eps: Adam; GDM uses beta1 = 0.
      lr_warmup_steps: linear warm-up from 0.
      lr_decay_fraction: linear decay to 0 over this last fraction of `steps` (Anthropic: 0.2).
      grad_clip_norm: clip the global gradient norm (None = off; Anthropic: 1.0).
      batch_size, steps, seed.

    Dead latents
      dead_strategy: "none", "resample" (Anthropic 2023 + GDM re-warm-up), "ghost" (Anthropic
        Jan-2024), "ghost_scaled" (GDM: ghost loss x dead fraction), "ghost_all" (every latent
        treated as dead; for the first `ghost_all_steps` steps only if set, then plain ghost
        grads, mimicking Anthropic's Feb-2024 bug), "auxk" (Gao et al. 2024; topk only).
      dead_window_steps: a latent is dead if it has not fired for this many steps.
      resample_at: resampling events as fractions of `steps`.
      resample_encoder_scale: new encoder row norm = this x mean alive encoder norm (0.2).
      resample_pool_rows: 0 draws the replacement inputs from the batch of the event's step;
        n > 0 from a pool of n inputs drawn afresh for each event by the `resample_pool`
        callable given to `train` (Anthropic, Towards Monosemanticity 2023, sampled 819,200
        inputs, each with probability proportional to its squared reconstruction loss).
      resample_rewarm_steps, resample_rewarm_start: after each event the LR re-warms from
        start x lr to lr with a cosine over this many steps (GDM).
      aux_k, aux_k_coeff: AuxK uses the top `aux_k` dead latents, weight `aux_k_coeff` (1/32).
      dense_threshold: a latent firing on more than this fraction of tokens counts as dense.

    Compute
      step: "dense" (XLA matmuls; the reference), "ffi" (C++ kernels XLA calls in place,
        `sparse_ffi.py`: ReLU / top-k SAEs without ghost grads or AuxK run everything after the
        encoder matmul as one fused kernel per direction, the others the decoder forward and
        the three gradients from the active (token, latent) pairs; CPU only, dense elsewhere),
        "auto" (the training driver runs the "ffi" step while the codes' measured density is
        below `training.AUTO_DENSITY` and the dense step otherwise, re-checked every
        `training.AUTO_CHECK_EVERY` steps; dense off CPU, under a device mesh, or without a
        C++ compiler) or "sparse" (the same products as numba kernels through host
        callbacks; slower than dense here, kept for comparison). Same numbers up to float
        rounding.
      compute_dtype: "float32" (default) or "bfloat16": the dense (XLA) products take
        bfloat16-rounded inputs and accumulate in float32, in training and in every encode /
        decode under this config (`config.replace(compute_dtype="float32")` evaluates a
        bf16-trained SAE in float32); parameters, Adam state, losses and the ffi kernels'
        sparse products stay float32 (`precision.py`). Not with step="sparse".
    """

    d_in: int
    d_sae: int
    architecture: str = "relu"
    k: int = 32
    pre_encoder_bias: bool = True
    l1_coeff: float = 1e-3
    l1_warmup_steps: int = 0
    l1_weighted_by_decoder_norm: bool = False
    mse_reduction: str = "mean"
    mse_normalise_by_input_norm: bool = False
    decoder_norm: str = "unit"
    decoder_init_norm: float = 1.0
    encoder_init_transpose: bool = True
    input_normalisation: str = "none"
    b_dec_init: str = "zeros"
    norm_estimation_batches: int = 4
    lr: float = 3e-4
    adam_beta1: float = 0.0
    adam_beta2: float = 0.999
    adam_eps: float = 1e-8
    lr_warmup_steps: int = 1000
    lr_decay_fraction: float = 0.0
    grad_clip_norm: float | None = None
    batch_size: int = 4096
    steps: int = 10_000
    seed: int = 0
    dead_strategy: str = "none"
    dead_window_steps: int = 1000
    ghost_all_steps: int | None = None
    resample_at: tuple[float, ...] = (0.2, 0.4, 0.6, 0.8)
    resample_encoder_scale: float = 0.2
    resample_pool_rows: int = 0
    resample_rewarm_steps: int = 1000
    resample_rewarm_start: float = 0.1
    aux_k: int = 256
    aux_k_coeff: float = 1.0 / 32
    dense_threshold: float = 0.1
    step: str = "dense"
    compute_dtype: str = "float32"

    def __post_init__(self):
        def bad(name, why):
            raise ValueError(f"SAEConfig.{name}={getattr(self, name)!r}: {why}")

        def choice(name, allowed):
            if getattr(self, name) not in allowed:
                bad(name, f"unknown option; allowed: {', '.join(allowed)}")

        for name in ("d_in", "d_sae"):
            v = getattr(self, name)
            if not isinstance(v, int) or isinstance(v, bool) or v < 1:
                bad(name, "must be an integer >= 1")
        choice("architecture", ARCHITECTURES)
        choice("dead_strategy", DEAD_STRATEGIES)
        choice("decoder_norm", DECODER_NORMS)
        choice("input_normalisation", INPUT_NORMALISATIONS)
        choice("mse_reduction", MSE_REDUCTIONS)
        choice("b_dec_init", B_DEC_INITS)
        choice("step", STEPS)
        choice("compute_dtype", COMPUTE_DTYPES)
        if self.compute_dtype != "float32" and self.step == "sparse":
            bad("compute_dtype", "step='sparse' (numba host callbacks) computes in float32 "
                "only; use step='dense', 'ffi' or 'auto'")
        for name in ("l1_coeff", "lr", "adam_eps", "aux_k_coeff", "decoder_init_norm"):
            v = getattr(self, name)
            if not isinstance(v, (int, float)) or isinstance(v, bool) or not v >= 0:
                bad(name, "must be a number >= 0")
        if self.lr <= 0:
            bad("lr", "must be > 0")
        for name in ("adam_beta1", "adam_beta2"):
            if not 0.0 <= getattr(self, name) < 1.0:
                bad(name, "must lie in [0, 1)")
        for name in ("lr_decay_fraction", "resample_rewarm_start", "dense_threshold"):
            if not 0.0 <= getattr(self, name) <= 1.0:
                bad(name, "must lie in [0, 1]")
        for name in ("l1_warmup_steps", "lr_warmup_steps", "resample_rewarm_steps",
                     "resample_pool_rows"):
            if int(getattr(self, name)) < 0:
                bad(name, "must be >= 0")
        for name in ("batch_size", "steps", "dead_window_steps", "norm_estimation_batches",
                     "aux_k"):
            v = getattr(self, name)
            if not isinstance(v, int) or isinstance(v, bool) or v < 1:
                bad(name, "must be an integer >= 1")
        if self.architecture == "topk" and not 1 <= self.k <= self.d_sae:
            bad("k", f"must lie in [1, d_sae={self.d_sae}] for a topk SAE")
        if self.dead_strategy == "auxk" and self.architecture != "topk":
            bad("dead_strategy", "auxk needs architecture='topk'")
        if self.grad_clip_norm is not None and not self.grad_clip_norm > 0:
            bad("grad_clip_norm", "must be > 0 or None")
        if self.ghost_all_steps is not None and self.ghost_all_steps < 0:
            bad("ghost_all_steps", "must be >= 0 or None")
        object.__setattr__(self, "resample_at", tuple(float(t) for t in self.resample_at))
        if any(not 0.0 < t < 1.0 for t in self.resample_at):
            bad("resample_at", "fractions of training must lie in (0, 1)")

    # -- conveniences -------------------------------------------------------------------------
    def replace(self, **changes) -> "SAEConfig":
        return dataclasses.replace(self, **changes)

    def to_dict(self) -> dict[str, Any]:
        d = dataclasses.asdict(self)
        d["resample_at"] = list(self.resample_at)
        return d

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> "SAEConfig":
        known = {f.name for f in fields(cls)}
        unknown = sorted(set(d) - known)
        if unknown:
            raise ValueError(f"SAEConfig: unknown field(s) {unknown}; known: {sorted(known)}")
        d = dict(d)
        if "resample_at" in d:
            d["resample_at"] = tuple(d["resample_at"])
        return cls(**d)

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), sort_keys=True)

    def resample_steps(self) -> tuple[int, ...]:
        """The training steps at which resampling events happen."""
        if self.dead_strategy != "resample":
            return ()
        return tuple(sorted({int(round(t * self.steps)) for t in self.resample_at}))

    def hyper(self) -> dict[str, float]:
        """The sweepable scalars, as the jitted step receives them."""
        return {name: float(getattr(self, name)) for name in SWEEPABLE if name != "seed"}
