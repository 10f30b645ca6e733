"""The ReLU-output toy model of Toy Models of Superposition (Elhage et al. 2022).

Why: it is the smallest setting with *known* ground-truth features stored in
superposition, so an SAE trained on its hidden layer can be scored against the truth.

    x_i = 0 with probability S (sparsity), else U[0, 1], independently per feature
    h   = W x                         W in R^{m x n}   (m hidden dims < n features)
    x'  = ReLU(W^T h + b) = ReLU(W^T W x + b)
    L   = E_x sum_i I_i (x_i - x'_i)^2,   importance I_i = decay^i   (paper: 0.7^i)

Many models (one per sparsity, or per seed) are trained at once by `jax.vmap` over a
leading "instance" axis, as in Anthropic's notebook (AdamW, lr 1e-3, batch 1024,
Xavier-normal init). The analysis views (`feature_norms`, `superposition`,
`feature_dimensionality`) follow the paper's figures.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import jax
import jax.numpy as jnp
import numpy as np
import optax

__all__ = [
    "TMSConfig", "TMSParams", "init_params", "sample_features", "reconstruct", "hidden",
    "loss_fn", "train", "importance", "gram", "feature_norms", "superposition",
    "feature_dimensionality", "angles_2d", "HiddenActivations",
]


@dataclass(frozen=True)
class TMSConfig:
    """Hyper-parameters of a batch of toy models (one per entry of `feature_probability`).

    feature_probability: 1 - S for each instance (the probability a feature is non-zero).
    importance_decay: I_i = importance_decay ** i (1.0 = equally important features).
    """

    n_features: int = 5
    n_hidden: int = 2
    feature_probability: tuple[float, ...] = (1.0, 0.3, 0.1, 0.03, 0.01)
    importance_decay: float = 1.0
    batch_size: int = 1024
    steps: int = 10_000
    lr: float = 1e-3
    weight_decay: float = 0.0
    seed: int = 0

    def __post_init__(self):
        probs = tuple(float(p) for p in self.feature_probability)
        object.__setattr__(self, "feature_probability", probs)
        if not (isinstance(self.n_features, int) and self.n_features > 0):
            raise ValueError(f"n_features must be a positive int, got {self.n_features!r}")
        if not (isinstance(self.n_hidden, int) and self.n_hidden > 0):
            raise ValueError(f"n_hidden must be a positive int, got {self.n_hidden!r}")
        if not probs:
            raise ValueError("feature_probability must list at least one value")
        for p in probs:
            if not (0.0 < p <= 1.0):
                raise ValueError(f"feature_probability values must be in (0, 1], got {p}")
        if not (0.0 < self.importance_decay <= 1.0):
            raise ValueError(f"importance_decay must be in (0, 1], got {self.importance_decay}")
        for name in ("batch_size", "steps"):
            value = getattr(self, name)
            if not (isinstance(value, int) and value > 0):
                raise ValueError(f"{name} must be a positive int, got {value!r}")
        if not (self.lr > 0 and math.isfinite(self.lr)):
            raise ValueError(f"lr must be positive, got {self.lr}")

    @property
    def n_instances(self) -> int:
        return len(self.feature_probability)


TMSParams = dict  # {"W": [K, m, n], "b": [K, n]}: a stack of K models.


def importance(config: TMSConfig) -> jax.Array:
    """I_i = decay^i, i = 0..n-1 (the paper's 0.7^i when decay = 0.7)."""
    return config.importance_decay ** jnp.arange(config.n_features, dtype=jnp.float32)


def init_params(config: TMSConfig, key: jax.Array) -> TMSParams:
    """Xavier-normal W (std sqrt(2 / (m + n))) and zero bias, one per instance."""
    k, m, n = config.n_instances, config.n_hidden, config.n_features
    std = math.sqrt(2.0 / (m + n))
    return {"W": std * jax.random.normal(key, (k, m, n)), "b": jnp.zeros((k, n))}


def sample_features(key: jax.Array, feature_probability: jax.Array, batch: int,
                    n_features: int) -> jax.Array:
    """x_i ~ U[0, 1] with probability p (per instance), else 0. Shape [K, batch, n]."""
    # One uniform draw u serves both choices: P(u < p) = p, and u / p given u < p is
    # again U[0, 1] -- half the random numbers of two independent draws.
    p = jnp.asarray(feature_probability, jnp.float32)[:, None, None]
    u = jax.random.uniform(key, (p.shape[0], batch, n_features))
    return jnp.where(u < p, u / p, 0.0)


def hidden(W: jax.Array, x: jax.Array) -> jax.Array:
    """h = W x for one model: W [m, n], x [..., n] -> [..., m]. This is what SAEs see."""
    return x @ W.T


def reconstruct(W: jax.Array, b: jax.Array, x: jax.Array) -> jax.Array:
    """x' = ReLU(W^T W x + b) for one model."""
    return jax.nn.relu(hidden(W, x) @ W + b)


def loss_fn(params: TMSParams, x: jax.Array, imp: jax.Array) -> jax.Array:
    """Importance-weighted squared error, summed over instances (each instance's
    gradient only touches its own parameters, so the sum trains them independently)."""
    x_hat = jax.vmap(reconstruct)(params["W"], params["b"], x)
    per_instance = jnp.mean(jnp.sum(imp * (x - x_hat) ** 2, axis=-1), axis=-1)
    return jnp.sum(per_instance)


def _per_instance_loss(params, x, imp):
    x_hat = jax.vmap(reconstruct)(params["W"], params["b"], x)
    return jnp.mean(jnp.sum(imp * (x - x_hat) ** 2, axis=-1), axis=-1)


def train(config: TMSConfig, *, chunk: int = 500, progress: bool = True
          ) -> tuple[TMSParams, dict[str, np.ndarray]]:
    """Train all instances jointly; returns (params [K, ...], history).

    history["loss"] is [n_chunks, K]: the per-instance loss at the end of each chunk of
    `chunk` steps (the steps of a chunk run inside one jitted `lax.scan`).
    Raises FloatingPointError if the loss becomes NaN/inf.
    """
    from tqdm import tqdm

    key = jax.random.PRNGKey(config.seed)
    key, k_init = jax.random.split(key)
    params = init_params(config, k_init)
    probs = jnp.asarray(config.feature_probability, jnp.float32)
    imp = importance(config)
    opt = optax.adamw(config.lr, weight_decay=config.weight_decay)
    opt_state = opt.init(params)

    def step(carry, step_key):
        params, opt_state = carry
        x = sample_features(step_key, probs, config.batch_size, config.n_features)
        loss, grads = jax.value_and_grad(loss_fn)(params, x, imp)
        updates, opt_state = opt.update(grads, opt_state, params)
        return (optax.apply_updates(params, updates), opt_state), loss

    @jax.jit
    def run_chunk(params, opt_state, key):
        keys = jax.random.split(key, chunk)
        (params, opt_state), _ = jax.lax.scan(step, (params, opt_state), keys)
        x = sample_features(jax.random.fold_in(key, 1), probs, 4 * config.batch_size,
                            config.n_features)
        finite = jnp.all(jnp.isfinite(params["W"])) & jnp.all(jnp.isfinite(params["b"]))
        return params, opt_state, _per_instance_loss(params, x, imp), finite

    losses = []
    n_chunks = -(-config.steps // chunk)
    for i in tqdm(range(n_chunks), desc="TMS", disable=not progress):
        key, sub = jax.random.split(key)
        new_params, opt_state, loss, finite = run_chunk(params, opt_state, sub)
        loss = np.asarray(loss)
        # ReLU maps NaN to 0 on some backends, so check the parameters as well as the loss.
        if not (np.all(np.isfinite(loss)) and bool(finite)):
            raise FloatingPointError(
                f"TMS training became non-finite in chunk {i} (loss {loss}); the parameters "
                "of the previous chunk are discarded with it -- lower lr")
        params = new_params
        losses.append(loss)
    return params, {"loss": np.stack(losses), "steps": np.arange(1, n_chunks + 1) * chunk}


# ---- views (for one model: W [m, n]) -------------------------------------------------

def gram(W: jax.Array) -> jax.Array:
    """W^T W [n, n]: diagonal = ||W_i||^2, off-diagonal = interference between features."""
    return W.T @ W


def feature_norms(W: jax.Array) -> jax.Array:
    """||W_i||: ~1 when feature i is represented, ~0 when it is dropped."""
    return jnp.linalg.norm(W, axis=0)


def superposition(W: jax.Array, eps: float = 1e-8) -> jax.Array:
    """sum_{j != i} (W_hat_i . W_j)^2: how much other features share feature i's direction."""
    W_hat = W / (feature_norms(W) + eps)
    overlaps = (W_hat.T @ W) ** 2
    return jnp.sum(overlaps, axis=1) - jnp.diag(overlaps)


def feature_dimensionality(W: jax.Array, eps: float = 1e-8) -> jax.Array:
    """D_i = ||W_i||^2 / sum_j (W_hat_i . W_j)^2 (paper's "feature dimensionality").

    1 for a feature with its own dimension, 1/2 for an antipodal pair, 2/5 for a
    pentagon in 2D; 0 for a dropped feature.
    """
    norms = feature_norms(W)
    W_hat = W / (norms + eps)
    return norms**2 / (jnp.sum((W_hat.T @ W) ** 2, axis=1) + eps)


def angles_2d(W: jax.Array) -> np.ndarray:
    """Angle (radians, in [0, 2pi)) of each feature's direction in a 2-D hidden space."""
    W = np.asarray(W)
    if W.shape[0] != 2:
        raise ValueError(f"angles_2d needs a 2-D hidden layer, got W of shape {W.shape}")
    return np.mod(np.arctan2(W[1], W[0]), 2 * np.pi)


class HiddenActivations:
    """The hidden layer h = W x of one trained model, as an endless, replayable stream of
    [batch_size, m] batches (what an SAE is trained on), with the true codes x available.

    Batch i depends only on (seed, i), so iterating again replays the same data and
    `seek(i)` resumes at batch i (the interface `interp.sae.train` expects).
    """

    def __init__(self, W, feature_probability: float, batch_size: int, seed: int):
        if not 0.0 < float(feature_probability) <= 1.0:
            raise ValueError(f"feature_probability must be in (0, 1], got {feature_probability}")
        self.W = jnp.asarray(W)
        self.p = float(feature_probability)
        self.batch_size = int(batch_size)
        self.seed = int(seed)
        self._start = 0
        n = self.W.shape[1]
        self._sample = jax.jit(lambda k: sample_features(k, jnp.array([self.p]),
                                                         self.batch_size, n)[0])

    def seek(self, start: int) -> None:
        self._start = int(start)

    def codes(self, i: int) -> np.ndarray:
        """The true feature values x [batch_size, n] behind batch i."""
        return np.asarray(self._sample(jax.random.fold_in(jax.random.PRNGKey(self.seed), i)))

    def batch(self, i: int) -> np.ndarray:
        return np.asarray(hidden(self.W, self.codes(i)))

    def __iter__(self):
        i, self._start = self._start, 0
        while True:
            yield self.batch(i)
            i += 1
