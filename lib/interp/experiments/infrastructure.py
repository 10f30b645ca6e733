"""Measurements and verdicts of the infrastructure page (snippet 7: instrumenting JAX models).

Three measurements, each a plain list or array the notebook keeps:

* `penzai_checks`: callback-style capture and intervention on penzai's llamalike transformer (a
  model file this project did not write, run unedited, scanned by penzai's own `LayerStack`),
  under `jax.jit`, against reference computations (our own forward with `interp.hooks`, and
  penzai's model run without instrumentation). One row per input: the items of claim J-a.
* `capture_memory`: XLA's compiled memory (temporary + output bytes) of the jitted forward with
  no capture, one layer's residual captured, and every layer's, in units of one layer's
  activation; one row per input shape.
* `inactive_overhead`: per timing repeat, the relative slowdown of the forward whose hooks
  machinery is present but inactive (`core.forward` with no hooks) over a plain forward with
  no hooks machinery at all (`plain_forward`). Repeats are interleaved, so drift of a shared
  machine hits both arms alike.

`verdicts` turns them into the page's claims J-a, J-b, J-c.
"""

from __future__ import annotations

import time
from collections.abc import Sequence

import jax
import jax.numpy as jnp
import numpy as np

from interp import claims, hooks
from interp import penzai_bridge as pb
from interp.models import core
from interp.stats import Effect

J_A = "Callback/sow-style instrumentation works under jit and scan without forking model code"
J_B = ("Instrumentation costs little: inactive hooks slow the forward by under 2%, and capturing "
       "one layer's residual inside the scan costs about one layer's memory, not all layers'")
J_C = "A greenlet loop can expose activations imperatively inside a jitted forward"
PENZAI_CHECKS = ("capture", "intervention", "unchanged")


def _maxdiff(a, b) -> float:
    return float(jnp.abs(jnp.asarray(a) - jnp.asarray(b)).max())


# ----------------------------------------------------------------------------- J-a


def _jitted_with(pz_model, make_interceptor):
    """jit of (tokens, *args) -> penzai logits, traced with make_interceptor(*args) on every
    TransformerBlock (entered during tracing, so the program always carries it). penzai's
    variables are not jit arguments: the model is closed over."""
    def run(tokens, *args):
        with pb.intercepting(pb.model_parts.TransformerBlock, make_interceptor(*args)):
            return pb.logits(pz_model, tokens)

    return jax.jit(run)


def penzai_checks(model, pz_model, inputs: Sequence, vectors: Sequence) -> list[dict]:
    """Per input (tokens [B, T]) and steering vector [d_model], the max abs differences (and the
    scales they are judged against):

    capture: block outputs sent out of penzai's jitted, scanned forward vs our resid_post;
    intervention: penzai's logits with the vector added to every block output vs ours with
    `hooks.add("resid_post", vector)`; unchanged: penzai's jitted logits with the capture
    callbacks vs without any instrumentation."""
    sink: list = []
    capturing = _jitted_with(pz_model, lambda: pb.send_to(sink))
    editing = _jitted_with(pz_model, pb.add_vector)
    plain = jax.jit(lambda t: pb.logits(pz_model, t))
    rows = []
    for tokens, vector in zip(inputs, vectors, strict=True):
        tokens, vector = jnp.asarray(tokens, jnp.int32), jnp.asarray(vector, jnp.float32)
        sink.clear()
        captured_logits = jax.block_until_ready(capturing(tokens))
        jax.effects_barrier()  # every ordered host callback has run
        rows.append(_compare(model, tokens, vector, list(sink), captured_logits,
                             plain(tokens), editing(tokens, vector)))
        rows[-1]["scanned"] = is_scanned(pz_model)
    return rows


def _compare(model, tokens, vector, captured, captured_logits, plain, edited) -> dict:
    ours = model.forward(tokens, hooks.capture("resid_post")).captures["resid_post"]
    if len(captured) != model.cfg.n_layers:
        raise RuntimeError(f"penzai_checks: {len(captured)} block outputs captured, expected "
                           f"one per layer ({model.cfg.n_layers})")
    ours_edited = model.forward(tokens, hooks.add("resid_post", vector)).logits
    return {"capture": _maxdiff(np.stack(captured), ours),
            "resid_scale": float(jnp.abs(ours).max()),
            "intervention": _maxdiff(edited, ours_edited),
            "unchanged": _maxdiff(captured_logits, plain),
            "logit_scale": float(jnp.abs(plain).max()),
            "edit_effect": _maxdiff(edited, plain)}


def is_scanned(pz_model) -> bool:
    """Whether penzai runs the blocks under `lax.scan` (a `LayerStack`), as J-a requires."""
    return pb.pz.select(pz_model).at_instances_of(pb.pz.nn.LayerStack).count() > 0


def worst_ratio(row: dict, rel_tol: float) -> float:
    """The largest of one input's differences over its tolerance, rel_tol * max(1, scale):
    below 1 means capture, intervention and the untouched output all agree."""
    scale = {"capture": row["resid_scale"], "intervention": row["logit_scale"],
             "unchanged": row["logit_scale"]}
    return max(row[k] / (rel_tol * max(1.0, scale[k])) for k in PENZAI_CHECKS)


# ----------------------------------------------------------------------------- J-b: memory


def compiled_bytes(model, hooks_value, batch: int, seq: int) -> int:
    """Temporary + output bytes XLA plans for the jitted forward (logits and captures)."""
    tokens = jnp.zeros((batch, seq), jnp.int32)
    fwd = jax.jit(lambda p, t: core.forward(model.arch, p, t, model.cfg, hooks_value)[::2])
    mem = fwd.lower(model.params, tokens).compile().memory_analysis()
    if mem is None:
        raise RuntimeError("compiled_bytes: this JAX backend gives no memory_analysis(); the "
                           "memory part of J-b cannot be measured here")
    return int(mem.temp_size_in_bytes) + int(mem.output_size_in_bytes)


def capture_memory(model, shapes: Sequence[tuple[int, int]], site: str = "resid_post",
                   layer: int | None = None) -> list[dict]:
    """Per (batch, seq): extra compiled bytes of capturing `site` at one layer and at every
    layer over no capture, in layers' worth (one layer = batch * seq * d_model float32)."""
    layer = model.cfg.n_layers // 2 if layer is None else layer
    rows = []
    for batch, seq in shapes:
        one_layer = batch * seq * model.cfg.d_model * 4
        none = compiled_bytes(model, hooks.Hooks(), batch, seq)
        one = compiled_bytes(model, hooks.capture(site, layers=layer), batch, seq)
        every = compiled_bytes(model, hooks.capture(site), batch, seq)
        rows.append({"batch": batch, "seq": seq, "layer_bytes": one_layer, "none_bytes": none,
                     "one_layer_extra": (one - none) / one_layer,
                     "all_layers_extra": (every - none) / one_layer})
    return rows


# ----------------------------------------------------------------------------- J-b: time


def plain_forward(arch, params, tokens, cfg):
    """The forward with no hooks machinery at all: embed, blocks under `lax.scan` with an
    identity tag, head. The reference that inactive hooks are timed against."""
    untagged = lambda site, x: x  # noqa: E731
    positions = jnp.arange(tokens.shape[1], dtype=jnp.int32)
    consts = {k: jnp.asarray(v) for k, v in cfg.layer_constants().items()}

    def body(x, xs):
        p, c = xs
        return arch.block(p, x, cfg, untagged, positions, c, None)[0], None

    x, _ = jax.lax.scan(body, arch.embed(params, tokens, cfg), (params["layers"], consts))
    return arch.head(params, x, cfg, untagged)


def _seconds(fn) -> float:
    t = time.perf_counter()
    jax.block_until_ready(fn())
    return time.perf_counter() - t


def _median_pair(first, second, calls: int) -> tuple[float, float]:
    """Median seconds of `first` and `second` over `calls` alternating calls: a burst of load
    on a shared machine hits single calls, which the median discards."""
    times = np.array([[_seconds(first), _seconds(second)] for _ in range(calls)])
    return tuple(np.median(times, axis=0))


def inactive_overhead(model, tokens, repeats: int, min_seconds: float = 0.2) -> np.ndarray:
    """Per repeat, median t(hooks present, inactive) / median t(plain forward) - 1, both
    jitted and warmed up, over alternating calls lasting about `min_seconds`; which arm goes
    first alternates between repeats."""
    tokens = jnp.asarray(tokens, jnp.int32)
    hooked = jax.jit(lambda p, t: core.forward(model.arch, p, t, model.cfg, hooks.Hooks()).logits)
    plain = jax.jit(lambda p, t: plain_forward(model.arch, p, t, model.cfg))
    arm_h, arm_p = (lambda: hooked(model.params, tokens)), (lambda: plain(model.params, tokens))
    for _ in range(2):  # compile and warm up
        _median_pair(arm_h, arm_p, 1)
    one_call = max(_median_pair(arm_h, arm_p, 3))
    calls = max(3, int(np.ceil(min_seconds / max(2 * one_call, 1e-6))))
    out = []
    for r in range(repeats):
        if r % 2 == 0:
            t_h, t_p = _median_pair(arm_h, arm_p, calls)
        else:
            t_p, t_h = _median_pair(arm_p, arm_h, calls)
        out.append(t_h / t_p - 1)
    return np.asarray(out)


# ----------------------------------------------------------------------------- verdicts


def memory_parts(rows: Sequence[dict], n_layers: int, tol_layers: float) -> dict[str, Effect]:
    """Slacks over input shapes (positive: the part holds): one-layer capture within
    `tol_layers` of one layer's bytes, all-layer capture within it of n_layers'. A t interval
    over shapes: the planned bytes barely vary, and a bootstrap over 4 shapes could never
    reach significance to refute."""
    one = np.array([r["one_layer_extra"] for r in rows])
    every = np.array([r["all_layers_extra"] for r in rows])
    over_shapes = lambda x: Effect.from_seeds(x, method="t over input shapes")  # noqa: E731
    return {"memory: tol - |one-layer extra - 1| (layers)":
            over_shapes(tol_layers - np.abs(one - 1)),
            f"memory: tol - |all-layer extra - {n_layers}| (layers)":
            over_shapes(tol_layers - np.abs(every - n_layers))}


def timing_part(overhead: Sequence[float], max_inactive_overhead: float) -> Effect:
    """Slack of the inactive-hooks slowdown below `max_inactive_overhead`, per timing repeat."""
    return Effect.from_seeds(max_inactive_overhead - np.asarray(overhead, float),
                             method="t over timing repeats")


def verdicts(penzai_rows: Sequence[dict] | None, memory_rows: Sequence[dict],
             overhead: Sequence[float], *, n_layers: int, penzai_rel_tol: float,
             memory_tol_layers: float, max_inactive_overhead: float = 0.02,
             penzai_skip_reason: str = "") -> list:
    """The page's claims: J-a from `penzai_check` rows (None when the model has no penzai
    twin: not tested, with `penzai_skip_reason`), J-b from `capture_memory` rows and
    `inactive_overhead`, J-c not tested."""
    out = []
    if penzai_rows and not all(r["scanned"] for r in penzai_rows):
        raise ValueError("verdicts: J-a is about instrumentation under scan; build the penzai "
                         "model with penzai_bridge.to_penzai(..., layer_stack=True)")
    if penzai_rows:
        ratios = [worst_ratio(r, penzai_rel_tol) for r in penzai_rows]
        worst = {k: max(r[k] for r in penzai_rows) for k in (*PENZAI_CHECKS, "edit_effect")}
        out.append(claims.judge(
            "J-a", J_A, source="post", rule="threshold", effect=Effect.from_items(ratios),
            threshold=1.0, higher_is_reproduced=False,
            numbers={"measure": "per input: max over checks of max|diff| / (rel_tol * max(1, "
                     "scale)); below 1 = agreement", "rel_tol": penzai_rel_tol,
                     "n_inputs": len(penzai_rows), **{f"max_abs_{k}": v for k, v in worst.items()},
                     "model": "penzai llamalike_common, LayerStack (lax.scan), jit, unedited"}))
    else:
        out.append(claims.not_tested("J-a", J_A, source="post", reason=penzai_skip_reason or
                                     "no penzai model of this architecture"))
    timing = timing_part(overhead, max_inactive_overhead)
    parts = {**memory_parts(memory_rows, n_layers, memory_tol_layers),
             f"timing: {max_inactive_overhead} - inactive-hooks overhead": timing}
    out.append(claims.judge(
        "J-b", J_B, source="post", rule="all_parts", parts=parts, part_rule="all hold",
        numbers={"timing_claim": True, "max_inactive_overhead": max_inactive_overhead,
                 "mean_inactive_overhead": float(np.mean(overhead)),
                 "timing_repeats": len(overhead),
                 "memory_tol_layers": memory_tol_layers, "n_layers": n_layers,
                 "one_layer_extra_layers": [r["one_layer_extra"] for r in memory_rows],
                 "all_layers_extra_layers": [r["all_layers_extra"] for r in memory_rows]}))
    out.append(claims.not_tested(
        "J-c", J_C, source="post",
        reason="interp.hooks exposes activations functionally (captures, pure edits), not through "
               "a coroutine that suspends at each site; greenlet is not installed"))
    return out
