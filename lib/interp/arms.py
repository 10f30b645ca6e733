"""Controlled SAE training experiments: named *arms* (recipe variants), each trained over the same
L1 sweep and seeds on the same activations, evaluated on the same held-out text, and compared
along the sparsity frontier at matched L0.

This is the harness behind the ghost-grads and Anthropic-recipe notebooks (GDM Progress
Update #1, snippets 3 and 5): an arm is a set of `SAEConfig` overrides; each (arm, seed) is one
vmapped, cached run over the L1 values (`lm_sae.train_cached`), and every SAE of every arm is
spliced into the model in one shared evaluation (`lm_sae.evaluate_many`).

    arms = [Arm("resample", {"dead_strategy": "resample"}),
            Arm("ghost x dead fraction", {"dead_strategy": "ghost_scaled"})]
    results = run_arms(acts, base_config, arms, l1_values=[2e-3, 4e-3, 8e-3], seeds=[0, 1],
                       eval_tokens=acts.heldout[:16])
    cmp = compare(results["resample"], results["ghost x dead fraction"], "delta_ce")
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence

import numpy as np

from interp import frontier

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
    evals: list[list[dict]]          # [seed][l1] -> metrics of lm_sae.evaluate
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


def _postprocess(model, arm: Arm):
    from interp import sae

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
    from interp import lm_sae

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
    evals = lm_sae.evaluate_many(acts.model, acts.site, models, eval_tokens, progress=progress)
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
