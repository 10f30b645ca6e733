"""Measurements behind the ITO notebook (snippets.md section 3.3, E1-E5), kept out of the notebook
so they are tested: per-row reconstruction errors along a pursuit frontier, the dictionary-transfer
matrix score[training L0, test L0] with a bootstrap noise level, and the verdict rules.

Everything works on per-row squared errors `sq_err[..., n_rows]` and the rows' group ids (the
held-out context each row came from), so any FVU and any paired difference of FVUs can be
bootstrapped over contexts (rows inside one context are correlated, contexts are not):

    FVU = sum_rows ||x - x_hat||^2 / sum_rows ||x - mean(x)||^2        (snippets.md section 1.3)
"""

from __future__ import annotations

import dataclasses
import math
import time
from collections.abc import Sequence

import jax
import numpy as np

from .pursuit import gradient_pursuit


@dataclasses.dataclass(frozen=True)
class FrontierErrors:
    """Squared errors of one dictionary's codes at several test ks, from one pursuit run."""

    ks: np.ndarray        # int [n_k]: the k each column of codes was allowed
    l0: np.ndarray        # float [n_k]: mean achieved L0 (<= k)
    sq_err: np.ndarray    # float [n_k, n_rows]: ||x - x_hat||^2 per row


def row_sq_err(x, x_hat) -> np.ndarray:
    """||x - x_hat||^2 per row, in float64."""
    x = np.asarray(x, np.float64)
    return np.sum((x - np.asarray(x_hat, np.float64)) ** 2, axis=-1)


def total_variance(x) -> float:
    """sum_rows ||x - mean(x)||^2: the FVU denominator."""
    x = np.asarray(x, np.float64)
    return float(np.sum((x - x.mean(0)) ** 2))


def fvu(sq_err, x) -> np.ndarray:
    """FVU from per-row squared errors (any leading axes) and the rows they belong to."""
    return np.sum(np.asarray(sq_err, np.float64), axis=-1) / total_variance(x)


def pursuit_frontier(dictionary, x, ks: Sequence[int], *, bias=None, batch_size: int = 1024,
                     **pursuit_options) -> FrontierErrors:
    """Gradient pursuit run once to max(ks) (snapshots after every iteration, the "whole frontier
    from one decoder" of the post), read at every k in `ks`; rows in batches of `batch_size`.

    `pursuit_options` go to `gradient_pursuit` (max_topk, step, support, precision, ...)."""
    ks = np.asarray(sorted({int(k) for k in ks}))
    if ks.size == 0 or ks[0] < 1:
        raise ValueError(f"ks must be positive ints; got {ks.tolist()}")
    x = np.asarray(x, np.float32)
    if x.ndim != 2:
        raise ValueError(f"x must be [n_rows, d]; got shape {x.shape}")
    sq_err = np.zeros((len(ks), len(x)))
    l0 = np.zeros((len(ks), len(x)))
    for lo in range(0, len(x), batch_size):
        xb = x[lo:lo + batch_size]
        front = gradient_pursuit(dictionary, xb, int(ks[-1]), bias=bias, frontier=True,
                                 **pursuit_options)
        for j, k in enumerate(ks):
            codes = front.at(int(k))
            sq_err[j, lo:lo + len(xb)] = row_sq_err(xb, codes.decode(dictionary, bias))
            l0[j, lo:lo + len(xb)] = np.asarray(codes.l0())
    return FrontierErrors(ks, l0.mean(1), sq_err)


def encoder_errors(model, x, *, batch_size: int = 1024) -> tuple[float, np.ndarray]:
    """(mean L0, per-row squared error) of anything with encode/decode (an SAE, an ITO encoder,
    a `ShrinkageControlled` SAE) on rows x."""
    x = np.asarray(x, np.float32)
    l0, err = [], []
    for lo in range(0, len(x), batch_size):
        f = model.encode(x[lo:lo + batch_size])
        l0.append(np.sum(np.asarray(f) != 0, axis=-1))
        err.append(row_sq_err(x[lo:lo + batch_size], model.decode(f)))
    return float(np.concatenate(l0).mean()), np.concatenate(err)


def bootstrap_fvu_difference(err_a, err_b, x, groups, *, n_boot: int = 1000,
                             seed: int = 0) -> tuple[float, float]:
    """FVU(b) - FVU(a) on the same rows, and its bootstrap standard error, resampling whole
    groups (held-out contexts) with replacement: a paired comparison, so shared hard rows cancel.
    Works on stacked errors too (leading axes broadcast; returns arrays then)."""
    err_a, err_b = np.asarray(err_a, np.float64), np.asarray(err_b, np.float64)
    groups = np.asarray(groups)
    x = np.asarray(x, np.float64)
    if err_a.shape[-1] != len(x) or err_b.shape[-1] != len(x) or len(groups) != len(x):
        raise ValueError(f"errors {err_a.shape}, {err_b.shape}, groups {groups.shape} and x "
                         f"{x.shape} must have the same number of rows")
    ids, inverse = np.unique(groups, return_inverse=True)
    n_g = len(ids)
    diff = err_b - err_a
    # per-group sums of the error difference and of the variance terms (around the global mean)
    one_hot = np.zeros((len(x), n_g))
    one_hot[np.arange(len(x)), inverse] = 1.0
    d_g = diff @ one_hot                                   # [..., n_g]
    v_g = (np.sum((x - x.mean(0)) ** 2, axis=1)) @ one_hot  # [n_g]
    effect = d_g.sum(-1) / v_g.sum()
    if n_g < 2:
        return effect, np.full_like(effect, np.nan)
    rng = np.random.default_rng(seed)
    counts = np.stack([np.bincount(rng.integers(0, n_g, n_g), minlength=n_g)
                       for _ in range(n_boot)]).astype(np.float64)  # [n_boot, n_g]
    boots = (d_g @ counts.T) / (counts @ v_g)             # [..., n_boot]
    return effect, np.std(boots, axis=-1, ddof=1)


@dataclasses.dataclass(frozen=True)
class TransferResult:
    """Dictionary transfer (claim I2): which training L0 is best at each test L0."""

    test_ks: np.ndarray         # [n_k] test ks judged (inside the training-L0 range)
    best: np.ndarray            # [n_k] index of the decoder with the lowest FVU
    matched: np.ndarray         # [n_k] index of the decoder whose training L0 is nearest k (log)
    advantage: np.ndarray       # [n_k] FVU(matched) - FVU(best) (>= 0)
    advantage_se: np.ndarray    # [n_k] its bootstrap standard error
    higher_and_better: np.ndarray  # bool [n_k]: best trained at L0 > k and beats matched by > 2 SE
    matched_better: np.ndarray  # bool [n_k]: the matched (or a lower-L0) decoder is best

    @property
    def verdict(self) -> str:
        """Majority rule over the judged test ks (see `dictionary_transfer`)."""
        n = len(self.test_ks)
        if n == 0:
            return "inconclusive"
        if self.higher_and_better.sum() > n / 2:
            return "reproduced"
        if self.matched_better.sum() > n / 2:
            return "not reproduced"
        return "inconclusive"

    def as_numbers(self, train_l0) -> dict:
        train_l0 = np.asarray(train_l0)
        return {"test_ks": self.test_ks.tolist(),
                "best_train_l0": train_l0[self.best].round(1).tolist(),
                "matched_train_l0": train_l0[self.matched].round(1).tolist(),
                "fvu_advantage": self.advantage.round(4).tolist(),
                "advantage_se": self.advantage_se.round(4).tolist(),
                "n_higher_and_better": int(self.higher_and_better.sum()),
                "n_judged": int(len(self.test_ks))}


def dictionary_transfer(train_l0, ks, sq_err, x, groups, *, n_se: float = 2.0,
                        n_boot: int = 1000, seed: int = 0) -> TransferResult:
    """The rule for claim I2 on the matrix sq_err[decoder, test k, row].

    A test k is judged only if it lies inside the range of training L0s (so a decoder trained
    "at" k exists on both sides). For each judged k: `best` = argmin FVU over decoders; `matched`
    = the decoder whose training L0 is nearest to k in log scale. The claim holds at k when the
    best decoder was trained at a higher L0 than k (and than the matched one) and beats the
    matched decoder by more than `n_se` bootstrap standard errors (contexts resampled). It fails
    at k when the best decoder is the matched one or one trained at lower L0. Verdict: reproduced
    if the claim holds at a majority of judged ks, not reproduced if it fails at a majority,
    else inconclusive.
    """
    train_l0 = np.asarray(train_l0, np.float64)
    ks = np.asarray(ks)
    sq_err = np.asarray(sq_err, np.float64)
    if sq_err.shape[:2] != (len(train_l0), len(ks)):
        raise ValueError(f"sq_err must be [n_decoders={len(train_l0)}, n_k={len(ks)}, rows]; "
                         f"got {sq_err.shape}")
    scores = fvu(sq_err, x)  # [n_dec, n_k]
    lo, hi = train_l0.min(), train_l0.max()
    cols = [j for j, k in enumerate(ks) if lo <= k <= hi]
    best, matched, adv, se, good, bad = [], [], [], [], [], []
    for j in cols:
        k = float(ks[j])
        b = int(np.argmin(scores[:, j]))
        m = int(np.argmin(np.abs(np.log(train_l0) - math.log(k))))
        effect, err = bootstrap_fvu_difference(sq_err[b, j], sq_err[m, j], x, groups,
                                               n_boot=n_boot, seed=seed)
        best.append(b)
        matched.append(m)
        adv.append(float(effect))
        se.append(float(err))
        good.append(bool(train_l0[b] > k and train_l0[b] > train_l0[m]
                         and effect > n_se * err))
        bad.append(bool(train_l0[b] <= train_l0[m]))
    return TransferResult(ks[cols], np.asarray(best, int), np.asarray(matched, int),
                          np.asarray(adv), np.asarray(se), np.asarray(good, bool),
                          np.asarray(bad, bool))


def interpolate_log_l0(l0, values, target: float) -> float:
    """`values` at L0 = target, linear in log L0 along a frontier (NaN outside its range)."""
    l0 = np.asarray(l0, np.float64)
    values = np.asarray(values, np.float64)
    order = np.argsort(l0)
    l0, values = l0[order], values[order]
    if not (l0[0] <= target <= l0[-1]) or target <= 0:
        return float("nan")
    return float(np.interp(math.log(target), np.log(l0), values))


def frontier_errors_at_l0(front: FrontierErrors, target: float) -> np.ndarray:
    """Per-row squared errors interpolated (linearly in log L0) to the achieved L0 `target`, so an
    encoder at L0 = target can be compared with ITO on the same decoder row by row. NaN outside
    the frontier's L0 range."""
    l0 = np.asarray(front.l0, np.float64)
    if not (l0.min() <= target <= l0.max()) or target <= 0:
        return np.full(front.sq_err.shape[-1], np.nan)
    order = np.argsort(l0)
    l0s, errs = np.log(l0[order]), front.sq_err[order]
    j = int(np.clip(np.searchsorted(l0s, math.log(target)), 1, len(l0s) - 1))
    w = (math.log(target) - l0s[j - 1]) / (l0s[j] - l0s[j - 1]) if l0s[j] > l0s[j - 1] else 1.0
    return (1 - w) * errs[j - 1] + w * errs[j]


def tiny_activation_pruning(model, x, thresholds: Sequence[float], *,
                            batch_size: int = 1024) -> dict:
    """How much of an SAE's L0 comes from tiny activations (claim I6): zero every latent whose
    contribution f_i ||d_i|| is below `t` times the row's largest contribution, for each t, and
    report the L0 and FVU that remain. A large L0 drop at a negligible FVU cost means L0 counts
    latents that barely matter (L0 is a noisy sparsity measure)."""
    x = np.asarray(x, np.float32)
    norms = getattr(model, "decoder_norms", 1.0)  # an SAE's property ([n_latents])
    norms = np.asarray(norms() if callable(norms) else norms)
    out = {"threshold": [], "l0": [], "fvu": []}
    fs = [np.asarray(model.encode(x[lo:lo + batch_size])) for lo in range(0, len(x), batch_size)]
    for t in [0.0, *thresholds]:
        l0, err = [], []
        for lo, f in zip(range(0, len(x), batch_size), fs):
            contrib = f * norms
            keep = contrib > t * contrib.max(axis=-1, keepdims=True)
            fk = np.where(keep & (f > 0), f, 0.0).astype(np.float32)
            l0.append((fk > 0).sum(-1))
            err.append(row_sq_err(x[lo:lo + batch_size], model.decode(fk)))
        out["threshold"].append(float(t))
        out["l0"].append(float(np.concatenate(l0).mean()))
        out["fvu"].append(float(fvu(np.concatenate(err), x)))
    return {k: np.asarray(v) for k, v in out.items()}


def best_time(fn, *args, repeats: int = 3) -> float:
    """Best-of-`repeats` wall time of `fn(*args)` after one untimed call (compilation), waiting
    for JAX's asynchronous results."""
    jax.block_until_ready(fn(*args))
    best = math.inf
    for _ in range(repeats):
        t = time.perf_counter()
        jax.block_until_ready(fn(*args))
        best = min(best, time.perf_counter() - t)
    return best


def heldout_activations(model, site: str, tokens, *, batch_size: int = 8):
    """Activations of `site` on held-out contexts `tokens` [N, T] (BOS in column 0), BOS rows
    dropped as in the store and the splice evaluation: (x [N * (T-1), d] float32, group ids
    [N * (T-1)] = the context each row came from, for bootstrapping over contexts)."""
    from interp.lm_sae import site_activations

    tokens = np.asarray(tokens)
    x = site_activations(model, site, tokens, batch_size=batch_size)
    groups = np.repeat(np.arange(len(tokens)), tokens.shape[1] - 1)
    return x, groups


# ------------------------------------------------------------------------------ verdict rules


def majority_verdict(effects, ses, *, n_se: float = 2.0) -> str:
    """Many paired comparisons (e.g. one per SAE), each `effect` > 0 meaning "the claim holds":
    reproduced if more than half are > n_se standard errors above 0, not reproduced if more than
    half are > n_se below 0, else inconclusive. NaN entries (not measurable) count as neither."""
    effects, ses = np.asarray(effects, float), np.asarray(ses, float)
    n = len(effects)
    if n == 0:
        return "inconclusive"
    wins = int(np.sum(effects > n_se * ses))
    losses = int(np.sum(effects < -n_se * ses))
    if wins > n / 2:
        return "reproduced"
    if losses > n / 2:
        return "not reproduced"
    return "inconclusive"


def step_size_verdict(fvu_gain: float, fvu_gain_se: float, time_ratio: float, *,
                      n_se: float = 2.0, max_time_ratio: float = 1.25) -> str:
    """Claim I4, "the exact line-search step is cheap and better than fixed steps":
    `fvu_gain` = FVU(best fixed step) - FVU(exact). Reproduced if the gain is > n_se SE and the
    exact step costs at most `max_time_ratio` times the fixed step's time; not reproduced if the
    best fixed step is better by > n_se SE or the exact step costs over twice as much;
    inconclusive otherwise."""
    if not all(math.isfinite(v) for v in (fvu_gain, fvu_gain_se, time_ratio)):
        return "inconclusive"
    if fvu_gain < -n_se * fvu_gain_se or time_ratio > 2 * max_time_ratio:
        return "not reproduced"
    if fvu_gain > n_se * fvu_gain_se and time_ratio <= max_time_ratio:
        return "reproduced"
    return "inconclusive"


def max_topk_verdict(max_topks, seconds, fvus, *, min_speedup: float = 1.5,
                     max_rel_cost: float = 0.10) -> tuple[str, dict]:
    """Claim I5, "adding several atoms per iteration saves time at a small quality cost".
    Relative to max_top-k = 1: speedup = t(1) / t(m), cost = FVU(m) / FVU(1) - 1. Reproduced if
    some m > 1 is at least `min_speedup` times faster at a relative cost <= `max_rel_cost`; not
    reproduced if every m > 1 is either under 1.1x faster or costs over 2.5 * max_rel_cost;
    inconclusive otherwise. Returns (verdict, numbers)."""
    m = np.asarray(max_topks)
    t, f = np.asarray(seconds, float), np.asarray(fvus, float)
    if 1 not in m.tolist() or len(m) < 2:
        raise ValueError(f"max_topks must include 1 and at least one m > 1; got {m.tolist()}")
    base = int(np.nonzero(m == 1)[0][0])
    speedup = t[base] / t
    cost = f / f[base] - 1
    others = m != 1
    good = others & (speedup >= min_speedup) & (cost <= max_rel_cost)
    bad = others & ((speedup < 1.1) | (cost > 2.5 * max_rel_cost))
    verdict = ("reproduced" if good.any() else
               "not reproduced" if bad[others].all() else "inconclusive")
    return verdict, {"max_topk": m.tolist(), "speedup": speedup.round(2).tolist(),
                     "rel_fvu_cost": cost.round(4).tolist()}


def l0_noise_verdict(pruning: Sequence[dict], *, max_fvu_increase: float = 0.01,
                     reproduced_at: float = 0.2, refuted_at: float = 0.05) -> tuple[str, dict]:
    """Claim I6, "L0 is noisy because SAEs have many tiny activations", from one
    `tiny_activation_pruning` result per SAE: for each SAE, the largest threshold whose FVU rises
    by at most `max_fvu_increase` (absolute) and the fraction of L0 it removes. Reproduced if the
    median fraction over SAEs is >= `reproduced_at`, not reproduced if <= `refuted_at`,
    inconclusive between. Returns (verdict, numbers)."""
    fractions, thresholds = [], []
    for p in pruning:
        ok = np.nonzero(p["fvu"] - p["fvu"][0] <= max_fvu_increase)[0]
        j = int(ok.max())
        fractions.append(1 - p["l0"][j] / p["l0"][0] if p["l0"][0] > 0 else 0.0)
        thresholds.append(float(p["threshold"][j]))
    med = float(np.median(fractions)) if fractions else float("nan")
    verdict = ("inconclusive" if not math.isfinite(med) else "reproduced" if med >= reproduced_at
               else "not reproduced" if med <= refuted_at else "inconclusive")
    return verdict, {"l0_fraction_removed": np.round(fractions, 3).tolist(),
                     "threshold_used": thresholds, "median_fraction": med,
                     "max_fvu_increase": max_fvu_increase}
