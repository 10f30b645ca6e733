"""Measurements and claim verdicts of the toy-models page (book/toy_models.ipynb).

Three claims (T-1..T-3), each decided by a named rule of `interp.stats` on items that are the
claim's unit of replication:

- T-1 (replicated): SAEs recover the ReLU-output TMS features nearly perfectly. Items: the
  represented features of every sparse TMS model, pooled; value: 1 if the best `relu` SAE of
  the sweep has a decoder direction at cosine > `recovery_threshold` with it. Rule `threshold`:
  the bootstrap CI of the fraction recovered lies above `fraction_bar`.
- T-2 (post, decisive): TMS is too simple to rank SAE variants. Items: the same features;
  per variant v other than the reference (the first architecture), the paired per-feature
  difference recovered_v - recovered_ref, in both directions. Rule `all_parts` with part rule
  "none helps" over the mirrored parts (v - ref and ref - v): reproduced when every variant's
  90% CI lies within +-`margin` of the reference (a two-sided TOST per variant); not
  reproduced when some variant recovers reliably more or fewer features (Holm-adjusted).
  The recovered indicator saturates, so a variant that recovers every feature with a slightly
  better cosine does not count as ranked: a ranking is recovering different features.
- T-3 (post, decisive): compressing Tracr models is very difficult without changing the
  algorithm. Items: (program, width) pairs whose width is below the number of compiled
  directions that vary (so features must share dimensions). Only compressions that keep the
  program's output accuracy >= `accuracy_bar` are judged; one that breaks the output is a
  failure to compress, reported as such, not an algorithm change. For each kept compression
  a linear probe, fitted on training inputs, reads every computed RASP variable back from the
  compressed final residual stream; its value is the worst variable's decoding accuracy on
  held-out inputs. Rule `threshold` (lower is reproduced): the bootstrap CI of the mean
  readout lies below `readout_bar` (the intermediate values are no longer linearly there). If
  no compression keeps the output, T-3 is inconclusive with that reason.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import numpy as np

from interp import claims, sae, stats

INPUT_VARIABLES = ("tokens", "indices", "one")
"""Residual groups the compiled model is given, not computes: not intermediate values."""

T1_TEXT = ("SAEs recover ToMS ReLU-output features nearly perfectly across sparsities where "
           "they are represented")
T2_TEXT = "ToMS is too simple to rank SAE variants (all variants succeed)"
T3_TEXT = ("Compression may be very difficult to achieve in Tracr models without changing the "
           "underlying algorithm")


# ------------------------------------------------------------------ TMS reductions
def best_rows(rows: Sequence[Mapping], arch: str, probabilities: Sequence[float]) -> dict:
    """Per sparsity p, the row of `arch`'s sweep with the most features recovered (ties: the
    higher MMCS): the sweep's best setting, as the post reports each variant at its best."""
    best = {}
    for p in probabilities:
        sub = [r for r in rows if r["arch"] == arch and r["p"] == p]
        if sub:
            best[p] = max(sub, key=lambda r: (r["fraction_recovered"], r["mmcs"]))
    return best


def recovered_per_feature(rows: Sequence[Mapping], arch: str, probabilities: Sequence[float],
                          threshold: float) -> np.ndarray:
    """1.0 / 0.0 per represented feature of every listed sparsity (pooled, in order): whether
    `arch`'s best SAE has a decoder direction at cosine > threshold with it."""
    best = best_rows(rows, arch, probabilities)
    per = [np.asarray(best[p]["max_cos"], float) > threshold for p in probabilities if p in best]
    return np.concatenate(per).astype(float) if per else np.zeros(0)


def variant_parts(rows: Sequence[Mapping], architectures: Sequence[str],
                  probabilities: Sequence[float], threshold: float,
                  seed: int = 0) -> dict[str, stats.Effect]:
    """Mirrored paired differences of recovered-per-feature between each variant and the
    reference (the first architecture): {"v - ref": Effect, "ref - v": Effect}, so that the
    one-sided part rule "none helps" tests both directions (TOST per variant). The indicators
    are 0/1 on the same features, so the interval is Newcombe's for paired proportions: when
    every variant recovers the same features it stays as wide as 40 features allow, where a
    bootstrap would collapse to [0, 0] and call the variants equal with certainty. (`seed` is
    kept for callers; the interval is exact and draws nothing.)"""
    ref, *others = architectures
    base = recovered_per_feature(rows, ref, probabilities, threshold)
    parts = {}
    for v in others:
        other = recovered_per_feature(rows, v, probabilities, threshold)
        if other.shape != base.shape:
            raise ValueError(f"variant {v!r} has {other.size} scored features but {ref!r} has "
                             f"{base.size}: every variant must be trained on every sparsity "
                             f"{list(probabilities)} (missing rows in the TMS table)")
        parts[f"{v} - {ref}"] = stats.Effect.paired_proportions(other, base)
        parts[f"{ref} - {v}"] = stats.Effect.paired_proportions(base, other)
    return parts


# ------------------------------------------------------------------ Tracr reductions
def _with_bias(x: np.ndarray) -> np.ndarray:
    return np.concatenate([x, np.ones((len(x), 1))], axis=1)


def fit_probe(compressed: np.ndarray, compiled: np.ndarray) -> np.ndarray:
    """Least-squares linear map (with bias) [width + 1, D] from compressed to compiled stream."""
    coef, *_ = np.linalg.lstsq(_with_bias(compressed), compiled, rcond=None)
    return coef


def _decode(values: np.ndarray, reference: np.ndarray):
    """A categorical variable (several dims) by argmax; a numerical one (one dim) by the
    nearest value the compiled model takes."""
    if values.shape[1] > 1:
        return values.argmax(1), reference.argmax(1)
    grid = np.unique(np.round(reference[:, 0], 6))
    nearest = grid[np.abs(values[:, :1] - grid).argmin(1)]
    return nearest, grid[np.abs(reference[:, :1] - grid).argmin(1)]


def probe_readout(train_compressed, train_compiled, test_compressed, test_compiled,
                  variables: Mapping[str, np.ndarray]) -> dict:
    """Whether each computed variable can still be read linearly from the compressed stream.

    Fits `fit_probe` on the training rows ([N, width] -> [N, D], the same positions in both
    streams), predicts the held-out rows, and returns {"accuracy": {variable: fraction of
    held-out rows decoded to the compiled value}, "r2": R^2 over the computed variables'
    dimensions, "min_accuracy": the worst variable's accuracy (nan when none)}. Input
    variables (`INPUT_VARIABLES`) are skipped: they are not intermediate values."""
    coef = fit_probe(np.asarray(train_compressed, float), np.asarray(train_compiled, float))
    test_compiled = np.asarray(test_compiled, float)
    pred = _with_bias(np.asarray(test_compressed, float)) @ coef
    computed = {k: np.asarray(c) for k, c in variables.items() if k not in INPUT_VARIABLES}
    acc = {}
    for name, cols in computed.items():
        got, want = _decode(pred[:, cols], test_compiled[:, cols])
        acc[name] = float(np.mean(got == want))
    return {"accuracy": acc, "r2": _r2(pred, test_compiled, computed),
            "min_accuracy": min(acc.values()) if acc else float("nan")}


def _r2(pred: np.ndarray, target: np.ndarray, computed: Mapping[str, np.ndarray]) -> float:
    if not computed:
        return float("nan")
    cols = np.concatenate(list(computed.values()))
    resid = np.sum((pred[:, cols] - target[:, cols]) ** 2)
    total = np.sum((target[:, cols] - target[:, cols].mean(0)) ** 2)
    return float(1 - resid / total) if total > 0 else float("nan")


def compressed_items(per_width: Sequence[Mapping]) -> list[Mapping]:
    """The (program, width) rows narrower than the program's varying directions: the widths
    at which features must share dimensions, which is what 'compression' means in T-3."""
    return [r for r in per_width if r["width"] < r["n_varying"]]


def split_by_output(items: Sequence[Mapping], accuracy_bar: float):
    """(kept, broken): compressions whose output accuracy reaches the bar, and the rest
    (failures to compress, not algorithm changes)."""
    kept = [r for r in items if r["accuracy"] >= accuracy_bar]
    return kept, [r for r in items if r["accuracy"] < accuracy_bar]


# ------------------------------------------------------------------ verdicts
def judge_t1(tms_rows, sparse_ps, *, recovery_threshold: float, fraction_bar: float,
             seed: int = 0):
    """T-1 with rule `threshold` on the pooled fraction of features the best relu SAE recovers."""
    per = recovered_per_feature(tms_rows, "relu", sparse_ps, recovery_threshold)
    numbers = {"sparse settings (1 - S)": list(sparse_ps), "cosine threshold": recovery_threshold,
               "best relu MMCS per sparse setting":
                   {str(p): r["mmcs"] for p, r in best_rows(tms_rows, "relu", sparse_ps).items()}}
    if per.size == 0:
        return claims.inconclusive("T-1", T1_TEXT, numbers=numbers, source="replicated",
                                   rule="threshold", reason="no sparse setting with a represented "
                             "feature and a relu SAE was run")
    return claims.judge("T-1", T1_TEXT, source="replicated", rule="threshold",
                        effect=stats.Effect.from_proportion(per), numbers=numbers,
                        threshold=fraction_bar)


def judge_t2(tms_rows, architectures, sparse_ps, *, recovery_threshold: float, margin: float,
             seed: int = 0):
    """T-2 with rule `all_parts` ("none helps", both directions) against the first variant."""
    numbers = {"architectures": list(architectures), "reference": architectures[0] if
               architectures else None, "cosine threshold": recovery_threshold,
               "fraction recovered per variant": {
                   a: float(np.mean(v)) if (v := recovered_per_feature(
                       tms_rows, a, sparse_ps, recovery_threshold)).size else None
                   for a in architectures}}
    if len(architectures) < 2:
        return claims.not_tested("T-2", T2_TEXT, source="post", numbers=numbers,
                                 reason=f"only {list(architectures)} was trained: nothing to rank")
    if not recovered_per_feature(tms_rows, architectures[0], sparse_ps, recovery_threshold).size:
        return claims.inconclusive("T-2", T2_TEXT, numbers=numbers, source="post",
                                   rule="all_parts", reason="no sparse setting with a represented "
                             "feature: no item to compare the variants on")
    parts = variant_parts(tms_rows, architectures, sparse_ps, recovery_threshold, seed)
    return claims.judge("T-2", T2_TEXT, source="post", rule="all_parts", parts=parts,
                        numbers=numbers, part_rule=stats.NONE_HELPS, margin=margin)


def judge_t3(per_width, *, accuracy_bar: float, readout_bar: float, seed: int = 0):
    """T-3 with rule `threshold` (lower is reproduced) on the probe readout of the
    compressions that keep the output; inconclusive with the reason when none does."""
    items = compressed_items(per_width)
    kept, broken = split_by_output(items, accuracy_bar)
    numbers = {"compressions below the varying width": len(items),
               "kept the output (accuracy >= bar)": len(kept),
               "failures to compress (output broken)": [f"{r['program']}@{r['width']}"
                                                        for r in broken],
               "accuracy bar": accuracy_bar,
               "readout per kept compression": {f"{r['program']}@{r['width']}":
                                                r["probe_min_accuracy"] for r in kept}}
    if not kept:
        why = ("no compression below the varying width was run" if not items else
               f"no compression kept the output accuracy >= {accuracy_bar}: all {len(items)} "
               f"are failures to compress, which say nothing about the algorithm")
        return claims.inconclusive("T-3", T3_TEXT, numbers=numbers, source="post",
                                   rule="threshold", reason=why)
    effect = stats.Effect.from_items([r["probe_min_accuracy"] for r in kept], seed=seed)
    return claims.judge("T-3", T3_TEXT, source="post", rule="threshold", effect=effect,
                        numbers=numbers, threshold=readout_bar, higher_is_reproduced=False)


def verdicts(tms_rows, per_width, *, architectures, tms_probabilities,
             sparse_max_probability: float, recovery_threshold: float, t1_fraction_bar: float,
             t2_margin: float, accuracy_bar: float, readout_bar: float, seed: int = 0) -> list:
    """All claims of the page, from the notebook's tables: `tms_rows` (one per trained TMS
    SAE: p, arch, fraction_recovered, mmcs, max_cos per represented feature) and `per_width`
    (one per program and width: program, width, n_varying, accuracy, probe_min_accuracy)."""
    sparse_ps = [p for p in tms_probabilities if p <= sparse_max_probability]
    return [judge_t1(tms_rows, sparse_ps, recovery_threshold=recovery_threshold,
                     fraction_bar=t1_fraction_bar, seed=seed),
            judge_t2(tms_rows, list(architectures), sparse_ps,
                     recovery_threshold=recovery_threshold, margin=t2_margin, seed=seed),
            judge_t3(per_width, accuracy_bar=accuracy_bar, readout_bar=readout_bar, seed=seed)]


# ------------------------------------------------------------------ training helper
def train_sae_sweep(base, data, l1_coeffs: Sequence[float], topk_k: Sequence[int]) -> list:
    """The trained SAEs of one architecture's sweep on `data`: one vmapped run over the L1
    coefficients, or for `topk` one short run per k (k changes shapes, so it cannot be vmapped).
    `base` is the sae.SAEConfig shared by the sweep."""
    if base.architecture == "topk":
        models = []
        for k in topk_k:
            cfg = base.replace(k=min(k, base.d_sae))
            state, _ = sae.train(cfg, data, progress=False)
            models.append(sae.to_sae(state, cfg))
        return models
    states, _ = sae.train_sweep(base, data, {"l1_coeff": list(l1_coeffs)}, progress=False)
    return [sae.to_sae(sae.sweep_member(states, i), base.replace(l1_coeff=l1))
            for i, l1 in enumerate(l1_coeffs)]
