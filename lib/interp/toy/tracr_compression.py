"""Compress a compiled Tracr model's residual stream with a learned projection.

Why: a compiled model stores one variable value per dimension (no superposition), so
an SAE on it is trivially easy. Tracr's paper (§5, Lindner et al. 2023) trains a
projection W_emb [d_c, D] so that the model still computes the program with a narrower
stream, which forces features into superposition. GDM's update reports that it is hard
to compress this way *without changing the algorithm* (so the known ground truth stops
being the truth); this module measures both halves of that statement.

Only W_emb is trained; the compiled weights stay frozen (`tracr_models.forward` with
`w_emb`, i.e. Tracr's CompressedTransformer with `unembed_at_every_layer=True`). Loss
(the paper's, with MSE on the output dimensions in place of cross-entropy):

    L = mean_{pos>0} ||out_c - out||^2  +  layer_weight * mean_{sites,pos} ||h_l,c - h_l||^2

where out are the compiled model's output dimensions and h_l what each sublayer adds.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import jax
import jax.numpy as jnp
import numpy as np
import optax

from interp.toy import tracr_models as tm

__all__ = ["CompressionConfig", "train_compression", "init_embedding", "CompressionReport",
           "check_compression", "identity_embedding", "ground_truth_directions",
           "active_directions", "residual_dataset"]


@dataclass(frozen=True)
class CompressionConfig:
    """width: the compressed residual width d_c; layer_weight: the paper's lambda_layer.

    init: "pca" starts from the top-`width` principal directions (uncentred SVD) of the
    compiled residual stream over all sites (the best linear compression in squared error,
    and exactly lossless at full width); "random" from random orthonormal rows. Adam at a
    large lr kicks a lossless start away (its normalised steps amplify float noise through
    the compiled MLPs' large weights), hence the modest default lr.

    Stopping rule (trained until the loss plateaus): training runs in *rounds* of `steps`
    Adam steps, each a full cosine decay from `lr` (a warm restart); after each round the best
    loss on the fixed check subset is compared with the best before the round, and training
    stops when the round improved it by no more than `plateau_tolerance` of that value (or
    after `max_rounds`). `max_rounds=1` is a fixed budget of `steps`.
    """

    width: int
    steps: int = 2000
    lr: float = 1e-3
    init: str = "pca"
    batch_size: int = 256
    n_train: int = 4096
    layer_weight: float = 1.0
    seed: int = 0
    max_rounds: int = 1
    plateau_tolerance: float = 0.01

    def __post_init__(self):
        for name in ("width", "steps", "batch_size", "n_train", "max_rounds"):
            v = getattr(self, name)
            if not (isinstance(v, int) and not isinstance(v, bool) and v > 0):
                raise ValueError(f"{name} must be a positive int, got {v!r}")
        if not (self.lr > 0 and math.isfinite(self.lr)):
            raise ValueError(f"lr must be positive and finite, got {self.lr}")
        if self.init not in ("pca", "random"):
            raise ValueError(f"init must be 'pca' or 'random', got {self.init!r}")
        if not (self.layer_weight >= 0 and math.isfinite(self.layer_weight)):
            raise ValueError(f"layer_weight must be >= 0, got {self.layer_weight}")
        if not (0 <= self.plateau_tolerance < 1):
            raise ValueError(f"plateau_tolerance must lie in [0, 1), got {self.plateau_tolerance}")


def identity_embedding(prog: tm.CompiledProgram) -> jax.Array:
    """W_emb = I: the uncompressed model written in the same API."""
    return jnp.eye(prog.d_model)


def init_embedding(prog: tm.CompiledProgram, config: CompressionConfig) -> jax.Array:
    """The starting W_emb [width, d_model] of `train_compression` for this config."""
    key = jax.random.split(jax.random.PRNGKey(config.seed))[1]
    if config.init == "random":
        return jax.nn.initializers.orthogonal()(key, (config.width, prog.d_model))
    seqs = tm.random_inputs(prog, min(config.n_train, 2048), seed=config.seed)
    res = np.asarray(tm.forward(prog, tm.encode(prog, seqs)).residuals)
    _, _, vt = np.linalg.svd(res.reshape(-1, prog.d_model), full_matrices=False)
    return jnp.asarray(vt[: config.width], jnp.float32)


def _loss(prog, w_emb, ids, ref_out, ref_layers, layer_weight):
    trace = tm.forward(prog, ids, w_emb)
    dims = prog.output_dims
    out_err = jnp.sum((trace.output[:, 1:, dims] - ref_out[:, 1:, dims]) ** 2, -1)
    layer_err = jnp.sum((trace.layer_outputs - ref_layers) ** 2, -1)
    return jnp.mean(out_err) + layer_weight * jnp.mean(layer_err)


def train_compression(prog: tm.CompiledProgram, config: CompressionConfig, *,
                      progress: bool = True) -> tuple[jax.Array, dict[str, np.ndarray]]:
    """Learn W_emb [width, d_model] on random inputs; returns (W_emb, history).

    The returned W_emb is the best (lowest loss on a fixed subset of the training inputs)
    among the start and the end of every chunk of steps; history["loss"] is per step,
    history["round_best"] the best check loss after each round (see `CompressionConfig`:
    rounds continue until one improves it by no more than `plateau_tolerance`), and
    history["plateaued"] whether the last round met that rule (False: `max_rounds` ran out
    while the loss was still improving).

    The initial W_emb is `init_embedding(prog, config)`.

    Raises FloatingPointError on a non-finite loss (W_emb of the last good step is lost
    only for this run; nothing else is touched).
    """
    from tqdm import tqdm

    if config.width > prog.d_model:
        raise ValueError(f"width {config.width} exceeds the compiled width {prog.d_model}")
    seqs = tm.random_inputs(prog, config.n_train, seed=config.seed)
    ids = tm.encode(prog, seqs)
    ref = tm.forward(prog, ids)
    key = jax.random.split(jax.random.PRNGKey(config.seed))[0]
    w = init_embedding(prog, config)
    # Cosine decay to 1% of the peak: the output must end within half the gap between
    # possible values (e.g. 1/112 for frac_prevs), which needs a small final step size.
    opt = optax.adam(optax.cosine_decay_schedule(config.lr, config.steps, alpha=0.01))
    chunk = min(config.steps, 200)

    @jax.jit
    def run_chunk(w, opt_state, key, ids, ref_out, ref_layers):
        def step(carry, key):
            w, opt_state = carry
            idx = jax.random.randint(key, (config.batch_size,), 0, ids.shape[0])
            loss, g = jax.value_and_grad(
                lambda w: _loss(prog, w, ids[idx], ref_out[idx], ref_layers[:, idx],
                                config.layer_weight))(w)
            updates, opt_state = opt.update(g, opt_state, w)
            return (optax.apply_updates(w, updates), opt_state), loss

        keys = jax.random.split(key, chunk)
        (w, opt_state), loss = jax.lax.scan(step, (w, opt_state), keys)
        return w, opt_state, loss

    # Keep the best W_emb seen at chunk ends (by the loss on a fixed subset): Adam can kick a
    # lossless start (PCA at sufficient width) into a worse basin, and returning something
    # worse than the start would misreport what the width allows.
    n_check = min(512, ids.shape[0])
    check = jax.jit(lambda w: _loss(prog, w, ids[:n_check], ref.output[:n_check],
                                    ref.layer_outputs[:, :n_check], config.layer_weight))
    best_w, best_loss = w, float(check(w))
    start_loss = best_loss
    losses, round_best, plateaued = [], [], False
    n_chunks = -(-config.steps // chunk)
    for r in range(config.max_rounds):
        before, w = best_loss, best_w  # each round restarts from the best W_emb so far,
        opt_state = opt.init(w)        # with a fresh Adam and a full cosine decay
        round_losses = []
        for i in tqdm(range(n_chunks), desc=f"compress {prog.name} to {config.width}"
                      + (f" (round {r + 1})" if config.max_rounds > 1 else ""),
                      disable=not progress):
            key, sub = jax.random.split(key)
            w_new, opt_state, loss = run_chunk(w, opt_state, sub, ids, ref.output,
                                               ref.layer_outputs)
            loss = np.asarray(loss)
            if not np.all(np.isfinite(loss)):
                step0 = r * config.steps + i * chunk
                raise FloatingPointError(
                    f"compression loss became non-finite in steps {step0}..{step0 + chunk}")
            w = w_new
            round_losses.append(loss)
            current = float(check(w))
            if current < best_loss:
                best_w, best_loss = w, current
        losses.append(np.concatenate(round_losses)[: config.steps])
        round_best.append(best_loss)
        if before - best_loss <= config.plateau_tolerance * before:
            plateaued = True
            break
    return best_w, {"loss": np.concatenate(losses), "best_check_loss": best_loss,
                    "start_check_loss": start_loss,
                    "round_best": np.asarray(round_best), "plateaued": plateaued}


# ---- evaluation ----------------------------------------------------------------------------

def _nearest(values: np.ndarray, grid: np.ndarray) -> np.ndarray:
    return grid[np.abs(values[..., None] - grid).argmin(-1)]


@dataclass(frozen=True)
class CompressionReport:
    """Measured behaviour of a (possibly compressed) model on held-out inputs.

    accuracy: fraction of (sequence, position>0) where the decoded output equals the RASP
      output (numerical outputs are first rounded to the nearest value the program can
      output, i.e. correct within half the gap between possible values).
    sequence_accuracy: fraction of sequences with every position correct.
    output_mse: mean squared error of the output dimensions vs the compiled model.
    layer_error: per sublayer, ||h_c - h||^2 / ||h||^2 (0 = same computation).
    variable_fidelity: per variable (residual group such as "is_x", "target_pos"), the
      fraction of (site, sequence, position>0) where the variable decoded from the
      decompressed stream equals its value in the compiled model, over every site at
      which the compiled model holds it. < 1 means an intermediate variable of the
      original algorithm is no longer represented as compiled.
    """

    width: int
    accuracy: float
    sequence_accuracy: float
    output_mse: float
    layer_error: dict[str, float]
    variable_fidelity: dict[str, float]

    def min_fidelity(self, exclude: tuple[str, ...] = ()) -> float:
        vals = [v for k, v in self.variable_fidelity.items() if k not in exclude]
        return float(min(vals)) if vals else float("nan")


def _decode_group(values: np.ndarray, ref: np.ndarray, grid: np.ndarray | None):
    """Categorical groups (several dims): argmax; numerical (one dim): nearest grid value."""
    if values.shape[-1] > 1:
        return values.argmax(-1), ref.argmax(-1)
    return _nearest(values[..., 0], grid), ref[..., 0]


def check_compression(prog: tm.CompiledProgram, w_emb: jax.Array | None, sequences: list[list]
             ) -> CompressionReport:
    """Program accuracy and algorithm preservation of `w_emb` (None = uncompressed)."""
    ids = tm.encode(prog, sequences)
    ref = tm.forward(prog, ids)
    if w_emb is None:
        w_emb = identity_embedding(prog)
    run = tm.forward(prog, ids, w_emb)

    truth = tm.rasp_outputs(prog, sequences)
    got = tm.decode_outputs(prog, run.output)[:, 1:]
    if prog.numerical_output:
        truth_arr = np.array([[np.nan if v is None else v for v in row] for row in truth],
                             float)
        grid = np.unique(truth_arr[np.isfinite(truth_arr)])
        correct = _nearest(got.astype(float), grid) == truth_arr
        valid = np.isfinite(truth_arr)
    else:
        valid = np.array([[v is not None for v in row] for row in truth])
        correct = np.array([[a == b for a, b in zip(r, g)] for r, g in zip(truth, got)])
    correct = correct & valid
    accuracy = float(correct.sum() / valid.sum())
    seq_acc = float(np.mean([c[v].all() for c, v in zip(correct, valid)]))
    dims = prog.output_dims
    out_mse = float(np.mean((np.asarray(run.output)[:, 1:, dims]
                             - np.asarray(ref.output)[:, 1:, dims]) ** 2))

    names = tm.site_names(prog)[1:]
    h, h_c = np.asarray(ref.layer_outputs), np.asarray(run.layer_outputs)
    layer_error = {n: float(np.sum((h_c[i] - h[i]) ** 2) / max(np.sum(h[i] ** 2), 1e-12))
                   for i, n in enumerate(names)}

    # Every site's stream, read back into the compiled basis, vs the compiled stream.
    res = np.asarray(ref.residuals)[:, :, 1:]                      # [S, B, T, D]
    res_c = np.asarray(run.residuals)[:, :, 1:] @ np.asarray(w_emb)  # [S, B, T, D]
    fidelity = {}
    for var, cols in prog.variables().items():
        hits = total = 0
        for s in range(res.shape[0]):
            r = res[s][..., cols]
            if not np.any(np.abs(r) > 1e-6):
                continue  # not yet written at this site
            grid = np.unique(np.round(r[..., 0], 6)) if len(cols) == 1 else None
            got_v, ref_v = _decode_group(res_c[s][..., cols], r, grid)
            if grid is not None:
                ref_v = _nearest(ref_v, grid)
            hits += int(np.sum(got_v == ref_v))
            total += got_v.size
        if total:
            fidelity[var] = hits / total
    return CompressionReport(int(w_emb.shape[0]), accuracy, seq_acc, out_mse, layer_error,
                             fidelity)


# ---- ground truth for SAEs ------------------------------------------------------------------

def ground_truth_directions(w_emb: jax.Array) -> np.ndarray:
    """The compiled basis vectors e_j written into the compressed stream: rows of W_emb^T
    ([d_model, width]). With W_emb = I these are the one-hot basis vectors."""
    return np.asarray(w_emb).T


def active_directions(prog: tm.CompiledProgram, sequences: list[list], site: int = -1,
                      tol: float = 1e-6) -> np.ndarray:
    """Mask [d_model] of compiled directions that *vary* at `site` over non-BOS positions.

    Constant directions (the "one" dimension; tokens:BOS off the BOS position; variables
    not yet computed) carry no feature an SAE could find, so recovery is scored on the
    varying ones only.
    """
    ids = tm.encode(prog, sequences)
    res = np.asarray(tm.forward(prog, ids).residuals[site])[:, 1:]
    flat = res.reshape(-1, prog.d_model)
    return flat.std(0) > tol


def residual_dataset(prog: tm.CompiledProgram, w_emb: jax.Array | None, sequences: list[list],
                     site: int = -1) -> np.ndarray:
    """Activations [N, width] at `site` (default: the final stream) from non-BOS positions,
    as an SAE would see them in the (compressed) model."""
    ids = tm.encode(prog, sequences)
    res = tm.forward(prog, ids, w_emb).residuals[site]
    res = np.asarray(res)[:, 1:]
    return res.reshape(-1, res.shape[-1])
