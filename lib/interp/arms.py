"""Controlled SAE training experiments: named *arms* (recipe variants), each trained over the same
L1 sweep and seeds on the same activations, evaluated on the same held-out text, and compared
along the sparsity frontier at matched L0.

This is the harness behind the ghost-grads and Anthropic-recipe notebooks (GDM Progress
Update #1, snippets 3 and 5): an arm is a set of `SAEConfig` overrides; each (arm, seed) is one
vmapped, cached run over the L1 values (`lm_sae.train_cached`), and every SAE of every arm is
spliced into the model in one shared evaluation (`lm_sae.splice_metrics_many`).

    arms = [Arm("resample", {"dead_strategy": "resample"}),
            Arm("ghost x dead fraction", {"dead_strategy": "ghost_scaled"})]
    results = run_arms(acts, base_config, arms, l1_values=[2e-3, 8e-3], seeds=[0, 1, 2],
                       eval_tokens=acts.heldout[:16])
    cmp = compare(results["resample"], results["ghost x dead fraction"], "delta_ce")
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence

import numpy as np

from interp import frontier, lm_sae, sae, stats

POSTPROCESS = ("prune_small_decoder_norms",)


@dataclasses.dataclass(frozen=True)
class Arm:
    """One recipe variant. `changes` are SAEConfig overrides of the base config; `l1_scale`
    multiplies every L1 value of the sweep (for recipes whose penalty has another scale, e.g.
    the L1 weighted by decoder norms); `postprocess` names a step applied after training."""

    name: str
    changes: dict = dataclasses.field(default_factory=dict)
    l1_scale: float = 1.0
    postprocess: str | None = None

    def __post_init__(self):
        if self.postprocess is not None and self.postprocess not in POSTPROCESS:
            raise ValueError(f"arm {self.name!r}: unknown postprocess {self.postprocess!r}; "
                             f"known: {', '.join(POSTPROCESS)}")
        if not self.l1_scale > 0:
            raise ValueError(f"arm {self.name!r}: l1_scale must be > 0, got {self.l1_scale}")


@dataclasses.dataclass
class ArmResult:
    """Per seed: the sweep's evaluation (one dict per L1 value), training history and time."""

    arm: Arm
    l1_values: list[float]
    seeds: list[int]
    evals: list[list[dict]]          # [seed][l1] -> metrics of lm_sae.splice_metrics
    histories: list[dict]            # [seed] -> train_sweep history (entries are per-run lists)
    seconds: list[float]             # [seed] -> training wall time of the vmapped sweep
    n_latents: list[list[int]]       # [seed][l1] -> latents kept (after postprocess)

    def curve(self, metric: str, seed_index: int) -> tuple[np.ndarray, np.ndarray]:
        """(L0s, metric values) of one seed's sweep: a frontier."""
        rows = self.evals[seed_index]
        return (np.array([r["l0"] for r in rows]), np.array([r[metric] for r in rows]))

    def curves(self, metric: str) -> list[tuple[np.ndarray, np.ndarray]]:
        return [self.curve(metric, i) for i in range(len(self.seeds))]

    def final(self, history_key: str) -> np.ndarray:
        """[seed, l1] last logged value of a training-history entry (e.g. dead_fraction)."""
        return np.array([np.asarray(h[history_key][-1], float) for h in self.histories])

    def history(self, history_key: str) -> np.ndarray:
        """[seed, logged point, l1] a training-history entry over training (window means)."""
        return np.array([np.asarray(h[history_key], float) for h in self.histories])

    def final_curves(self, history_key: str) -> list[tuple[np.ndarray, np.ndarray]]:
        """Per seed, (evaluated L0s, last logged `history_key`): a frontier of a training
        quantity (e.g. dead fraction against L0), for `frontier.compare_at_matched_l0`."""
        final = self.final(history_key)
        return [(self.curve("l0", i)[0], final[i]) for i in range(len(self.seeds))]


def _postprocess(model, arm: Arm):
    if arm.postprocess == "prune_small_decoder_norms":
        keep = int(np.sum(np.asarray(model.decoder_norms) >= 0.99))
        if keep == 0:
            raise ValueError(f"arm {arm.name!r}: pruning decoder norms < 0.99 would remove every "
                             f"latent (train longer, or raise decoder_init_norm)")
        return sae.prune_small_decoder_norms(model)
    return model


def run_arms(acts, base_config, arms: Sequence[Arm], l1_values: Sequence[float],
             seeds: Sequence[int], *, eval_tokens, progress: bool = True,
             log_every: int | None = None) -> dict[str, ArmResult]:
    """Train every arm over `l1_values` x `seeds` (one cached vmapped sweep per arm and seed)
    and evaluate all the SAEs on `eval_tokens` in one shared splice evaluation."""
    names = [a.name for a in arms]
    if len(set(names)) != len(names):
        raise ValueError(f"arm names must be unique, got {names}")
    if not l1_values or not seeds:
        raise ValueError("give at least one L1 value and one seed")
    log_every = log_every or max(1, base_config.steps // 25)
    runs, models = {}, []
    for arm in arms:
        for seed in seeds:
            cfg = base_config.replace(seed=int(seed), **arm.changes)
            l1 = [float(v) * arm.l1_scale for v in l1_values]
            run = lm_sae.train_cached(acts, cfg, {"l1_coeff": l1}, log_every=log_every,
                                      progress=progress)
            saes = [_postprocess(m, arm) for m in run.saes()]
            runs[arm.name, seed] = (run, len(models),
                                    [int(m.params["W_dec"].shape[0]) for m in saes])
            models.extend(saes)
    evals = lm_sae.splice_metrics_many(acts.model, acts.site, models, eval_tokens,
                                       progress=progress)
    out = {}
    n = len(l1_values)
    for arm in arms:
        rows, hist, secs, kept = [], [], [], []
        for seed in seeds:
            run, start, latents = runs[arm.name, seed]
            rows.append(evals[start:start + n])
            hist.append(run.history)
            secs.append(run.seconds)
            kept.append(latents)
        out[arm.name] = ArmResult(arm, [float(v) * arm.l1_scale for v in l1_values],
                                  [int(s) for s in seeds], rows, hist, secs, kept)
    return out


def compare(a: ArmResult, b: ArmResult, metric: str, *, n_targets: int = 5
            ) -> frontier.MatchedComparison:
    """B minus A on `metric` at matched L0, seeds paired in order (see interp.frontier)."""
    if len(a.seeds) != len(b.seeds):
        raise ValueError(f"arms {a.arm.name!r} and {b.arm.name!r} have different seed counts")
    return frontier.compare_at_matched_l0(a.curves(metric), b.curves(metric),
                                          n_targets=n_targets)


def loss_rises(values, *, skip: int = 0) -> np.ndarray:
    """How far a logged training loss climbs above its best value so far: for each point t
    after the first `skip` (the warm-up descent), values[t] / min(values[:t]) - 1, and 0 where
    it does not rise. A loss *spike* (Anthropic, March 2024: ghost grads "causes loss spikes")
    is a point whose rise exceeds a chosen ratio; the maximum rise sizes the worst spike.
    `values` is [points] or [points, runs] (then per run)."""
    v = np.asarray(values, np.float64)
    if v.ndim not in (1, 2) or v.shape[0] < 2:
        raise ValueError(f"need >= 2 logged points as [points] or [points, runs], got {v.shape}")
    if not 0 <= skip < v.shape[0]:
        raise ValueError(f"skip must lie in [0, {v.shape[0] - 1}], got {skip}")
    best = np.minimum.accumulate(v, axis=0)
    rise = np.zeros_like(v)
    rise[1:] = np.maximum(v[1:] / best[:-1] - 1.0, 0.0)
    rise[:skip] = 0.0
    return rise


def count_spikes(values, ratio: float, *, skip: int = 0) -> np.ndarray:
    """Number of separate excursions of a logged loss more than `ratio` above its best value
    so far (consecutive points above count once); see `loss_rises`."""
    if not ratio > 0:
        raise ValueError(f"ratio must be > 0, got {ratio}")
    above = loss_rises(values, skip=skip) > ratio
    starts = above[1:] & ~above[:-1]
    return starts.sum(axis=0) + above[0]


# ----------------------------------------------------------- adopting one recipe item (snippet 5)
def help_verdict(effect: stats.Effect | None) -> str:
    """'helps' / 'hurts' when the 95% CI of a positive-is-better gain over seeds excludes 0 on
    that side (`stats.directional`, >= 3 seeds), else 'inconclusive' (also without an effect).
    One item at a time and unadjusted: a claim over several items adjusts for their number
    (`stats.all_parts`)."""
    if effect is None:
        return "inconclusive"
    return {stats.REPRODUCED: "helps", stats.NOT_REPRODUCED: "hurts"}.get(
        stats.directional(effect, expected_sign=1), "inconclusive")


def adoption_gain(results: dict, reference: str, arm: str, metric: str, *,
                  arm_adopts: bool = True, higher_is_better: bool = False,
                  n_targets: int = 5) -> dict:
    """What adopting the item that `arm` toggles relative to `reference` gains on `metric` at
    matched L0, as a positive-is-better number per seed, its paired `effect` over seeds (None
    without an L0 overlap) and a `help_verdict`.

    A one-factor-at-a-time arm either adds the item to the reference recipe (`arm_adopts`) or
    removes one the reference already has (then the gain is reference minus arm). Lower is
    better for `metric` unless `higher_is_better` (delta CE, FVU: lower; loss recovered:
    higher)."""
    cmp = compare(results[reference], results[arm], metric, n_targets=n_targets)  # arm - ref
    sign = (1.0 if higher_is_better else -1.0) * (1.0 if arm_adopts else -1.0)
    effect = cmp.effect(sign)
    return {"gain": float(sign * cmp.mean), "seed_spread": float(cmp.spread),
            "per_seed": [float(v) for v in sign * cmp.seed_means], "effect": effect,
            "l0_range": cmp.as_numbers()["l0_range"], "n_seeds": int(cmp.per_seed.shape[0]),
            "verdict": help_verdict(effect)}


def paired_final_difference(a: ArmResult, b: ArmResult, history_key: str) -> dict:
    """B minus A of a training-history entry's last logged value (e.g. dead_fraction), paired
    by seed and by position in the L1 sweep, averaged over the sweep: the mean over seeds and
    the standard deviation over seeds of the per-seed means (0 with one seed)."""
    fa, fb = a.final(history_key), b.final(history_key)
    if fa.shape != fb.shape:
        raise ValueError(f"arms {a.arm.name!r} and {b.arm.name!r} differ in seeds x L1 "
                         f"({fa.shape} vs {fb.shape})")
    per_seed = np.mean(fb - fa, axis=1)
    spread = float(np.std(per_seed, ddof=1)) if len(per_seed) > 1 else 0.0
    return {"diff": float(np.mean(per_seed)), "seed_spread": spread,
            "per_seed": [float(v) for v in per_seed]}
