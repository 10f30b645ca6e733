"""From an SAE and stored residual activations to the per-latent arrays that records are cut from.

Auto-interp needs, for a sample of latents, their activation on every token of many contexts
(to pick top, quantile and random excerpts) and, for every latent, how often it fires (to sample
alive latents and to relate scores to density). Holding all latents for all tokens would cost
`tokens x d_sae` floats (2.3 GB for 250k tokens x 2304 latents), so `latent_activations`
encodes the contexts in chunks, keeps the columns of the latents asked for, and reduces the rest
to per-latent counts.

Excerpts are short windows cut from the stored contexts (Bills et al. 2023 used 64-token
excerpts; Anthropic 2023 used similar windows); the BOS position is dropped first because its
residual is a huge-norm outlier that SAE training also excludes.

    la = latent_activations(sae.encode, lambda a, b: store.read(site, a, b), n_contexts=512)
    pick = sample_latents(la.density, 24, seed=0)
    la = latent_activations(sae.encode, read, 512, latents=pick)
    acts, ids = excerpts(la.acts, tokens[:512], width=32)   # acts [n_excerpts, 32, len(pick)]
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Sequence

import numpy as np
from tqdm import tqdm


@dataclasses.dataclass(frozen=True)
class LatentActivations:
    acts: np.ndarray  # [n_contexts, T - skip_first, len(latents)] float32 (empty last axis if none)
    latents: np.ndarray  # [k] int: which latents `acts` holds, in that order
    density: np.ndarray  # [d_sae] fraction of (non-skipped) tokens where each latent is > 0
    mean_act: np.ndarray  # [d_sae] mean activation where active (0 for a latent never active)
    l0: float  # mean number of active latents per token
    n_tokens: int

    def column(self, latent: int) -> np.ndarray:
        """Activations `[n_contexts, T]` of one latent held in `acts`."""
        where = np.flatnonzero(self.latents == latent)
        if not len(where):
            raise KeyError(f"latent {latent} was not kept; kept {self.latents.tolist()}")
        return self.acts[..., where[0]]


def latent_activations(encode: Callable, read: Callable[[int, int], np.ndarray], n_contexts: int,
                       *, latents: Sequence[int] | None = None, chunk: int = 32,
                       skip_first: int = 1, progress: bool = True) -> LatentActivations:
    """Encode contexts `read(start, stop) -> [b, T, d]` in chunks of `chunk` contexts.

    `encode` maps `[..., d]` to latent activations `[..., d_sae]` (e.g. `sae.encode`, jitted
    here). The first `skip_first` positions of each context (BOS) are dropped everywhere.
    """
    import jax

    if n_contexts < 1:
        raise ValueError(f"n_contexts must be positive, got {n_contexts}")
    if chunk < 1:
        raise ValueError(f"chunk must be positive, got {chunk}")
    keep = np.asarray([] if latents is None else list(latents), dtype=np.int64)
    enc = jax.jit(encode)
    count = total = None
    kept, n_tok, active_sum = [], 0, 0.0
    for lo in tqdm(range(0, n_contexts, chunk), desc="encode", disable=not progress):
        x = np.asarray(read(lo, min(lo + chunk, n_contexts)), dtype=np.float32)
        if x.ndim != 3:
            raise ValueError(f"read(start, stop) must return [contexts, T, d], got {x.shape}")
        f = np.asarray(enc(x[:, skip_first:]), dtype=np.float32)
        if not np.all(np.isfinite(f)):
            raise ValueError(f"the encoder returned NaN or inf on contexts {lo}..")
        flat = f.reshape(-1, f.shape[-1])
        on = flat > 0
        if count is None:
            count = np.zeros(flat.shape[1], np.int64)
            total = np.zeros(flat.shape[1], np.float64)
            if len(keep) and (keep.min() < 0 or keep.max() >= flat.shape[1]):
                raise IndexError(f"latents must lie in 0..{flat.shape[1] - 1}")
        count += on.sum(0)
        total += flat.sum(0, dtype=np.float64)
        active_sum += float(on.sum())
        n_tok += flat.shape[0]
        kept.append(f[..., keep])
    acts = np.concatenate(kept)
    density = count / n_tok
    mean_act = np.where(count > 0, total / np.maximum(count, 1), 0.0)
    return LatentActivations(acts, keep, density, mean_act, active_sum / n_tok, n_tok)


def sample_latents(density, n: int, *, seed: int, min_density: float = 0.0,
                   max_density: float = 1.0) -> np.ndarray:
    """A seeded uniform sample (sorted) of `n` latents with `min_density < density <= max_density`
    (the default keeps every alive latent). Fewer if fewer qualify."""
    density = np.asarray(density, dtype=np.float64)
    pool = np.flatnonzero((density > min_density) & (density <= max_density))
    if not len(pool):
        raise ValueError(f"no latent has density in ({min_density}, {max_density}]")
    rng = np.random.default_rng(seed)
    return np.sort(rng.choice(pool, min(n, len(pool)), replace=False))


def excerpts(acts, token_ids, width: int) -> tuple[np.ndarray, np.ndarray]:
    """Cut `[n, T, ...]` activations and the matching `[n, T]` token ids into non-overlapping
    windows of `width` tokens: `[n * (T // width), width, ...]` (a final partial window is
    dropped, so every excerpt has the same length)."""
    acts, token_ids = np.asarray(acts), np.asarray(token_ids)
    if token_ids.ndim != 2 or acts.shape[:2] != token_ids.shape:
        raise ValueError(f"acts {acts.shape} and token ids {token_ids.shape} must share [n, T]")
    n, t = token_ids.shape
    if not 1 <= width <= t:
        raise ValueError(f"width must be in 1..{t}, got {width}")
    k = t // width
    a = acts[:, :k * width].reshape(n * k, width, *acts.shape[2:])
    return a, token_ids[:, :k * width].reshape(n * k, width)


def context_frequency(acts) -> np.ndarray:
    """Fraction of excerpts `[n, T, k]` in which each latent fires at least once: `[k]`."""
    return np.mean(np.asarray(acts).max(axis=1) > 0, axis=0)
