"""What a profile costs before it runs: the book's compute plan, priced page by page.

Why: the cpu profile is most readers' only run and must stay within an hour on 2 cores, and a
reader who changes a profile wants to know the cost before spending it. Each page's work is
counted from its resolved parameters (SAE training activations by width, harvested tokens,
tokens spliced through the model after the SAE's site, other forward tokens, pursuit
iterations), priced with rates measured on the CI machine kind (`CPU_RATES`), plus a per-page
overhead (model loading, compilation, the work the counts do not price: toy models, the local
LLM, timings), calibrated once from a measured cpu build. Stores and SAEs that several pages
share are paid by the first page that needs them, in the table of contents' order, as the
caches make them.

    python -m interp.book build --profile cpu --dry-run
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Callable, Mapping, Sequence

D_MODELS = {"smollm2-135m": 576, "gemma3-270m": 640}  # the LM pages' `model` choices
D_MODEL = D_MODELS["smollm2-135m"]  # the default model's
CONTEXT = 128           # stored contexts (BOS + 127 activations)
REFERENCE_SITE = "blocks.6.resid_post"  # the default `site`


def _model(p: Mapping) -> str:
    model = p.get("model", "smollm2-135m")
    if model not in D_MODELS:
        raise ValueError(f"no compute plan for model {model!r}; known: {sorted(D_MODELS)}")
    return model


def _d_model(p: Mapping) -> int:
    return D_MODELS[_model(p)]


def _store(p: Mapping) -> tuple[str, int]:
    """The page's shared store: (model and site, tokens); pages asking for the same share it."""
    return f"{_model(p)} {p.get('site', REFERENCE_SITE)}", p["n_tokens"]


@dataclasses.dataclass(frozen=True)
class Rates:
    """Throughputs of one build machine; `sae_activations_per_s` maps d_sae to activations/s of
    one dense float32 training step at batch >= 512 (linear in 1/rate between the points)."""

    sae_activations_per_s: Mapping[int, float]
    harvest_tokens_per_s: float
    spliced_tokens_per_s: float   # layers after the site + 49k-vocab unembedding, per SAE
    forward_tokens_per_s: float   # a full forward of the model (teacher-forced steering)
    pursuit_iterations_per_s: float  # gradient-pursuit code-iterations/s at 4608 atoms

    def training_seconds(self, d_sae: int, activations: float) -> float:
        widths = sorted(self.sae_activations_per_s)
        cost = {w: 1.0 / self.sae_activations_per_s[w] for w in widths}
        if d_sae <= widths[0]:
            per = cost[widths[0]] * d_sae / widths[0]
        elif d_sae >= widths[-1]:
            per = cost[widths[-1]] * d_sae / widths[-1]
        else:
            hi = next(w for w in widths if w >= d_sae)
            lo = widths[widths.index(hi) - 1]
            t = (d_sae - lo) / (hi - lo)
            per = cost[lo] + t * (cost[hi] - cost[lo])
        return activations * per


# Measured on the 2-core CI machine kind (fp32, dense step): 2304 and 4608 from single SAEs
# (reference and steering SAEs, benchmarks/sae_train.py), 1152 from vmapped 2-SAE sweeps at
# batch 512 without a ghost loss (29-31k activations/s: the ghost-grads page's "none" arm at
# f212ee0 and 6d7504a, the recipe page's arms at 6d7504a); harvest, splice and pursuit from
# benchmarks/harvest.py, the pages' timings and the ITO page's frontier stage.
CPU_RATES = Rates(sae_activations_per_s={1152: 30_000.0, 2304: 9_300.0, 4608: 5_500.0},
                  harvest_tokens_per_s=2_100.0, spliced_tokens_per_s=600.0,
                  forward_tokens_per_s=1_500.0, pursuit_iterations_per_s=4_300.0)


@dataclasses.dataclass(frozen=True)
class Training:
    """`n_saes` SAEs of width `d_sae`, each trained on `activations`; `key` names a cached run
    that other pages reuse (trained once)."""

    key: str
    d_sae: int
    activations: int
    n_saes: int = 1
    cost: float = 1.0   # per activation, relative to the rate table: GHOST_COST, SMALL_BATCH_COST


# A ghost-grads loss (three more products of the step's size) costs 1.75-1.9x a plain step: the
# ghost arms' 2-SAE sweeps took 22.9-26.9 s against 13.1-14.1 s for "none" (f212ee0, 6d7504a).
GHOST_COST = 1.85
# Batches below 512 leave the matmuls short: the ITO page's sweep at batch 256 ran 15.6-17.8k
# activations/s at 1152 latents (3d99f7a, 5c824be) against 30k at batch 512.
SMALL_BATCH_COST = 1.8


def _batch_cost(batch_size: int) -> float:
    return SMALL_BATCH_COST if batch_size < 512 else 1.0


@dataclasses.dataclass(frozen=True)
class Work:
    """One page's work, before pricing."""

    stores: tuple[tuple[str, int], ...] = ()   # (site, n_tokens) harvested
    training: tuple[Training, ...] = ()
    spliced_tokens: int = 0
    forward_tokens: int = 0
    pursuit_iterations: int = 0                 # codes x iterations x (atoms / 4608)
    synthetic: tuple[tuple[str, float], ...] = ()  # (key, latent-steps) of synthetic SAE grids


@dataclasses.dataclass(frozen=True)
class PagePlan:
    page: str
    work: Work
    new_stores: tuple[tuple[str, int], ...]
    new_training: tuple[Training, ...]
    seconds: dict                               # by stage, plus "overhead"

    @property
    def total_seconds(self) -> float:
        return float(sum(self.seconds.values()))

    def row(self) -> dict:
        trained = sum(t.activations * t.n_saes for t in self.new_training)
        return {"page": self.page,
                "SAEs trained": sum(t.n_saes for t in self.new_training),
                "training activations": trained,
                "harvested tokens": sum(n for _, n in self.new_stores),
                "spliced tokens": self.work.spliced_tokens,
                "other forward tokens": self.work.forward_tokens,
                "est. minutes": round(self.total_seconds / 60, 1)}


# ----------------------------------------------------------------------------- page counts
def _store_rows(n_tokens: int) -> int:
    """Activations the shared store serves per epoch (`lm_sae.activations`)."""
    return math.ceil(n_tokens / (CONTEXT - 1)) * (CONTEXT - 1)


def _epochs_activations(n_tokens: int, batch_size: int, epochs: float) -> int:
    """`lm_sae.reference_config`: max(1, int(epochs * rows // batch)) steps of `batch_size`."""
    steps = max(1, int(epochs * (_store_rows(n_tokens) // batch_size)))
    return steps * batch_size


def _reference(p: Mapping) -> Training:
    key = ("reference", _store(p), p["expansion"], p["l1_coeff"], p["batch_size"], p["epochs"])
    return Training(repr(key), p["expansion"] * _d_model(p),
                    _epochs_activations(p["n_tokens"], p["batch_size"], p["epochs"]))


def reference_sae(p: Mapping) -> Work:
    return Work(stores=(_store(p),), training=(_reference(p),),
                spliced_tokens=p["eval_contexts"] * CONTEXT,
                forward_tokens=p["heldout_contexts"] * CONTEXT)


def steering(p: Mapping) -> Work:
    """Counts the chosen layer's store and SAE as new work (the worst case: a layer other than
    the reference site's)."""
    c, layers = len(p["coeffs"]), len(p["candidate_layers"])
    cost_tokens = p["cost_contexts"] * p["cost_len"]
    variant_points = (1 + 4 * c) + (1 + 7 * c) + (1 + 2 * c)
    importance_points = 1 + p["n_importance"]
    forward = (layers * (1 + c) * p["n_select_prompts"] * p["prompt_len"]
               + layers * (1 + c) * cost_tokens
               + variant_points * p["n_test_prompts"] * p["prompt_len"]
               + importance_points * (p["n_select_prompts"] + p["n_test_prompts"]) * p["prompt_len"]
               + (variant_points + 2 * importance_points) * cost_tokens)
    steer = Training(repr(("steering", _store(p), p["steer_expansion"], p["l1_coeff"],
                           p["batch_size"], p["epochs"])), p["steer_expansion"] * _d_model(p),
                     _epochs_activations(p["n_tokens"], p["batch_size"], p["epochs"]))
    return Work(stores=(_store(p), (f"{_model(p)} chosen layer", p["n_tokens"])),
                training=(_reference(p), steer), spliced_tokens=2 * p["cost_contexts"] * CONTEXT,
                forward_tokens=forward)


def _ito_sweep(p: Mapping, expansion, batch_size, epochs, l1_coeffs) -> Training:
    key = ("ito sweep", _store(p), expansion, batch_size, epochs, tuple(l1_coeffs))
    return Training(repr(key), expansion * _d_model(p),
                    _epochs_activations(p["n_tokens"], batch_size, epochs), len(l1_coeffs),
                    _batch_cost(batch_size))


# Pursuit work of claim I2 per further seed's sweep and per alive-atom control, relative to the
# main sweep's frontiers: each decoder runs only as far as I2 reads it (`ito.i2_ks`), and the
# control only on decoders with dead atoms. Measured: 73 s for 2 seeds and 3 controls against
# 44 s for the main frontiers (5c824be), so 0.33 each.
I2_PURSUIT_SHARE = 0.33


def ito(p: Mapping) -> Work:
    sweep = _ito_sweep(p, p["expansion"], p["batch_size"], p["epochs"], p["l1_coeffs"])
    extra = [dataclasses.replace(sweep, key=f"ito sweep seed {s} " + sweep.key)
             for s in p["i2_extra_seeds"]]
    rows = p["heldout_contexts"] * (CONTEXT - 1)
    atoms = sweep.d_sae / 4608
    pursuit = rows * max(p["test_ks"]) * len(p["l1_coeffs"]) * atoms
    # the further seeds' frontiers, and the alive-atom control's on every seed
    share = I2_PURSUIT_SHARE * (len(extra) + (1 + len(extra)) * p["i2_alive_control"])
    pursuit *= 1 + share
    return Work(stores=(_store(p),), training=(sweep, *extra),
                spliced_tokens=p["ce_decoders"] * (1 + len(p["ce_ks"])) * p["ce_contexts"] * CONTEXT,
                pursuit_iterations=int(pursuit))


RECIPE_ARMS = 6        # baseline, beta1 = 0.9 and the four other Feb-2024 items (book/recipe.ipynb)
RECIPE_APRIL_ARMS = 2  # the April-2024 items, with `april_2024_arms`


# The synthetic dead-latent grid (interp.experiments.synthetic_dead): SAEs of 32 inputs, so
# small that a step's cost is mostly fixed overhead; priced per latent-step (latents x steps,
# ghost loss included through GHOST_COST, data and evaluation included): the cpu grid (50 SAEs,
# 32.6M latent-steps) took 53 s on 2 idle cores.
SYNTHETIC_LATENT_STEPS_PER_S = 600_000.0
SYNTHETIC_FEATURES = 128  # interp.experiments.synthetic_dead.Setup.n_features


def _synthetic(p: Mapping) -> tuple[tuple[str, float], ...]:
    """The grid both the ghost-grads and recipe pages read (trained by the first, cached)."""
    if not p["synthetic_check"]:
        return ()
    narrow, wide = (w * SYNTHETIC_FEATURES for w in (p["synthetic_widths"][0],
                                                     p["synthetic_widths"][-1]))
    # per seed: none at both widths (2 + 3 runs), ghost at two windows (2 + 3 runs), wide
    per_step = 2 * narrow + 3 * wide + 5 * wide * GHOST_COST
    key = repr(("synthetic dead grid", tuple(p["synthetic_seeds"]), p["synthetic_steps"],
                tuple(p["synthetic_widths"]), tuple(p["synthetic_windows"])))
    return ((key, per_step * p["synthetic_steps"] * len(p["synthetic_seeds"])),)


def ghost_grads(p: Mapping) -> Work:
    runs = len(p["l1_coeffs"]) * len(p["seeds"])
    ghost_arms = 2 + bool(p["always_on_arm"])  # scaled, first K (and always on) besides "ghost"
    plain, ghost = 2 * runs, (1 + ghost_arms) * runs  # none and resample have no ghost loss
    per, width = p["steps"] * p["batch_size"], p["expansion"] * _d_model(p)
    cost = _batch_cost(p["batch_size"])
    return Work(stores=(_store(p),),
                training=(Training("ghost_grads plain", width, per, plain, cost),
                          Training("ghost_grads ghost", width, per, ghost, cost * GHOST_COST)),
                spliced_tokens=(plain + ghost) * p["eval_contexts"] * CONTEXT,
                synthetic=_synthetic(p))


def recipe(p: Mapping) -> Work:
    per, cost = p["steps"] * p["batch_size"], _batch_cost(p["batch_size"])
    arms = RECIPE_ARMS + (RECIPE_APRIL_ARMS if p["april_2024_arms"] else 0)
    n = arms * len(p["l1_values"]) * len(p["seeds"])
    runs = [Training("recipe arms", p["expansion"] * _d_model(p), per, n, cost)]
    runs += [Training(f"recipe width x{w}", w * _d_model(p), per, 2 * len(p["seeds"]), cost)
             for w in p["width_check_expansions"]]
    if p["stacking_check"]:  # ghost grads, as Anthropic's stacking test
        runs.append(Training("recipe stacking", p["expansion"] * _d_model(p), per,
                             2 * len(p["stacking_windows"]) * len(p["seeds"]), cost * GHOST_COST))
    return Work(stores=(_store(p),), training=tuple(runs),
                spliced_tokens=n * p["eval_contexts"] * p["eval_context_len"],
                synthetic=_synthetic(p))


def autointerp(p: Mapping) -> Work:
    runs = [_reference(p), _ito_sweep(p, p["l0_sweep_expansion"], p["l0_sweep_batch_size"],
                                      p["l0_sweep_epochs"], p["l0_sweep_l1_coeffs"])]
    spliced = 0
    if p["a5_topk"]:
        ref = _reference(p)
        runs.append(Training("a5 top-k " + ref.key, ref.d_sae, ref.activations))
        spliced = 2 * p["a5_eval_contexts"] * CONTEXT
    return Work(stores=(_store(p),), training=tuple(runs),
                spliced_tokens=spliced)


def no_lm_training(p: Mapping) -> Work:
    """Pages whose cost is all overhead at this level of counting (toy models, infrastructure)."""
    return Work()


PAGES: dict[str, Callable[[Mapping], Work]] = {
    "reference_sae": reference_sae, "steering": steering, "ito": ito,
    "ghost_grads": ghost_grads, "toy_models": no_lm_training, "recipe": recipe,
    "autointerp": autointerp, "infrastructure": no_lm_training}

# Seconds each page spends beyond its counted work on the cpu profile: model loading,
# compilation, toy models, the local LLM, timing repeats, feature cards. Calibrated as measured
# minus priced (at the rates above) on a cpu build from an empty cache (commit 3d99f7a, 2 cores;
# the README's table), with three later measurements: the ghost-grads page at its present scale
# (613 s, f212ee0) plus its resampling pools (each resample run draws and scores a 65k-row pool
# at 4 events: 15-17 s per run, 6d7504a), steering's unshared run (618 s; in the 3d99f7a build a
# benchmark shared the cores), and the ITO page's frontiers (44-45 s at 3d99f7a and 5c824be, so
# its pursuit is priced and no longer in its overhead). The cpu estimate matches those runs by
# construction; what the plan adds is how the counted work moves when parameters change.
# The toy page's Tracr compressions now train until their loss plateaus (at most 3 rounds of 600
# steps): +45 s, from the rounds each compression took in a measured run (2-7 s per round).
CPU_OVERHEAD_S = {"reference_sae": 5.0, "steering": 230.0, "ito": 104.5, "ghost_grads": 34.0,
                  "toy_models": 255.0, "recipe": 85.0, "autointerp": 245.0,
                  "infrastructure": 155.0}


def price(page: str, work: Work, rates: Rates, seen_stores: set, seen_training: set,
          overhead_s: float) -> PagePlan:
    """Price one page's work, skipping stores and runs an earlier page already made (and
    marking this page's as made)."""
    new_stores = tuple(s for s in dict.fromkeys(work.stores) if s not in seen_stores)
    new_training = tuple(t for t in work.training if t.key not in seen_training)
    new_synthetic = tuple(g for g in dict.fromkeys(work.synthetic) if g[0] not in seen_training)
    seen_stores.update(new_stores)
    seen_training.update(t.key for t in new_training)
    seen_training.update(k for k, _ in new_synthetic)
    seconds = {
        "harvest": sum(n for _, n in new_stores) / rates.harvest_tokens_per_s,
        "training": sum(rates.training_seconds(t.d_sae, t.activations * t.n_saes) * t.cost
                        for t in new_training),
        "splice": work.spliced_tokens / rates.spliced_tokens_per_s,
        "forward": work.forward_tokens / rates.forward_tokens_per_s,
        "pursuit": work.pursuit_iterations / rates.pursuit_iterations_per_s,
        "synthetic": sum(n for _, n in new_synthetic) / SYNTHETIC_LATENT_STEPS_PER_S,
        "overhead": overhead_s}
    return PagePlan(page, work, new_stores, new_training, seconds)


def plan(pages: Sequence[tuple[str, Mapping]], rates: Rates = CPU_RATES,
         overhead_s: Mapping[str, float] | None = None) -> list[PagePlan]:
    """Plans for (page name, resolved parameters) in build order. Unknown pages are refused by
    name (a new page needs its counts here)."""
    overhead_s = CPU_OVERHEAD_S if overhead_s is None else overhead_s
    seen_stores: set = set()
    seen_training: set = set()
    out = []
    for name, params in pages:
        if name not in PAGES:
            raise ValueError(f"no compute plan for page {name!r}; add its counts to "
                             f"interp.book.plan.PAGES (known: {sorted(PAGES)})")
        out.append(price(name, PAGES[name](params), rates, seen_stores, seen_training,
                         overhead_s.get(name, 0.0)))
    return out
