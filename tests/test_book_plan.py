"""interp.book.plan: the priced compute plan of a profile (and `build --dry-run`)."""

from pathlib import Path

import pytest

from interp.book import params as P
from interp.book import plan
from interp.book.__main__ import main
from interp.book.project import Project

ROOT = Path(__file__).resolve().parents[1]
FIXTURE = Path(__file__).parent / "fixtures" / "book"
CPU_BUDGET_MINUTES = 55  # the cpu profile's first build must fit an hour on 2 cores


def profile_pages(profile: str):
    project = Project(ROOT)
    return [(nb.stem, P.resolve(nb, project.params_dir(nb), profile))
            for nb in project.notebooks()]


def test_the_cpu_profile_fits_its_budget():
    plans = plan.plan(profile_pages("cpu"))
    total = sum(p.total_seconds for p in plans) / 60
    assert total <= CPU_BUDGET_MINUTES, {p.page: round(p.total_seconds / 60, 1) for p in plans}
    assert {p.page for p in plans} == set(plan.PAGES)


def test_shared_stores_and_saes_are_paid_once_in_build_order():
    plans = {p.page: p for p in plan.plan(profile_pages("cpu"))}
    ref = plans["reference_sae"]
    assert ref.new_stores == (("smollm2-135m blocks.6.resid_post", 250_000),)
    assert [t.key for t in ref.new_training] == [plan._reference(dict(
        n_tokens=250_000, expansion=4, l1_coeff=0.004, batch_size=1024, epochs=3.0)).key]
    # steering reuses the reference store and SAE; its chosen layer's store and SAE are new
    assert plans["steering"].new_stores == (("smollm2-135m chosen layer", 250_000),)
    assert [t.d_sae for t in plans["steering"].new_training] == [8 * plan.D_MODEL]
    # auto-interp reuses the reference SAE and the ITO sweep: only its top-k SAE is new
    assert [t.key.split()[0] for t in plans["autointerp"].new_training] == ["a5"]
    assert plans["ito"].new_stores == () and plans["ghost_grads"].new_stores == ()


def test_counts_follow_the_parameters():
    pages = dict(profile_pages("cpu"))
    gg = pages["ghost_grads"]
    base = plan.ghost_grads(gg)
    doubled = plan.ghost_grads({**gg, "steps": 2 * gg["steps"]})
    assert doubled.training[0].activations == 2 * base.training[0].activations
    runs = len(gg["l1_coeffs"]) * len(gg["seeds"])
    # none and resample train plain steps; ghost, scaled and first-K pay the ghost loss
    assert [t.n_saes for t in base.training] == [2 * runs, 3 * runs]
    assert [t.cost for t in base.training] == [1.0, plan.GHOST_COST]
    always = plan.ghost_grads({**gg, "always_on_arm": True})
    assert [t.n_saes for t in always.training] == [2 * runs, 4 * runs]
    assert base.spliced_tokens == 5 * runs * gg["eval_contexts"] * plan.CONTEXT
    # a ghost SAE costs GHOST_COST plain ones; a batch below 512 SMALL_BATCH_COST
    plans = {p.page: p for p in plan.plan([("ghost_grads", gg)])}
    plain_s = plan.CPU_RATES.training_seconds(base.training[0].d_sae, base.training[0].activations)
    assert plans["ghost_grads"].seconds["training"] == pytest.approx(
        plain_s * (2 * runs + 3 * runs * plan.GHOST_COST))
    small = plan.ghost_grads({**gg, "batch_size": 256})
    assert [t.cost for t in small.training] == [plan.SMALL_BATCH_COST,
                                                plan.SMALL_BATCH_COST * plan.GHOST_COST]
    rc = pages["recipe"]
    frontier = {a: plan.recipe({**rc, "april_2024_arms": a}).training[0] for a in (False, True)}
    assert frontier[False].n_saes == 6 * len(rc["l1_values"]) * len(rc["seeds"])
    assert frontier[True].n_saes == 8 * len(rc["l1_values"]) * len(rc["seeds"])
    rs = pages["reference_sae"]
    # lm_sae.reference_config: int(epochs * rows // batch) steps of batch_size
    rows = -(-rs["n_tokens"] // 127) * 127
    assert plan._reference(rs).activations == int(rs["epochs"] * (rows // rs["batch_size"])) * rs["batch_size"]


def test_the_synthetic_grid_is_priced_once_for_the_two_pages_that_read_it():
    pages = dict(profile_pages("cpu"))
    plans = {p.page: p for p in plan.plan([("ghost_grads", pages["ghost_grads"]),
                                           ("recipe", pages["recipe"])])}
    gg = pages["ghost_grads"]
    n, w = plan.SYNTHETIC_FEATURES, gg["synthetic_widths"]
    per_step = 2 * w[0] * n + 3 * w[-1] * n + 5 * w[-1] * n * plan.GHOST_COST
    want = per_step * gg["synthetic_steps"] * len(gg["synthetic_seeds"])
    assert plans["ghost_grads"].seconds["synthetic"] == pytest.approx(
        want / plan.SYNTHETIC_LATENT_STEPS_PER_S)
    assert plans["recipe"].seconds["synthetic"] == 0.0  # the same grid: reloaded, not retrained
    off = plan.ghost_grads({**gg, "synthetic_check": False})
    assert off.synthetic == ()
    more = plan.ghost_grads({**gg, "synthetic_seeds": [0, 1, 2, 3, 4, 5, 6, 7, 8, 9]})
    assert more.synthetic[0][1] == pytest.approx(2 * plan.ghost_grads(gg).synthetic[0][1])


def test_training_rate_is_the_measured_table_between_its_points():
    r = plan.CPU_RATES
    for d_sae, rate in r.sae_activations_per_s.items():
        assert r.training_seconds(d_sae, rate) == pytest.approx(1.0)
    widths = [576, 1152, 2000, 2304, 4608, 9216]
    secs = [r.training_seconds(w, 1e6) for w in widths]
    assert secs == sorted(secs)  # wider is never cheaper
    assert r.training_seconds(9216, 5500) == pytest.approx(2.0)  # linear beyond the table


def test_an_unknown_page_is_refused_by_name():
    with pytest.raises(ValueError, match="no compute plan for page 'good'"):
        plan.plan([("good", {})])


def _executed_files():
    return sorted((p, p.stat().st_mtime) for p in (ROOT / "_build").rglob("*") if p.is_file())


def test_dry_run_prints_the_plan_and_executes_nothing(capsys):
    before = _executed_files()
    assert main(["--root", str(ROOT), "build", "--profile", "cpu", "--dry-run"]) == 0
    assert _executed_files() == before
    out = capsys.readouterr().out
    assert "estimated total:" in out
    for page in plan.PAGES:
        assert page in out
    assert main(["--root", str(FIXTURE), "build", "--profile", "cpu", "--dry-run"]) == 2
    assert "no compute plan for page 'good'" in capsys.readouterr().err


def test_the_model_and_site_parameters_reach_the_plan():
    pages = dict(profile_pages("cpu"))
    gg = pages["ghost_grads"]
    gemma = plan.ghost_grads({**gg, "model": "gemma3-270m"})
    assert gemma.training[0].d_sae == gg["expansion"] * 640
    assert gemma.stores == (("gemma3-270m blocks.6.resid_post", gg["n_tokens"]),)
    # another site is another store, and the reference SAE on it another SAE
    rs = pages["reference_sae"]
    other = {**rs, "site": "blocks.3.resid_post"}
    assert plan.reference_sae(other).stores != plan.reference_sae(rs).stores
    assert plan._reference(other).key != plan._reference(rs).key
    with pytest.raises(ValueError, match="no compute plan for model 'gpt2'"):
        plan.ghost_grads({**gg, "model": "gpt2"})
