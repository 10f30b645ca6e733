"""Batched, jitted, non-negative greedy pursuits on a fixed dictionary (inference-time
optimisation, "ITO": Lewis Smith in GDM's Progress Update #1; Gated SAE paper, App. A).

Problem (Gated SAE eq. 12): for each row y = x - bias, find a code alpha with

    min ||y - alpha @ D||^2   s.t.  ||alpha||_0 <= k,  alpha >= 0,

where D [n_atoms, d] has one atom per row (an SAE's W_dec). Greedy pursuits approximate it:

- gradient pursuit (Blumensath & Davies, "Gradient Pursuits", IEEE TSP 56(6), 2008): add the
  atom most correlated with the residual, then take one gradient step on the support with the
  exact line-search step eta = <c, r> / <c, c>, and project onto alpha >= 0 (the batched
  variant of saprmarks/dictionary_learning `grad_pursuit.py`);
- matching pursuit (Mallat & Zhang 1993), non-negative: add the best correlation to that atom.

Accelerator-friendly by construction: fixed shapes, masks instead of index sets, one `lax.scan`
over iterations. A code is stored as `k` slots (atom index, value, in-use flag), so updates gather
k atoms instead of multiplying by the whole dictionary: per iteration one [B, d] x [d, n_atoms]
matmul (the correlations) plus O(B k d) work. One run to k_max snapshots the code after every
iteration, so a whole sparsity frontier costs one pass.

Atoms are normalised to unit norm internally (and codes rescaled back), so a dictionary whose
rows are not unit-norm gives the same reconstruction as its normalised version; zero rows are
never selected.
"""

from __future__ import annotations

import functools
import math
from typing import NamedTuple

import jax
import jax.numpy as jnp
import numpy as np

SUPPORT_MODES = ("persistent", "nonzero")
RESIDUAL_MODES = ("exact", "incremental")


class SparseCodes(NamedTuple):
    """Codes in slot form: `values[..., s]` is the coefficient of atom `indices[..., s]`.

    Unused slots hold value 0 (their index is meaningless). `to_dense` gives the SAE-shaped
    [..., n_atoms] array."""

    indices: jax.Array  # int32 [..., k]
    values: jax.Array  # float [..., k], >= 0

    def to_dense(self, n_atoms: int) -> jax.Array:
        return to_dense(self, n_atoms)

    def l0(self) -> jax.Array:
        """Number of non-zero coefficients per example (achieved L0, <= k)."""
        return jnp.sum(self.values != 0, axis=-1)

    def decode(self, dictionary, bias=None) -> jax.Array:
        return decode_sparse(self, dictionary, bias)


class Frontier(NamedTuple):
    """Codes after every iteration of one pursuit run: `codes` has a leading iteration axis and
    `ks[t]` is the largest L0 that snapshot t can have (t+1 atoms per iteration times max_topk,
    capped at k)."""

    ks: np.ndarray  # int [T]
    codes: SparseCodes  # leaves [T, ..., k_max]

    def at(self, k: int) -> SparseCodes:
        """Codes of the first snapshot allowed `k` atoms (what a run with that k returns)."""
        hits = np.nonzero(self.ks == k)[0]
        if hits.size == 0:
            available = sorted(set(self.ks.tolist()))
            raise ValueError(f"k={k} is not on this frontier; available ks: {available}")
        t = int(hits[0])
        return SparseCodes(self.codes.indices[t], self.codes.values[t])


class PursuitState(NamedTuple):
    """Per-example state of a pursuit with `k` slots (the fixed-shape support).

    `blocked` is added to the correlations before an atom is chosen: -inf for atoms in the
    support (gradient pursuit) and for zero atoms, 0 elsewhere. Why carried, not rebuilt from
    the slots each iteration: scattering k slots into a fresh [n_atoms] mask cost about as much
    as the correlation matmul on CPU; one element changes per added atom."""

    indices: jax.Array  # int32 [k]
    values: jax.Array  # [k]
    used: jax.Array  # bool [k]: slot belongs to the support
    residual: jax.Array  # [d]: y - values @ D[indices]
    blocked: jax.Array  # [n_atoms]: 0 or -inf


def to_dense(codes: SparseCodes, n_atoms: int) -> jax.Array:
    """[..., k] slots -> [..., n_atoms] dense codes (the SAE encoder's output shape)."""
    idx, val = jnp.asarray(codes.indices), jnp.asarray(codes.values)
    lead = idx.shape[:-1]
    flat_idx = idx.reshape(-1, idx.shape[-1])
    flat_val = val.reshape(-1, val.shape[-1])
    rows = jnp.arange(flat_idx.shape[0])[:, None]
    dense = jnp.zeros((flat_idx.shape[0], n_atoms), flat_val.dtype)
    dense = dense.at[rows, flat_idx].add(flat_val)
    return dense.reshape(*lead, n_atoms)


def decode_sparse(codes: SparseCodes, dictionary, bias=None) -> jax.Array:
    """x_hat = sum_s values_s * D[indices_s] (+ bias), without densifying the codes."""
    dictionary = jnp.asarray(dictionary)
    out = jnp.einsum("...k,...kd->...d", codes.values, dictionary[codes.indices],
                     precision="highest")
    return out if bias is None else out + bias


# ----------------------------------------------------------------------------- single steps


def _open(valid: jax.Array, dtype) -> jax.Array:
    return jnp.where(valid, 0.0, -jnp.inf).astype(dtype)


def init_state(y: jax.Array, k: int, valid: jax.Array) -> PursuitState:
    """An empty support of `k` slots for target y; `valid` [n_atoms] marks selectable atoms."""
    return PursuitState(jnp.zeros((k,), jnp.int32), jnp.zeros((k,), y.dtype),
                        jnp.zeros((k,), bool), y, _open(valid, y.dtype))


def _top(scores: jax.Array, m: int) -> tuple[jax.Array, jax.Array]:
    """The m largest scores and their atoms (lowest index among ties). For m = 1 a max and a
    min over indices: two plain reductions, where XLA's CPU top_k sorts every row and its
    argmax is a slow two-operand reduction (each cost more than the correlation matmul)."""
    if m > 1:
        return jax.lax.top_k(scores, m)
    best = jnp.max(scores)
    atoms = jnp.arange(scores.shape[0], dtype=jnp.int32)
    i = jnp.min(jnp.where(scores == best, atoms, scores.shape[0] - 1))
    return best[None], i[None]


def _add_atoms(state: PursuitState, scores: jax.Array, m: int) -> PursuitState:
    """Put the top-m atoms with positive score (not already in the support) into free slots,
    never exceeding the k slots, and block them from being chosen again."""
    k = state.indices.shape[0]
    top_vals, top_idx = _top(scores + state.blocked, m)
    n_free = k - jnp.sum(state.used)
    take = (top_vals > 0) & (jnp.arange(m) < n_free)
    if m == 1:
        slots = jnp.argmin(state.used)[None]  # the first free slot
    else:
        slots = jnp.argsort(state.used, stable=True)[:m]  # free slots first, in order
    indices = state.indices.at[slots].set(jnp.where(take, top_idx, state.indices[slots]))
    used = state.used.at[slots].set(state.used[slots] | take)
    blocked = state.blocked.at[top_idx].set(jnp.where(take, -jnp.inf, state.blocked[top_idx]))
    return state._replace(indices=indices, used=used, blocked=blocked)


def line_search_step(residual: jax.Array, direction: jax.Array, precision=None) -> jax.Array:
    """Exact line search: argmin_eta ||r - eta c||^2 = <c, r> / <c, c> (0 if c = 0)."""
    cc = jnp.dot(direction, direction, precision=precision)
    cr = jnp.dot(direction, residual, precision=precision)
    return jnp.where(cc > 0, cr / jnp.where(cc > 0, cc, 1.0), 0.0)


def _combine(coefs, indices, D, atoms, precision):
    """sum_s coefs_s D[indices_s]: from the k gathered `atoms` [k, d] (O(k d), best on CPU), or,
    when `atoms` is None, scattered to a dense [n_atoms] vector times D (one matmul, best on
    GPU/TPU at large k)."""
    if atoms is None:
        full = jnp.zeros((D.shape[0],), coefs.dtype).at[indices].add(coefs)
        return jnp.matmul(full, D, precision=precision)
    return jnp.matmul(coefs, atoms, precision=precision)


def gradient_pursuit_step(state: PursuitState, D: jax.Array, valid: jax.Array, y: jax.Array, *,
                          max_topk: int = 1, support: str = "persistent", step="exact",
                          residual: str = "exact", dense_updates: bool = False,
                          precision=None) -> tuple[PursuitState, jax.Array]:
    """One iteration of non-negative gradient pursuit for one example (D has unit rows).

    Returns the new state and the step size eta used (before the projection onto alpha >= 0)."""
    g = jnp.matmul(D, state.residual, precision=precision)  # = -1/2 grad_alpha ||r||^2
    state = _add_atoms(state, g, max_topk)
    u = jnp.where(state.used, g[state.indices], 0.0)  # gradient restricted to the support
    atoms = None if dense_updates else D[state.indices]  # gathered once per iteration
    c = _combine(u, state.indices, D, atoms, precision)
    if isinstance(step, str):
        eta = line_search_step(state.residual, c, precision)
    else:
        eta = jnp.asarray(step, y.dtype)
    values = jnp.maximum(state.values + eta * u, 0.0)
    blocked = state.blocked
    if support == "nonzero":  # clipped atoms leave the support and may be chosen again
        used = state.used & (values > 0)
        blocked = _open(valid, blocked.dtype).at[state.indices].min(
            jnp.where(used, -jnp.inf, 0.0).astype(blocked.dtype))  # min: repeated slots agree
    else:
        used = state.used
    values = jnp.where(used, values, 0.0)
    if residual == "exact":
        r = y - _combine(values, state.indices, D, atoms, precision)
    else:
        r = state.residual - eta * c
    return PursuitState(state.indices, values, used, r, blocked), eta


def matching_pursuit_step(state: PursuitState, D: jax.Array, valid: jax.Array, y: jax.Array, *,
                          precision=None) -> PursuitState:
    """One iteration of non-negative matching pursuit for one example (D has unit rows): the
    best-correlated atom (possibly one already used) gets its correlation added."""
    g = jnp.where(valid, jnp.matmul(D, state.residual, precision=precision), -jnp.inf)
    best, atom = _top(g, 1)
    gi, i = best[0], atom[0]
    match = state.used & (state.indices == i)
    known = jnp.any(match)
    slot = jnp.where(known, jnp.argmax(match), jnp.argmax(~state.used))
    ok = (gi > 0) & (known | ~jnp.all(state.used))
    delta = jnp.where(ok, gi, 0.0)
    return PursuitState(
        state.indices.at[slot].set(jnp.where(ok, i, state.indices[slot])),
        state.values.at[slot].add(delta),
        state.used.at[slot].set(state.used[slot] | ok),
        state.residual - delta * D[i],
        state.blocked,
    )


# ----------------------------------------------------------------------------- batched runs


def _normalise(D):
    norms = jnp.linalg.norm(D, axis=-1)
    valid = norms > 1e-12 * jnp.maximum(jnp.max(norms), 1e-30)
    safe = jnp.where(valid, norms, 1.0)
    return D / safe[:, None] * valid[:, None], valid, safe


KERNELS = ("xla", "ffi")


def _gp_ffi_scan(Du, valid, y, *, k, n_iterations, support, step, residual, frontier,
                 precision):
    """Gradient pursuit (max_topk = 1) with everything after the correlation matmul in one C++
    kernel per iteration (`interp.sae.sparse_ffi.gp_step`): the same arithmetic as
    `gradient_pursuit_step`, without the [batch, k, d] gathered atoms or the [batch, n_atoms]
    blocked mask that XLA materialises on CPU."""
    from interp.sae import sparse_ffi

    B = y.shape[0]
    blocked = _open(valid, jnp.float32)

    def body(carry, _):
        idx, val, used, r = carry
        g = jnp.matmul(r, Du.T, precision=precision)  # [B, n_atoms] correlations
        idx, val, used, r = sparse_ffi.gp_step(
            g, y, r, idx, val, used, blocked, Du, step=None if step == "exact" else step,
            exact_residual=residual == "exact", nonzero_support=support == "nonzero")
        return (idx, val, used, r), ((idx, val) if frontier else None)

    start = (jnp.zeros((B, k), jnp.int32), jnp.zeros((B, k), jnp.float32),
             jnp.zeros((B, k), bool), y)
    (idx, val, _, _), snaps = jax.lax.scan(body, start, None, length=n_iterations)
    return snaps if frontier else (idx, val)  # frontier: [T, B, k]


@functools.partial(jax.jit, static_argnames=("method", "k", "n_iterations", "max_topk", "support",
                                             "exact_step", "residual", "frontier", "dense_updates",
                                             "precision", "kernel", "step_value"))
def _run(D, y, fixed_step, *, method, k, n_iterations, max_topk, support, exact_step, residual,
         frontier, dense_updates, precision, kernel="xla", step_value=0.0):
    Du, valid, norms = _normalise(D.astype(jnp.float32))
    y = y.astype(jnp.float32)
    step = "exact" if exact_step else fixed_step
    if kernel == "ffi":
        idx, val = _gp_ffi_scan(Du, valid, y, k=k, n_iterations=n_iterations, support=support,
                                step="exact" if exact_step else step_value, residual=residual,
                                frontier=frontier, precision=precision)
        return idx, val / norms[idx]

    def one(y1):
        def body(state, _):
            if method == "gradient_pursuit":
                state, _eta = gradient_pursuit_step(
                    state, Du, valid, y1, max_topk=max_topk, support=support, step=step,
                    residual=residual, dense_updates=dense_updates, precision=precision)
            else:
                state = matching_pursuit_step(state, Du, valid, y1, precision=precision)
            snap = (state.indices, state.values) if frontier else None
            return state, snap

        state, snaps = jax.lax.scan(body, init_state(y1, k, valid), None, length=n_iterations)
        return (state.indices, state.values) if not frontier else snaps

    idx, val = jax.vmap(one)(y)  # frontier: [B, T, k]
    val = val / norms[idx]  # back to the caller's atom scale
    if frontier:
        idx, val = jnp.moveaxis(idx, 1, 0), jnp.moveaxis(val, 1, 0)
    return idx, val


def _check_inputs(dictionary, x, k, bias):
    D = jnp.asarray(dictionary)
    x = jnp.asarray(x)
    if D.ndim != 2:
        raise ValueError(f"dictionary must be [n_atoms, d]; got shape {D.shape}")
    if x.ndim < 1 or x.shape[-1] != D.shape[1]:
        raise ValueError(f"x must be [..., d] with d = dictionary.shape[1] = {D.shape[1]}; "
                         f"got shape {x.shape}")
    if isinstance(k, bool) or not isinstance(k, (int, np.integer)) or k < 1:
        raise ValueError(f"k must be a positive int; got {k!r}")
    if k > D.shape[0]:
        raise ValueError(f"k={k} exceeds the number of atoms {D.shape[0]}")
    if bias is not None:
        bias = jnp.asarray(bias)
        if bias.shape != (D.shape[1],):
            raise ValueError(f"bias must have shape ({D.shape[1]},); got {bias.shape}")
        x = x - bias
    if not _all_finite(x):
        raise ValueError("x contains NaN or inf")
    if not _all_finite(D):
        raise ValueError("dictionary contains NaN or inf")
    return D, x


def _all_finite(a) -> bool:
    """True if finite, or if `a` is traced (inside jit the check cannot run; the caller's
    eager call or the data pipeline has to catch NaNs there)."""
    try:
        return bool(jnp.all(jnp.isfinite(a)))
    except jax.errors.ConcretizationTypeError:
        return True


PRECISIONS = ("highest", "high", "default")


def _check_precision(precision):
    if precision is not None and precision not in PRECISIONS:
        raise ValueError(f"unknown precision {precision!r}; choose from {PRECISIONS} or None")
    return precision


def _kernel(kernel, max_topk: int, dense_updates=None) -> str:
    """"ffi" (C++ iteration kernel; CPU, max_topk = 1) or "xla"; None = "ffi" where it can
    run (CPU, max_topk = 1, a C++ compiler, `dense_updates` not asked for), else "xla"."""
    if kernel is None:
        if max_topk != 1 or jax.default_backend() != "cpu" or dense_updates:
            return "xla"
        from interp.sae import sparse_ffi
        return "ffi" if sparse_ffi.available() else "xla"
    if kernel not in KERNELS:
        raise ValueError(f"unknown kernel {kernel!r}; choose from {KERNELS} or None")
    if kernel == "ffi":
        if max_topk != 1:
            raise ValueError(f"kernel='ffi' adds one atom per iteration; got max_topk={max_topk}"
                             " (use kernel='xla')")
        if jax.default_backend() != "cpu":
            raise ValueError("kernel='ffi' runs on CPU only (the default backend is "
                             f"{jax.default_backend()}); use kernel='xla'")
    return kernel


def _dense_default(dense_updates):
    return jax.default_backend() != "cpu" if dense_updates is None else bool(dense_updates)


def _finish(idx, val, lead, ks, frontier):
    if frontier:
        T = idx.shape[0]
        return Frontier(np.asarray(ks), SparseCodes(idx.reshape(T, *lead, -1),
                                                    val.reshape(T, *lead, -1)))
    return SparseCodes(idx.reshape(*lead, -1), val.reshape(*lead, -1))


def gradient_pursuit(dictionary, x, k: int, *, bias=None, max_topk: int = 1,
                     support: str = "persistent", step="exact", residual: str = "exact",
                     n_iterations: int | None = None, frontier: bool = False,
                     dense_updates: bool | None = None, precision: str | None = None,
                     kernel: str | None = None):
    """Non-negative gradient pursuit codes for x [..., d] against dictionary [n_atoms, d].

    Args:
      k: at most k non-zero coefficients per example (the number of support slots).
      bias: subtracted from x first (an SAE's b_dec); reconstruct with `codes.decode(D, bias)`.
      max_topk: atoms added per iteration (the post's "max top-k"); the default number of
        iterations is ceil(k / max_topk).
      support: "persistent" keeps atoms clipped to 0 in the support (dictionary_learning);
        "nonzero" re-derives the support as alpha != 0, freeing their slots (GDM's JAX version).
      step: "exact" (line search) or a fixed float step size (for comparison).
      residual: "exact" recomputes r = y - alpha D each iteration; "incremental" uses r -= eta c,
        which drifts once the projection clips.
      n_iterations: more iterations than ceil(k / max_topk) keep refining the k-atom code.
      frontier: return a `Frontier` with the codes after every iteration.
      dense_updates: form support combinations by a dense matmul with D instead of gathering
        the k atoms (XLA pursuit only; True also selects it); None picks dense on accelerators
        (matmuls are cheap, gathers of [batch, k, d] are memory-bound) and gather on CPU. Same
        result up to rounding.
      precision: matmul precision ("highest", "high", "default" or None = JAX's default,
        which on recent NVIDIA GPUs is TF32 for float32: ~1e-4 relative error in the codes).
      kernel: "xla" (every step in XLA) or "ffi" (CPU, max_topk = 1: the work after each
        iteration's correlation matmul in one C++ kernel, `interp.sae.sparse_ffi.gp_step`;
        same arithmetic, summed in another order; measured faster on CPU, see
        benchmarks/ito.py); None = "ffi" where it can run, else "xla".

    Returns `SparseCodes` with leaves [..., k] (or a `Frontier`).
    """
    D, y = _check_inputs(dictionary, x, k, bias)
    if (isinstance(max_topk, bool) or not isinstance(max_topk, (int, np.integer))
            or not 1 <= max_topk <= k):
        raise ValueError(f"max_topk must be an int in [1, k={k}]; got {max_topk!r}")
    if support not in SUPPORT_MODES:
        raise ValueError(f"unknown support mode {support!r}; choose from {SUPPORT_MODES}")
    if residual not in RESIDUAL_MODES:
        raise ValueError(f"unknown residual mode {residual!r}; choose from {RESIDUAL_MODES}")
    if step != "exact" and not (isinstance(step, (int, float)) and not isinstance(step, bool)
                                and math.isfinite(step) and step > 0):
        raise ValueError(f"step must be 'exact' or a positive float; got {step!r}")
    min_iters = math.ceil(k / max_topk)
    T = min_iters if n_iterations is None else int(n_iterations)
    if T < min_iters:
        raise ValueError(f"n_iterations={n_iterations} < ceil(k / max_topk) = {min_iters}")
    lead = y.shape[:-1]
    idx, val = _run(D, y.reshape(-1, y.shape[-1]), jnp.float32(0.0 if step == "exact" else step),
                    method="gradient_pursuit", k=int(k), n_iterations=T, max_topk=int(max_topk),
                    support=support, exact_step=step == "exact", residual=residual,
                    frontier=frontier, dense_updates=_dense_default(dense_updates),
                    precision=_check_precision(precision),
                    kernel=_kernel(kernel, max_topk, dense_updates),
                    step_value=0.0 if step == "exact" else float(step))
    ks = np.minimum(np.arange(1, T + 1) * max_topk, k)
    return _finish(idx, val, lead, ks, frontier)


def matching_pursuit(dictionary, x, k: int, *, bias=None, frontier: bool = False,
                     precision: str | None = None):
    """Non-negative matching pursuit: k iterations, each adding the largest positive
    correlation to its atom (an atom may be chosen again, so L0 <= k). Stops early (no-op
    iterations) when no atom correlates positively with the residual."""
    D, y = _check_inputs(dictionary, x, k, bias)
    lead = y.shape[:-1]
    idx, val = _run(D, y.reshape(-1, y.shape[-1]), jnp.float32(0.0), method="matching_pursuit",
                    k=int(k), n_iterations=int(k), max_topk=1, support="persistent",
                    exact_step=True, residual="exact", frontier=frontier, dense_updates=False,
                    precision=_check_precision(precision))
    return _finish(idx, val, lead, np.arange(1, k + 1), frontier)
