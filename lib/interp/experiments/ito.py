"""Measurements and claim verdicts of the ITO page (book/ito.ipynb; GDM mech-interp Progress
Update #1 (April 2024), Inference-time optimisation, experiments E1-E5): per-row reconstruction
errors along a pursuit frontier, the matrix score[training L0, test L0], timings, and the rules
that decide claims I1..I6 with `interp.claims.judge`.

Everything works on per-row squared errors `sq_err[..., n_rows]` and the rows' group ids (the
held-out context each row came from):

    FVU = sum_rows ||x - x_hat||^2 / sum_rows ||x - mean(x)||^2

What is replicated, claim by claim (the page studies one sweep of SAEs in depth; only I2, a
claim about training, retrains the sweep from further seeds):

- I1 (ITO beats the SAE's encoder at equal L0) and I3 (the gap survives a rescale-and-shift of
  the encoder's outputs) are claims about each *given* trained SAE: its encoder against ITO on its
  own decoder. For one SAE the only randomness left is which inputs it is evaluated on, so a
  bootstrap over held-out *contexts* (rows within a context are correlated, contexts are not) is
  the honest uncertainty of that SAE's comparison; it says nothing about another training run.
  Each SAE of the sweep is one part of an `all_parts` "all hold" rule (every SAE's 95% CI must
  exclude 0 on ITO's side; any SAE reliably the other way, Holm-adjusted, refutes it).
- I2 (decoders trained at a higher L0 are better dictionaries, even at a low test L0) is a claim
  about *training*, so its unit of replication is the trained sweep, never held-out contexts of
  one SAE. Within one sweep, sort the SAEs by training L0; for each SAE i but the last, at the
  test L0 equal to its own training L0, one item is log FVU(ITO on decoder i) - log FVU(ITO on
  decoder i + 1) (> 0: the decoder trained at the next higher L0 is better). The log makes
  items at different L0s comparable (a relative gain). A sweep's value is the mean of its
  items; the sweep is retrained from several seeds (initialisation and data order), and the
  effect is a t interval over seeds (fewer than 3 is inconclusive by rule). The alive-atom
  control reruns the same on each decoder restricted to the atoms that fire on the held-out
  rows, so that a low-L0 decoder is not called a worse dictionary only for its dead atoms: when
  it is run, I2 needs both (`all_parts`, "all hold").
- I4, I5 (exact step; several atoms per iteration) are timing claims on one decoder: the wall
  time samples are the timing repeats (t over repeats, interleaved so machine-load drift hits
  both arms; min_n 3), the quality parts are bootstrapped over held-out contexts (a claim about
  the algorithm on this decoder).
- I6 (many tiny activations) is a claim about baseline SAEs: items are the SAEs of the sweep.
"""

from __future__ import annotations

import dataclasses
import math
import time
from collections.abc import Callable, Mapping, Sequence

import jax
import numpy as np

from interp import claims, stats
from interp.ito import gradient_pursuit

TIMING_NOTE = "timing claim: wall-clock samples are the timing repeats (t over repeats)"
T_OVER_REPEATS = "t over timing repeats"


# ------------------------------------------------------------------------------ reductions
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


def context_items(row_values, groups, denominator: float) -> np.ndarray:
    """Per-context items whose mean is sum(row_values) / denominator: n_contexts times each
    context's sum, over the fixed denominator. With row_values = err_b - err_a and the total
    variance as denominator, the mean is FVU(b) - FVU(a), and a bootstrap over these items
    resamples whole held-out contexts (the denominator, a normaliser, is held fixed)."""
    row_values = np.asarray(row_values, np.float64)
    groups = np.asarray(groups)
    if row_values.shape != groups.shape:
        raise ValueError(f"row values {row_values.shape} and groups {groups.shape} must have the "
                         f"same number of rows")
    ids, inverse = np.unique(groups, return_inverse=True)
    sums = np.bincount(inverse, weights=row_values, minlength=len(ids))
    return len(ids) * sums / float(denominator)


def fvu_gain(err_better, err_worse, x, groups, *, n_boot: int, seed: int) -> stats.Effect:
    """FVU(worse) - FVU(better) on the same rows (> 0: the first arm reconstructs better), with
    a bootstrap over held-out contexts: a paired comparison, so shared hard rows cancel."""
    diff = np.asarray(err_worse, np.float64) - np.asarray(err_better, np.float64)
    if diff.shape[-1] != len(x):
        raise ValueError(f"errors have {diff.shape[-1]} rows but x has {len(x)}")
    items = context_items(diff, groups, total_variance(x))
    return stats.Effect.from_items(items, n_boot=n_boot, seed=seed)


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


def frontier_ks(test_ks: Sequence[int], encoder_l0: Sequence[float], own: int,
                n_latents: int) -> list[int]:
    """The ks at which SAE `own`'s frontier is read: the test ks plus a k just above the L0 of
    this encoder and of every encoder trained at a lower L0 (achieved L0 can fall slightly below
    k), so that ITO can be compared at each of those L0s (claims I1, I2) without running the
    pursuit past this SAE's own k."""
    l0 = np.asarray(encoder_l0, np.float64)
    extra = {min(int(np.ceil(v * 1.05)) + 1, n_latents) for v in l0[l0 <= l0[own]]}
    return sorted({int(k) for k in test_ks} | extra)


@dataclasses.dataclass(frozen=True)
class TransferTable:
    """score[training L0, test L0], per judged test k: the best decoder and the decoder trained
    nearest k (log scale), and FVU(matched) - FVU(best) with its bootstrap SE over contexts
    (of this evaluation only). Descriptive: claim I2 is decided by `dictionary_pairs`."""

    test_ks: np.ndarray
    best: np.ndarray
    matched: np.ndarray
    advantage: np.ndarray
    advantage_se: np.ndarray

    def rows(self, train_l0) -> list[dict]:
        train_l0 = np.asarray(train_l0)
        return [{"test k": int(k), "best training L0": float(train_l0[b]),
                 "matched training L0": float(train_l0[m]), "FVU gain over matched": float(a),
                 "SE (contexts)": float(s)}
                for k, b, m, a, s in zip(self.test_ks, self.best, self.matched, self.advantage,
                                         self.advantage_se)]


def dictionary_transfer(train_l0, ks, sq_err, x, groups, *, n_boot: int = 1000,
                        seed: int = 0) -> TransferTable:
    """The matrix sq_err[decoder, test k, row] read per test k inside the range of training L0s:
    the best decoder, the matched one (training L0 nearest k in log scale), and the gap."""
    train_l0 = np.asarray(train_l0, np.float64)
    ks = np.asarray(ks)
    sq_err = np.asarray(sq_err, np.float64)
    if sq_err.shape[:2] != (len(train_l0), len(ks)):
        raise ValueError(f"sq_err must be [n_decoders={len(train_l0)}, n_k={len(ks)}, rows]; "
                         f"got {sq_err.shape}")
    scores = fvu(sq_err, x)
    cols = [j for j, k in enumerate(ks) if train_l0.min() <= k <= train_l0.max()]
    best = [int(np.argmin(scores[:, j])) for j in cols]
    matched = [int(np.argmin(np.abs(np.log(train_l0) - math.log(float(ks[j]))))) for j in cols]
    gains = [fvu_gain(sq_err[b, j], sq_err[m, j], x, groups, n_boot=n_boot, seed=seed)
             for j, b, m in zip(cols, best, matched)]
    return TransferTable(ks[cols], np.asarray(best, int), np.asarray(matched, int),
                         np.array([g.mean for g in gains]), np.array([g.se for g in gains]))


def dictionary_pairs(train_l0, fronts: Sequence[FrontierErrors], x) -> list[dict]:
    """Claim I2's items: SAEs sorted by training L0; for each SAE but the last, at the test L0
    equal to its own training L0, ITO's FVU on its decoder and on the decoder trained at the
    next higher L0, and `log_gain` = log of their ratio (> 0: the higher-L0 decoder is better).
    NaN where a frontier does not reach that L0."""
    train_l0 = np.asarray(train_l0, np.float64)
    order = np.argsort(train_l0)
    out = []
    for lo, hi in zip(order[:-1], order[1:]):
        target = float(train_l0[lo])
        f_lo = float(fvu(frontier_errors_at_l0(fronts[lo], target), x))
        f_hi = float(fvu(frontier_errors_at_l0(fronts[hi], target), x))
        out.append({"test L0": target, "higher training L0": float(train_l0[hi]),
                    "FVU, decoder trained at the test L0": f_lo,
                    "FVU, decoder trained higher": f_hi, "log_gain": math.log(f_lo / f_hi)
                    if f_lo > 0 and f_hi > 0 else float("nan")})
    return out


def i2_ks(test_ks: Sequence[int], encoder_l0: Sequence[float], own: int,
          n_latents: int) -> list[int]:
    """`frontier_ks` cut to what claim I2 reads on decoder `own` (its own training L0, or for
    the highest-L0 SAE the next lower one's): the pursuit's cost grows with its largest k."""
    l0 = np.asarray(encoder_l0, np.float64)
    lower = l0[l0 < l0[own]]
    need = l0[own] if own != int(np.argmax(l0)) or not lower.size else lower.max()
    cap = min(int(np.ceil(need * 1.05)) + 1, n_latents)
    return [k for k in frontier_ks(test_ks, encoder_l0, own, n_latents) if k <= cap]


def alive_atoms(model, x, *, batch_size: int = 1024) -> np.ndarray:
    """bool [n_latents]: the latents of `model` that fire on at least one row of x."""
    x = np.asarray(x, np.float32)
    fired = None
    for lo in range(0, len(x), batch_size):
        f = np.asarray(model.encode(x[lo:lo + batch_size])) != 0
        fired = f.any(0) if fired is None else fired | f.any(0)
    return fired


@dataclasses.dataclass(frozen=True)
class SweepDictionaries:
    """Claim I2's measurements on one trained sweep: `dictionary_pairs` on the whole decoders,
    and (alive-atom control) on each decoder restricted to its atoms that fire on the rows."""

    train_l0: np.ndarray
    pairs: list
    alive_pairs: list | None
    n_alive: np.ndarray


def sweep_dictionaries(saes, x, test_ks: Sequence[int], *, encoder_l0=None, fronts=None,
                       alive_control: bool = True, batch_size: int = 1024
                       ) -> SweepDictionaries:
    """I2's pairs for one sweep of SAEs on rows x. `encoder_l0` / `fronts` reuse what the page
    already measured (the main seed); otherwise they are computed, each pursuit only as far as
    I2 reads it (`i2_ks`). A decoder whose atoms all fire reuses its full frontier."""
    n_latents = int(saes[0].params["W_dec"].shape[0])
    if encoder_l0 is None:
        encoder_l0 = [encoder_errors(s, x, batch_size=batch_size)[0] for s in saes]
    encoder_l0 = np.asarray(encoder_l0, np.float64)

    def frontier(s, i, atoms=None):
        d = s.params["W_dec"] if atoms is None else s.params["W_dec"][atoms]
        return pursuit_frontier(d, x, i2_ks(test_ks, encoder_l0, i, n_latents),
                                bias=s.params["b_dec"], batch_size=batch_size)

    if fronts is None:
        fronts = [frontier(s, i) for i, s in enumerate(saes)]
    alive = [alive_atoms(s, x, batch_size=batch_size) for s in saes]
    alive_pairs = None
    if alive_control:
        alive_fronts = [fronts[i] if a.all() else frontier(s, i, np.flatnonzero(a))
                        for i, (s, a) in enumerate(zip(saes, alive))]
        alive_pairs = dictionary_pairs(encoder_l0, alive_fronts, x)
    return SweepDictionaries(encoder_l0, dictionary_pairs(encoder_l0, fronts, x), alive_pairs,
                             np.array([int(a.sum()) for a in alive]))


def sweep_log_gain(pairs: Sequence[Mapping]) -> float:
    """One sweep's I2 value: the mean of its measurable adjacent-pair log gains (NaN if none)."""
    gains = [p["log_gain"] for p in pairs if math.isfinite(p["log_gain"])]
    return float(np.mean(gains)) if gains else float("nan")


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


def prunable_fraction(pruning: Mapping, max_fvu_increase: float) -> tuple[float, float]:
    """(fraction of L0 removed, threshold used) at the largest pruning threshold that raises FVU
    by at most `max_fvu_increase` (absolute) over the unpruned SAE."""
    ok = np.nonzero(np.asarray(pruning["fvu"]) - pruning["fvu"][0] <= max_fvu_increase)[0]
    j = int(ok.max())
    l0 = np.asarray(pruning["l0"], np.float64)
    return (1 - l0[j] / l0[0] if l0[0] > 0 else 0.0), float(pruning["threshold"][j])


def pursuit_fn(k: int, **options) -> Callable:
    """A jitted gradient pursuit to k with these options, (D, x, bias) -> code values."""
    return jax.jit(lambda D, x, b: gradient_pursuit(D, x, k, bias=b, **options).values)


def interleaved_times(fns: Mapping[str, Callable], *args, repeats: int) -> dict[str, np.ndarray]:
    """Wall seconds of each `fn(*args)`, `repeats` times each, after one untimed call (the
    compilation). The arms are interleaved (one call of each per round), so a change of machine
    load hits every arm alike and the per-round ratio is a paired sample."""
    for fn in fns.values():
        jax.block_until_ready(fn(*args))
    out = {name: [] for name in fns}
    for _ in range(repeats):
        for name, fn in fns.items():
            t = time.perf_counter()
            jax.block_until_ready(fn(*args))
            out[name].append(time.perf_counter() - t)
    return {name: np.asarray(v) for name, v in out.items()}


def context_groups(tokens) -> np.ndarray:
    """For the rows of `lm_sae.heldout_activations` on contexts `tokens` [N, T] (BOS rows
    dropped): the context each row came from, [N * (T-1)], for bootstrapping over contexts."""
    tokens = np.asarray(tokens)
    if tokens.ndim != 2 or tokens.shape[1] < 2:
        raise ValueError(f"tokens must be [contexts, T>=2], got shape {tokens.shape}")
    return np.repeat(np.arange(len(tokens)), tokens.shape[1] - 1)


# ------------------------------------------------------------------------------ claims
@dataclasses.dataclass
class Results:
    """What the notebook measured, as plain arrays; `verdicts` reads it.

    Per SAE i of the sweep: `train_l0[i]`, per-row errors of its encoder, of ITO on its decoder
    interpolated to the encoder's L0 (NaN where the frontier does not reach it), of the
    rescale-and-shift control, and its frontier. One decoder for the timing claims: errors and
    per-repeat seconds per step ("exact" and each fixed step) and per max top-k."""

    x: np.ndarray
    groups: np.ndarray
    train_l0: np.ndarray
    encoder_err: np.ndarray
    ito_err_at_encoder: np.ndarray
    fronts: list
    rescaled_err: np.ndarray | None = None
    step_err: dict = dataclasses.field(default_factory=dict)
    step_times: dict = dataclasses.field(default_factory=dict)
    step_k: int = 0
    topk_err: dict = dataclasses.field(default_factory=dict)
    topk_times: dict = dataclasses.field(default_factory=dict)
    topk_k: int = 0
    pruning: list = dataclasses.field(default_factory=list)
    ce_rows: list = dataclasses.field(default_factory=list)
    sweeps: list = dataclasses.field(default_factory=list)  # SweepDictionaries per seed (I2)


def _sae_name(i: int, l0: float) -> str:
    return f"SAE {i} (training L0 {l0:.1f})"


def _per_sae_gains(r: Results, better, worse, n_boot: int, seed: int) -> dict:
    """{SAE name: Effect of FVU(worse) - FVU(better)} over held-out contexts, for every SAE
    whose `better` errors are measurable (not NaN)."""
    return {_sae_name(i, r.train_l0[i]): fvu_gain(better[i], worse[i], r.x, r.groups,
                                                   n_boot=n_boot, seed=seed)
            for i in range(len(r.train_l0)) if not np.isnan(better[i]).any()}


def judge_i1(r: Results, *, n_boot: int, seed: int):
    """I1: for every SAE, ITO on its decoder at its encoder's L0 beats its encoder."""
    text = "ITO with an SAE's decoder reconstructs better than its encoder at equal L0"
    parts = _per_sae_gains(r, r.ito_err_at_encoder, r.encoder_err, n_boot, seed)
    numbers = {"unit": "each SAE is a part; bootstrap over held-out contexts of that SAE",
               "training_l0": np.round(r.train_l0, 1).tolist(),
               "n_sae_outside_frontier": len(r.train_l0) - len(parts),
               "delta_ce": [(round(c["L0"], 1), c["codes"], round(c["delta CE"], 4))
                            for c in r.ce_rows]}
    if not parts:
        return claims.not_tested("I1", text, source="post", numbers=numbers,
                                 reason="no encoder's L0 lies inside its ITO frontier's range")
    return claims.judge("I1", text, source="post", rule="all_parts", parts=parts,
                        part_rule=stats.ALL_HOLD, expected_sign=1, numbers=numbers)


def judge_i2(r: Results, *, n_boot: int, seed: int):
    """I2: a decoder trained at the next higher L0 beats the one trained at the test L0; the
    sweep's mean log gain, t over seeds (`r.sweeps`, one per trained seed), and with the
    alive-atom control the same on alive atoms only, both required (all_parts, all hold)."""
    text = ("At a fixed low test L0, decoders trained at higher L0 give better ITO "
            "reconstruction than decoders trained at that L0")
    sweeps = r.sweeps
    numbers = {"unit": "trained sweep (seed): the mean log FVU ratio over its adjacent pairs; "
                       "t over seeds, never over contexts",
               "n_seeds": len(sweeps),
               "test_l0_per_seed": [[round(p["test L0"], 1) for p in w.pairs] for w in sweeps],
               "log_fvu_ratio_per_seed": [[round(p["log_gain"], 4) for p in w.pairs]
                                          for w in sweeps]}
    gains = [sweep_log_gain(w.pairs) for w in sweeps]
    if not sweeps or not all(math.isfinite(g) for g in gains):
        return claims.not_tested("I2", text, source="post", numbers=numbers,
                                 reason="a sweep has fewer than 2 SAEs whose frontiers reach a "
                                        "common L0" if sweeps else "no sweep was measured")
    effect = stats.Effect.from_seeds(gains)
    if any(w.alive_pairs is None for w in sweeps):
        return claims.judge("I2", text, source="post", rule="directional", expected_sign=1,
                            effect=effect, numbers=numbers)
    alive = [sweep_log_gain(w.alive_pairs) for w in sweeps]
    numbers["alive_atoms_per_seed"] = [w.n_alive.tolist() for w in sweeps]
    numbers["alive_log_fvu_ratio_per_seed"] = [[round(p["log_gain"], 4) for p in w.alive_pairs]
                                               for w in sweeps]
    if not all(math.isfinite(g) for g in alive):
        return claims.not_tested("I2", text, source="post", numbers=numbers,
                                 reason="the alive-atom frontiers reach no common L0")
    return claims.judge("I2", text, source="post", rule="all_parts",
                        parts={"all atoms": effect,
                               "alive atoms only": stats.Effect.from_seeds(alive)},
                        part_rule=stats.ALL_HOLD, expected_sign=1, numbers=numbers)


def judge_i3(r: Results, *, n_boot: int, seed: int):
    """I3: ITO at the encoder's L0 still beats the rescaled-and-shifted encoder, for every SAE."""
    text = "The encoder-to-ITO gap is not explained by shrinkage alone"
    if r.rescaled_err is None:
        return claims.not_tested("I3", text, source="exploratory",
                                 reason="the rescale-and-shift control was not run")
    parts = _per_sae_gains(r, r.ito_err_at_encoder, r.rescaled_err, n_boot, seed)
    numbers = {"unit": "each SAE is a part; bootstrap over held-out contexts of that SAE",
               "training_l0": np.round(r.train_l0, 1).tolist()}
    if not parts:
        return claims.not_tested("I3", text, source="exploratory", numbers=numbers,
                                 reason="no encoder's L0 lies inside its ITO frontier's range")
    return claims.judge("I3", text, source="exploratory", rule="all_parts", parts=parts,
                        part_rule=stats.ALL_HOLD, expected_sign=1, numbers=numbers)


def _log_time_margin(fast, slow, factor: float) -> stats.Effect:
    """Per repeat log(slow / fast) - log(factor): > 0 when `fast` is more than `factor` times
    faster than `slow` in that round (factor < 1: `fast` is at most 1/factor times slower)."""
    fast, slow = np.asarray(fast, np.float64), np.asarray(slow, np.float64)
    return stats.Effect.from_seeds(np.log(slow / fast) - math.log(factor), method=T_OVER_REPEATS)


def best_fixed_step(r: Results):
    """The fixed step with the lowest FVU (selected on the data: conservative for I4)."""
    fixed = [s for s in r.step_err if s != "exact"]
    return min(fixed, key=lambda s: float(np.sum(r.step_err[s])))


def judge_i4(r: Results, *, max_time_ratio: float, n_boot: int, seed: int):
    """I4: the exact step beats the best fixed step in FVU and costs at most `max_time_ratio`
    times its time."""
    text = "Exact line-search step is cheap and better than fixed steps"
    if "exact" not in r.step_err or len(r.step_err) < 2:
        return claims.not_tested("I4", text, source="exploratory",
                                 reason="needs the exact step and at least one fixed step")
    best = best_fixed_step(r)
    parts = {"FVU: exact better than the best fixed step":
             fvu_gain(r.step_err["exact"], r.step_err[best], r.x, r.groups, n_boot=n_boot,
                      seed=seed),
             f"time: exact within {max_time_ratio}x the best fixed step":
             _log_time_margin(r.step_times["exact"], r.step_times[best], 1 / max_time_ratio)}
    ratios = np.asarray(r.step_times["exact"]) / np.asarray(r.step_times[best])
    numbers = {"timing": TIMING_NOTE, "k": r.step_k, "best_fixed_step": best,
               "time_ratio_exact_over_fixed_per_repeat": np.round(ratios, 3).tolist(),
               "max_time_ratio": max_time_ratio}
    return claims.judge("I4", text, source="exploratory", rule="all_parts", parts=parts,
                        part_rule=stats.ALL_HOLD, expected_sign=1, numbers=numbers)


def judge_i5(r: Results, *, claim_max_topk: int, min_speedup: float, max_rel_cost: float,
             n_boot: int, seed: int):
    """I5: at the declared max top-k m > 1, at least `min_speedup` times faster than m = 1 at a
    relative FVU cost below `max_rel_cost`."""
    text = ("Adding several atoms per iteration (max top-k > 1) saves time at small "
            "quality cost")
    m = int(claim_max_topk)
    if m == 1 or m not in r.topk_err or 1 not in r.topk_err:
        raise ValueError(f"claim_max_topk={m} must be > 1 and in max_topks "
                         f"{sorted(r.topk_err)} (which must include 1)")
    base = np.asarray(r.topk_err[1], np.float64)
    cost = context_items(np.asarray(r.topk_err[m]) - base, r.groups, float(base.sum()))
    parts = {f"time: m={m} at least {min_speedup}x faster than m=1":
             _log_time_margin(r.topk_times[m], r.topk_times[1], min_speedup),
             f"quality: relative FVU cost of m={m} below {max_rel_cost}":
             stats.Effect.from_items(max_rel_cost - cost, n_boot=n_boot, seed=seed)}
    speedups = {int(k): np.round(np.asarray(r.topk_times[1]) / np.asarray(t), 2).tolist()
                for k, t in r.topk_times.items()}
    rel_cost = {int(k): round(float(np.sum(e) / base.sum() - 1), 4)
                for k, e in r.topk_err.items()}
    numbers = {"timing": TIMING_NOTE, "k": r.topk_k, "judged_max_topk": m,
               "speedup_per_repeat": speedups, "rel_fvu_cost": rel_cost}
    return claims.judge("I5", text, source="exploratory", rule="all_parts", parts=parts,
                        part_rule=stats.ALL_HOLD, expected_sign=1, numbers=numbers)


def judge_i6(r: Results, *, max_fvu_increase: float, min_l0_fraction: float, n_boot: int,
             seed: int):
    """I6: across the SAEs of the sweep, more than `min_l0_fraction` of L0 can be pruned at an
    FVU cost of at most `max_fvu_increase`."""
    text = "L0 comparisons are noisy because baseline SAEs have many tiny activations"
    found = [prunable_fraction(p, max_fvu_increase) for p in r.pruning]
    numbers = {"unit": "trained SAE (bootstrap over the SAEs of the sweep)",
               "l0_fraction_removed": [round(f, 3) for f, _ in found],
               "threshold_used": [t for _, t in found], "max_fvu_increase": max_fvu_increase}
    if not found:
        return claims.not_tested("I6", text, source="exploratory", numbers=numbers,
                                 reason="no pruning measurement")
    effect = stats.Effect.from_items([f for f, _ in found], n_boot=n_boot, seed=seed)
    return claims.judge("I6", text, source="exploratory", rule="threshold", effect=effect,
                        threshold=min_l0_fraction, higher_is_reproduced=True, numbers=numbers)


def verdicts(r: Results, *, n_boot: int, seed: int, max_time_ratio: float,
             claim_max_topk: int, min_speedup: float, max_rel_cost: float,
             max_fvu_increase: float, min_l0_fraction: float) -> list:
    """Claims I1..I6 judged from the notebook's results (see the module docstring for the unit
    of replication of each), in order; each is also recorded by `interp.claims`."""
    return [judge_i1(r, n_boot=n_boot, seed=seed),
            judge_i2(r, n_boot=n_boot, seed=seed),
            judge_i3(r, n_boot=n_boot, seed=seed),
            judge_i4(r, max_time_ratio=max_time_ratio, n_boot=n_boot, seed=seed),
            judge_i5(r, claim_max_topk=claim_max_topk, min_speedup=min_speedup,
                     max_rel_cost=max_rel_cost, n_boot=n_boot, seed=seed),
            judge_i6(r, max_fvu_increase=max_fvu_increase, min_l0_fraction=min_l0_fraction,
                     n_boot=n_boot, seed=seed)]
