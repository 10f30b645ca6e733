"""Dead latents on synthetic data with a known dictionary: G-1, F-1 and F-4 where they can be
decided.

Why: at the cpu profile's scale the LM-site SAEs (1152-3456 latents, 205k activations each)
have almost no dead latents, so the dead-latent claims there are inconclusive with "nothing to
measure". Activations drawn from a known sparse dictionary (Sharkey et al. 2022, "Taking
features out of superposition"; `interp.sae.SparseDictionaryData`: power-law feature
frequencies) are cheap enough that every SAE costs seconds, so each claim gets >= 5 seeds, each
seed its own dictionary, data and initialisation, and the learned decoders are scored against
the true features (MMCS and the fraction recovered, `interp.toy.recovery`).

The data have a constant offset (a residual stream's large mean): before b_dec learns it, every
input is shifted along one direction, and latents whose encoder rows point against it stop
firing for good. That is how latents die at the LM site too; without the offset, no latent of
these small SAEs dies at all (measured: 0-1.4% over learning rates 3e-3..1e-1).

One grid serves all three claims. Per seed, four vmapped sweeps (same batches within a seed), at
`l1_values[0]` unless said otherwise:

- "none" at the narrowest and the widest width, beta1 in {0, 0.9} (F-1: dead(beta1 0.9) -
  dead(beta1 0) per width); at the widest width also beta1 = 0 at the other L1 values;
- "ghost" with the long dead window at the widest width, beta1 in {0, 0.9};
- "ghost" with the short dead window, beta1 in {0, 0.9} (with the long-window cells: F-4's
  2 x 2 grid), and beta1 = 0 at the other L1 values (G-1: ghost - none at beta1 = 0 along the
  L1 values, at matched L0). G-1 uses the short window because it is the one in proportion to
  training that the LM page uses (a tenth of the run here, a sixteenth there): ghost grads act
  on a latent only once it has been silent for the window.

Dead latents are counted for every run at the *long* window (`recipe.dead_fraction_at`): a
run's own window would count more latents as dead in the short-window runs by definition.
Comparisons are paired by seed, at equal L1 (mean over the L1 values) and, for G-1, at matched
L0 (`interp.frontier`); the verdicts are those of the LM pages (`ghost_grads.verdict_g1`,
`recipe.verdict_f1`, `recipe.verdict_f4`) under the claim ids "G-1 (synthetic)" etc.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence
from pathlib import Path

import numpy as np
from tqdm.auto import tqdm

from interp import cache, claims, frontier, sae
from interp.experiments import ghost_grads, recipe
from interp.toy import recovery

SUFFIX = " (synthetic)"
STRATEGIES = ("none", "ghost")


@dataclasses.dataclass(frozen=True)
class Setup:
    """The synthetic data, the SAE grid and its training (see the module docstring)."""

    d_in: int = 32
    n_features: int = 128
    mean_active: float = 4.0
    zipf_exponent: float = 1.0
    offset_norm: float = 4.0                   # about twice the feature part's typical norm
    widths: tuple[int, ...] = (1, 4)           # SAE widths as multiples of n_features
    l1_values: tuple[float, ...] = (1e-2, 3e-2)  # the first is the equal-L1 value
    seeds: tuple[int, ...] = (0, 1, 2, 3, 4)
    batch_size: int = 256
    steps: int = 1000
    lr: float = 3e-2
    lr_warmup_steps: int = 100
    windows: tuple[int, int] = (300, 100)      # long, short dead window (steps)
    eval_rows: int = 16_384
    recovered_cosine: float = 0.9

    def __post_init__(self):
        if len(self.widths) < 2 or sorted(self.widths) != list(self.widths):
            raise ValueError(f"widths: give >= 2 increasing multiples, got {self.widths}")
        if len(self.seeds) < 1 or len(set(self.seeds)) != len(self.seeds):
            raise ValueError(f"seeds must be distinct and non-empty, got {self.seeds}")
        if len(self.windows) != 2 or not self.windows[0] > self.windows[1] > 0:
            raise ValueError(f"windows: (long, short) with long > short > 0, got {self.windows}")
        if not self.l1_values:
            raise ValueError("l1_values: give at least one L1 coefficient")
        if self.windows[0] >= self.steps:
            raise ValueError(f"the long window ({self.windows[0]} steps) must be shorter than "
                             f"training ({self.steps} steps)")

    @classmethod
    def from_params(cls, params: dict) -> "Setup":
        """From a page's `synthetic` parameter (a dict of field overrides)."""
        names = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(params) - names)
        if unknown:
            raise ValueError(f"synthetic: unknown field(s) {unknown}; known: {sorted(names)}")
        return cls(**{k: tuple(v) if isinstance(v, list) else v for k, v in params.items()})

    def cells(self) -> list[tuple[int, str, int, tuple]]:
        """(width multiple, dead strategy, dead window, ((beta1, l1), ...)) of each sweep of
        one seed (see the module docstring)."""
        long_w, short_w = self.windows
        l1 = self.l1_values[0]
        pair = ((0.0, l1), (0.9, l1))
        along = pair + tuple((0.0, v) for v in self.l1_values[1:])
        narrow, wide = self.widths[0], self.widths[-1]
        return [(narrow, "none", long_w, pair), (wide, "none", long_w, along),
                (wide, "ghost", long_w, pair), (wide, "ghost", short_w, along)]

    def n_saes(self) -> int:
        return len(self.seeds) * sum(len(c[3]) for c in self.cells())


BETA1 = (0.0, 0.9)


def _config(setup: Setup, width: int, strategy: str, window: int, seed: int) -> sae.SAEConfig:
    return sae.SAEConfig(
        d_in=setup.d_in, d_sae=width * setup.n_features, l1_coeff=setup.l1_values[0],
        lr=setup.lr, lr_warmup_steps=setup.lr_warmup_steps, batch_size=setup.batch_size,
        steps=setup.steps, seed=seed, dead_strategy=strategy, dead_window_steps=window)


def _measure(setup: Setup, data, state, cfg, members, heldout) -> list[dict]:
    """Per member of a stacked sweep: dead fraction at the long window, L0 and FVU on held-out
    rows, and recovery of the true features."""
    dead = recipe.dead_fraction_at(state.steps_since_fired, setup.windows[0])
    out = []
    for i, (b1, l1) in enumerate(members):
        model = sae.to_sae(sae.sweep_member(state, i), cfg.replace(adam_beta1=b1, l1_coeff=l1))
        m = sae.reconstruction_metrics(model, heldout)
        w_dec = np.asarray(model.params["W_dec"], np.float64)
        rec = recovery.summary(data.dictionary, w_dec[recovery.nonzero_rows(w_dec)],
                               setup.recovered_cosine)
        out.append({"beta1": float(b1), "l1": float(l1), "dead": float(dead[i]),
                    "l0": m["l0"], "fvu": m["fvu"], "mmcs": rec["mmcs"],
                    "recovered": rec["fraction_recovered"]})
    return out


def _run_seed(setup: Setup, seed: int, bar) -> list[dict]:
    data = sae.SparseDictionaryData(setup.d_in, setup.n_features, setup.batch_size,
                                    setup.mean_active, setup.zipf_exponent, seed=seed,
                                    offset_norm=setup.offset_norm)
    batches = [data.batch(i) for i in range(setup.steps)]
    held = data.held_out()
    heldout = [held.batch(i) for i in range(max(1, setup.eval_rows // setup.batch_size))]
    rows = []
    for width, strategy, window, members in setup.cells():
        cfg = _config(setup, width, strategy, window, seed)
        sweep = {"adam_beta1": [b for b, _ in members], "l1_coeff": [v for _, v in members]}
        state, _ = sae.train_sweep(cfg, batches, sweep, log_every=setup.steps, progress=False)
        for r in _measure(setup, data, state, cfg, members, heldout):
            rows.append({"seed": seed, "width": width, "d_sae": cfg.d_sae,
                         "strategy": strategy, "window": window, **r})
        bar.update(1)
    return rows


def _source_hash() -> str:
    """This module and the SAE library are part of the cache key: changed code recomputes."""
    files = [Path(__file__), *sorted(Path(sae.__file__).parent.glob("*.py"))]
    return cache.content_hash([cache.file_sha256(f) for f in files])


def run(setup: Setup, *, progress: bool = True) -> list[dict]:
    """Every SAE of the grid as one row (seed, width, strategy, window, beta1, l1, dead, l0,
    fvu, mmcs, recovered), cached by the setup and the training code."""
    key = cache.content_hash({"setup": dataclasses.asdict(setup), "code": _source_hash(),
                              "v": 1})
    path = cache.cache_dir("synthetic-dead", key) / "rows.json"
    if path.exists():
        return cache.read_checked_json(path)
    bar = tqdm(total=len(setup.seeds) * len(setup.cells()), desc="synthetic SAE sweeps",
               disable=not progress)
    rows = [r for s in setup.seeds for r in _run_seed(setup, s, bar)]
    bar.close()
    cache.write_checked_json(path, rows)
    return rows


# ------------------------------------------------------------------ reading the grid
def select(rows: Sequence[dict], **match) -> list[dict]:
    return [r for r in rows if all(r[k] == v for k, v in match.items())]


def per_seed(rows: Sequence[dict], metric: str, seeds: Sequence[int], **match) -> np.ndarray:
    """[seed, run] of `metric` for the rows matching `match`, runs in increasing L1."""
    out = []
    for s in seeds:
        cell = sorted(select(rows, seed=s, **match), key=lambda r: r["l1"])
        if not cell:
            raise ValueError(f"no rows for seed {s} and {match}")
        out.append([r[metric] for r in cell])
    return np.asarray(out, float)


def widest(setup: Setup) -> int:
    return setup.widths[-1]


def _at_l1(setup: Setup) -> dict:
    return {"l1": float(setup.l1_values[0])}


def f1_reductions(rows, setup: Setup) -> np.ndarray:
    """[width (narrowest, widest), seed] dead(beta1 0.9) - dead(beta1 0) with no dead-latent
    fix, at equal L1 (`l1_values[0]`)."""
    out = []
    for w in (setup.widths[0], widest(setup)):
        d = {b: per_seed(rows, "dead", setup.seeds, width=w, strategy="none", beta1=b,
                         **_at_l1(setup))[:, 0] for b in BETA1}
        out.append(d[0.9] - d[0.0])
    return np.asarray(out)


def g1_match(setup: Setup, strategy: str) -> dict:
    window = setup.windows[1] if strategy == "ghost" else setup.windows[0]
    return dict(width=widest(setup), strategy=strategy, window=window, beta1=0.0)


def g1_comparison(rows, setup: Setup, n_targets: int = 5) -> frontier.MatchedComparison:
    """Dead fraction, ghost (short window) - none, at matched L0 along the L1 values, beta1 = 0,
    widest width (both counted at the long window)."""
    def curves(strategy):
        m = g1_match(setup, strategy)
        return list(zip(per_seed(rows, "l0", setup.seeds, **m),
                        per_seed(rows, "dead", setup.seeds, **m)))
    return frontier.compare_at_matched_l0(curves("none"), curves("ghost"), n_targets=n_targets)


def g1_equal_l1(rows, setup: Setup) -> np.ndarray:
    """Per seed, dead(ghost) - dead(none) at equal L1 (mean over the L1 values), beta1 = 0."""
    return (per_seed(rows, "dead", setup.seeds, **g1_match(setup, "ghost")) -
            per_seed(rows, "dead", setup.seeds, **g1_match(setup, "none"))).mean(axis=1)


def f4_stacking(rows, setup: Setup) -> dict:
    """`recipe.stacking` of the ghost-grads grid (windows x beta1) at `l1_values[0]`."""
    grid = {(w, b): per_seed(rows, "dead", setup.seeds, width=widest(setup), strategy="ghost",
                             window=w, beta1=b, **_at_l1(setup))[:, 0]
            for w in setup.windows for b in BETA1}
    return recipe.stacking(grid, setup.windows)


def summary_table(rows, setup: Setup) -> list[dict]:
    """One row per SAE configuration (width, strategy, window, beta1, L1): means over seeds."""
    keys = sorted({(r["d_sae"], r["strategy"], -r["window"], r["beta1"], r["l1"])
                   for r in rows})
    table = []
    for d_sae, strategy, neg_w, b1, l1 in keys:
        cell = select(rows, d_sae=d_sae, strategy=strategy, window=-neg_w, beta1=b1, l1=l1)
        table.append({"d_sae": d_sae, "dead strategy": strategy, "dead window": -neg_w,
                      "beta1": b1, "l1": l1, "seeds": len(cell),
                      **{k: float(np.mean([r[k] for r in cell]))
                         for k in ("dead", "l0", "fvu", "mmcs", "recovered")}})
    return table


def _setup_numbers(setup: Setup) -> dict:
    return {"d_in": setup.d_in, "n_true_features": setup.n_features,
            "offset_norm": setup.offset_norm, "seeds": len(setup.seeds), "steps": setup.steps,
            "batch_size": setup.batch_size, "lr": setup.lr, "windows": list(setup.windows)}


def verdict_g1(rows, setup: Setup, *, dead_fraction_margin: float) -> claims.Claim:
    """G-1 on the synthetic grid ("G-1 (synthetic)"): the LM page's rule on the matched-L0
    dead-fraction difference; inconclusive when the no-fix SAEs have (almost) no dead latents
    to reduce (mean dead fraction below `dead_fraction_margin`)."""
    cmp = g1_comparison(rows, setup)
    none_dead = float(per_seed(rows, "dead", setup.seeds, **g1_match(setup, "none")).mean())
    numbers = {"equal-L1 dead fraction, ghost - none (mean over seeds)":
               float(g1_equal_l1(rows, setup).mean()),
               "dead fraction without a fix (mean)": none_dead,
               "d_sae": widest(setup) * setup.n_features, **_setup_numbers(setup)}
    if none_dead < dead_fraction_margin:
        return claims.inconclusive(
            "G-1" + SUFFIX, ghost_grads.G1_TEXT, source="replicated", rule="directional",
            reason=f"nothing to revive: without a fix the dead fraction is {none_dead:.4f}, "
                   f"below {dead_fraction_margin}", numbers=numbers)
    return ghost_grads.verdict_g1({("none", "ghost", "dead_fraction"): cmp},
                                  claim_id="G-1" + SUFFIX, extra_numbers=numbers)


def verdicts_f(rows, setup: Setup, *, dead_fraction_margin: float) -> list[claims.Claim]:
    """F-1 and F-4 on the synthetic grid ("F-1 (synthetic)", "F-4 (synthetic)"), by the LM
    page's rules."""
    widths = [w * setup.n_features for w in (setup.widths[0], widest(setup))]
    return [recipe.verdict_f1(f1_reductions(rows, setup), widths,
                              {"l1": setup.l1_values[0], **_setup_numbers(setup)},
                              claim_id="F-1" + SUFFIX),
            recipe.verdict_f4(f4_stacking(rows, setup), dead_fraction_margin, setup.windows,
                              claim_id="F-4" + SUFFIX)]
