"""Sparse autoencoders in JAX: architectures, the GDM/Anthropic training recipes, dead-latent
strategies, checkpoints, SAELens interchange and sharded training.

Example (CPU, seconds)::

    from interp import sae
    cfg = sae.SAEConfig(d_in=32, d_sae=256, l1_coeff=3e-3, lr=1e-3, batch_size=1024,
                        steps=2000, lr_warmup_steps=100, dead_strategy="ghost_scaled")
    data = sae.SparseDictionaryData(d_in=32, n_features=128, batch_size=1024)
    state, history = sae.train(cfg, data)          # history["fvu"], ["l0"], ["dead_fraction"]...
    model = sae.to_sae(state, cfg)                 # an SAE in raw input units
    x = data.batch(0)
    f = model.encode(x); x_hat = model.decode(f)   # the interface shared by all architectures
    sae.reconstruction_metrics(model, data.held_out(), max_batches=8)  # L0, FVU, dead, ...

    # an L1 sweep as one vmapped, jitted step:
    states, hist = sae.train_sweep(cfg, data, {"l1_coeff": [1e-3, 3e-3, 1e-2]})
    run0 = sae.to_sae(sae.sweep_member(states, 0), cfg.replace(l1_coeff=1e-3))

    sae.export_saelens(model, "out/")              # cfg.json + sae_weights.safetensors

    # checkpoints every 500 steps; an interrupted run continues exactly where it stopped:
    sae.train(cfg, data, checkpoint_dir="ckpt/", checkpoint_every=500)
    state, history = sae.resume("ckpt/", sae.SparseDictionaryData(32, 128, 1024))

Batches come from any iterable of (batch_size, d_in) arrays (the activation store, or
`SparseDictionaryData` for a known ground-truth dictionary). Dead-latent strategies:
`dead_strategy` in "none", "resample", "ghost", "ghost_scaled", "ghost_all", "auxk" (topk).
Architectures: "relu" (the post's baseline), "gated", "topk".

Conventions: params are a dict with SAELens names and shapes (W_enc [d_in, d_sae],
W_dec [d_sae, d_in]); batches are arrays (batch_size, d_in); every option is a named field of
`SAEConfig` (read its docstring for defaults and sources).
"""

from .checkpoint import (CorruptCheckpointError, export_saelens, import_saelens, load_checkpoint,
                         save_checkpoint)
from .config import ARCHITECTURES, DEAD_STRATEGIES, SWEEPABLE, SAEConfig
from .evaluate import reconstruction_metrics
from .model import (SAE, decode, encode, fold_input_scale, init_sae, prune_small_decoder_norms,
                    select_features)
from .sharding import make_mesh
from .synthetic import SparseDictionaryData
from .training import (NonFiniteLossError, NonFiniteParamsError, TrainState, resume,
                       sweep_member, to_sae, train, train_step, train_sweep)

__all__ = [
    "ARCHITECTURES", "DEAD_STRATEGIES", "SWEEPABLE", "SAE", "SAEConfig", "CorruptCheckpointError",
    "NonFiniteLossError", "NonFiniteParamsError",
    "SparseDictionaryData", "TrainState", "decode", "encode", "export_saelens",
    "fold_input_scale", "import_saelens", "init_sae", "load_checkpoint", "make_mesh",
    "prune_small_decoder_norms", "reconstruction_metrics", "resume", "save_checkpoint",
    "select_features",
    "sweep_member", "to_sae", "train", "train_step", "train_sweep",
]
