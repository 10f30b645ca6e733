"""Sparse-aware products for the SAE training step on CPU (issue #16).

At a realistic L0 (tens of 4608 latents) only the encoder's forward product needs the dense
matrix. Everything else touches the active (token, latent) pairs only:

    decoder forward     x_hat[b] = sum_{j active in b} f[b, j] W_dec[j]
    pre-act. gradient   df[b, j] = g[b] . W_dec[j]      only where f[b, j] != 0 (0 elsewhere)
    decoder gradient    dW_dec[j] = sum_{b: f[b, j] != 0} f[b, j] g[b]
    encoder gradient    dW_enc[:, j] = sum_{b: dz[b, j] != 0} dz[b, j] x[b]

XLA's own gather / scatter-add is slower than the dense products on CPU (it materialises the
(batch, k, d) tensor), so these are numba kernels (`prange` over tokens, or over latents after
grouping the active pairs by latent) called through `jax.pure_callback` inside `custom_vjp`s.
Top-k SAEs also take their k-th largest pre-activation from a partition kernel: XLA's CPU
top_k sorts every row and costs several times the rest of the step.

Contract of `sparse_decode`: the cotangent of f is returned only where f != 0. That is exact
whenever whatever produced f has a zero derivative where f is 0 (ReLU, top-k, JumpReLU, the
gated SAE's gate), which holds for every architecture here.

Every kernel takes a leading "sweep" axis (size 1 = shared by all members), so a vmapped sweep
is one callback (`vmap_method="expand_dims"`) whose kernel loops over members itself.

`mode="auto"` lets each call choose by the density it sees: above `AUTO_DENSITY` the kernel
hands the product to numpy's BLAS (dense), below it runs the sparse kernel.
"""

from __future__ import annotations

import functools
import os

import jax
import jax.numpy as jnp
import numpy as np

try:
    import numba
    from numba import njit, prange
except ImportError:  # pragma: no cover - numba is in requirements.txt
    numba = None

# Fraction of non-zero codes above which numpy's dense BLAS product beats the sparse kernel.
# Measured for the four host products together at 576 x 4608, batch 4096, on a loaded 2-core
# CPU: sparse / dense time 0.29 at 0.7% density (L0 32), 0.38 at 1.4% (L0 64), 0.52 at 2.8%,
# 0.61 at 5%, 1.00 at 10% (L0 461), 1.97 at 20%. So the crossover is 10%.
AUTO_DENSITY = 0.1
MODES = ("sparse", "auto")


def _require_numba():
    if numba is None:
        raise ImportError("SAEConfig.step='sparse'/'auto' needs numba: "
                          "pip install -r requirements.txt (numba is pinned there)")


def _jit(fn):
    """Parallel, cached (in __pycache__) compilation; fastmath lets the dot products vectorise
    (their summation order differs from BLAS's anyway)."""
    if numba is None:
        return fn
    return njit(parallel=True, cache=True, nogil=True, fastmath=True)(fn)


# --------------------------------------------------------------------------- numba kernels
@_jit
def _nonzero_count(a):
    """Non-zero entries of a (S, B, M) array."""
    rows = a.shape[0] * a.shape[1]
    counts = np.zeros(rows, np.int64)
    for r in prange(rows):
        row = a[r // a.shape[1], r % a.shape[1]]
        c = 0
        for j in range(row.shape[0]):
            if row[j] != 0.0:
                c += 1
        counts[r] = c
    return counts.sum()


@_jit
def _decode_kernel(f, W):
    """out[s, b] = sum_j f[s, b, j] W[s, j] over the non-zero f only (prange over tokens;
    the token's sum stays in a local buffer). A leading axis of size 1 is shared by every
    sweep member."""
    S = max(f.shape[0], W.shape[0])
    B, M, d = f.shape[1], f.shape[2], W.shape[2]
    out = np.empty((S, B, d), np.float32)
    for sb in prange(S * B):
        s, b = sb // B, sb % B
        row = f[s % f.shape[0], b]
        Ws = W[s % W.shape[0]]
        acc = np.zeros(d, np.float32)
        for j in range(M):
            v = row[j]
            if v != 0.0:
                for t in range(d):
                    acc[t] += v * Ws[j, t]
        out[s, b] = acc
    return out


@_jit
def _masked_dot_kernel(f, g, W):
    """out[s, b, j] = g[s, b] . W[s, j] where f[s, b, j] != 0, else 0 (prange over tokens;
    each output row is written once, zeros included, while it is in cache)."""
    S = max(f.shape[0], g.shape[0], W.shape[0])
    B, M, d = f.shape[1], f.shape[2], W.shape[2]
    out = np.empty((S, B, M), np.float32)
    for sb in prange(S * B):
        s, b = sb // B, sb % B
        row = f[s % f.shape[0], b]
        gb = g[s % g.shape[0], b]
        Ws = W[s % W.shape[0]]
        o = out[s, b]
        for j in range(M):
            acc = np.float32(0.0)
            if row[j] != 0.0:
                for t in range(d):
                    acc += gb[t] * Ws[j, t]
            o[j] = acc
    return out


@_jit
def _outer_one(a, g, out, transpose):
    """out[j] (or out[:, j]) = sum_b a[b, j] g[b] over the non-zero a only: the active pairs
    are listed per token (parallel), grouped by latent (a counting sort), then each latent
    sums its tokens (prange over latents)."""
    B, M, d = a.shape[0], a.shape[1], g.shape[1]
    row_count = np.zeros(B + 1, np.int64)
    for b in prange(B):
        c = 0
        for j in range(M):
            if a[b, j] != 0.0:
                c += 1
        row_count[b + 1] = c
    row_ptr = np.cumsum(row_count)
    nnz = row_ptr[B]
    lat = np.empty(nnz, np.int32)
    for b in prange(B):
        p = row_ptr[b]
        for j in range(M):
            if a[b, j] != 0.0:
                lat[p] = j
                p += 1
    col_ptr = np.zeros(M + 1, np.int64)
    for p in range(nnz):
        col_ptr[lat[p] + 1] += 1
    for j in range(M):
        col_ptr[j + 1] += col_ptr[j]
    fill = col_ptr[:M].copy()
    tok = np.empty(nnz, np.int32)
    for b in range(B):
        for p in range(row_ptr[b], row_ptr[b + 1]):
            j = lat[p]
            tok[fill[j]] = b
            fill[j] += 1
    for j in prange(M):
        acc = np.zeros(d, np.float32)
        for p in range(col_ptr[j], col_ptr[j + 1]):
            b = tok[p]
            v = a[b, j]
            gb = g[b]
            for t in range(d):
                acc[t] += v * gb[t]
        if transpose:
            for t in range(d):
                out[t, j] = acc[t]
        else:
            out[j] = acc


@_jit
def _outer_kernel(a, g, transpose):
    """(S, M, d) (or (S, d, M) if transpose) = a^T g per sweep member, from a's non-zeros."""
    S = max(a.shape[0], g.shape[0])
    M, d = a.shape[2], g.shape[2]
    out = np.zeros((S, d, M), np.float32) if transpose else np.zeros((S, M, d), np.float32)
    for s in range(S):
        _outer_one(a[s % a.shape[0]], g[s % g.shape[0]], out[s], transpose)
    return out


@_jit
def _kth_largest_kernel(z, k):
    """Per row of a (rows, M) array, its k-th largest entry (a partition, not a sort)."""
    rows, M = z.shape
    out = np.empty((rows, 1), np.float32)
    for r in prange(rows):
        out[r, 0] = np.partition(z[r].copy(), M - k)[M - k]
    return out


# --------------------------------------------------------------------------- host side
def _stack(*arrays):
    """Leading (vmapped) axes of each array flattened into one sweep axis of size S or 1
    (shared), so every kernel sees (S, rows, cols); returns the arrays and the lead shape."""
    arrays = [np.asarray(a, np.float32) for a in arrays]
    lead = np.broadcast_shapes(*(a.shape[:-2] for a in arrays))
    out = []
    for a in arrays:
        if a.shape[:-2] == lead:
            a = a.reshape((-1,) + a.shape[-2:])
        elif all(n == 1 for n in a.shape[:-2]):
            a = a.reshape((1,) + a.shape[-2:])
        else:  # mixed sharing under nested vmaps: materialise the broadcast
            a = np.broadcast_to(a, lead + a.shape[-2:]).reshape((-1,) + a.shape[-2:])
        out.append(np.ascontiguousarray(a))
    return out, lead


def _is_dense(a, mode):
    return mode == "auto" and _nonzero_count(a) > AUTO_DENSITY * a.size


def _host_decode(f, W, mode):
    (f, W), lead = _stack(f, W)
    out = f @ W if _is_dense(f, mode) else _decode_kernel(f, W)
    return out.reshape(lead + out.shape[-2:])


def _host_masked_dot(f, g, W, mode):
    (f, g, W), lead = _stack(f, g, W)
    if _is_dense(f, mode):
        out = np.where(f != 0, g @ np.swapaxes(W, -1, -2), np.float32(0))
    else:
        out = _masked_dot_kernel(f, g, W)
    return out.astype(np.float32, copy=False).reshape(lead + out.shape[-2:])


def _host_outer(a, g, transpose, mode):
    (a, g), lead = _stack(a, g)
    if _is_dense(a, mode):
        out = np.swapaxes(a, -1, -2) @ g
        out = np.swapaxes(out, -1, -2) if transpose else out
    else:
        out = _outer_kernel(a, g, transpose)
    return np.ascontiguousarray(out, np.float32).reshape(lead + out.shape[-2:])


def _host_decode_grads(f, g, W, mode):
    """Both decoder cotangents from one callback (one transfer of f and g): df on f's
    support, and dW = f^T g."""
    return _host_masked_dot(f, g, W, mode), _host_outer(f, g, False, mode)


def _callback(fn, shape, *args):
    return jax.pure_callback(fn, jax.ShapeDtypeStruct(shape, jnp.float32), *args,
                             vmap_method="expand_dims")


# --------------------------------------------------------------------------- JAX ops
@functools.partial(jax.custom_vjp, nondiff_argnums=(2,))
def sparse_decode(f, W, mode="sparse"):
    """f @ W for codes f (batch, M) that are mostly zero; W (M, d). See the module docstring
    for the cotangent contract (df is returned on f's support only)."""
    return _callback(functools.partial(_host_decode, mode=mode), f.shape[:-1] + W.shape[-1:],
                     f, W)


def _decode_fwd(f, W, mode):
    return sparse_decode(f, W, mode), (f, W)


def _decode_bwd(mode, res, g):
    f, W = res
    shapes = (jax.ShapeDtypeStruct(f.shape, jnp.float32),
              jax.ShapeDtypeStruct(W.shape, jnp.float32))
    return jax.pure_callback(functools.partial(_host_decode_grads, mode=mode), shapes, f, g, W,
                             vmap_method="expand_dims")


sparse_decode.defvjp(_decode_fwd, _decode_bwd)


@functools.partial(jax.custom_vjp, nondiff_argnums=(2,))
def sparse_grad_matmul(x, W, mode="sparse"):
    """x @ W (dense forward, XLA) whose cotangent dz (batch, M) is mostly zero (it vanishes
    outside the active set), so dW = x^T dz and dx = dz W^T come from dz's non-zeros only."""
    return x @ W


def _matmul_fwd(x, W, mode):
    return x @ W, (x, W)


def _matmul_bwd(mode, res, dz):
    x, W = res
    dW = _callback(functools.partial(_host_outer, transpose=True, mode=mode), W.shape, dz, x)
    dx = _callback(functools.partial(_host_decode, mode=mode), x.shape, dz, W.T)
    return dx, dW


sparse_grad_matmul.defvjp(_matmul_fwd, _matmul_bwd)


def kth_largest(z, k: int):
    """The k-th largest entry of each row of z, shape z.shape[:-1] + (1,): the top-k threshold
    without XLA's CPU top_k (a full sort, several times the rest of the step). No gradient
    (it only sets which entries are kept)."""
    def host(a):
        a = np.asarray(a, np.float32)
        out = _kth_largest_kernel(np.ascontiguousarray(a.reshape(-1, a.shape[-1])), k)
        return out.reshape(a.shape[:-1] + (1,))

    return _callback(host, z.shape[:-1] + (1,), jax.lax.stop_gradient(z))


def single_core() -> bool:
    """Whether this process may run on one CPU core only (its affinity, e.g. `taskset -c 0`)."""
    try:
        return len(os.sched_getaffinity(0)) < 2
    except AttributeError:  # no affinity API (macOS)
        return (os.cpu_count() or 1) < 2


def use_sparse(step: str) -> str | None:
    """The mode of the sparse ops for SAEConfig.step, or None for the dense (XLA) products:
    "ffi" (the C++ kernels of `sparse_ffi`) stays dense off CPU; "auto" means dense products
    here, because `training` compiles an "auto" run as two steps ("dense" and "ffi") and
    chooses between them by the measured density (`training.step_kind`).

    On one core the host callbacks can deadlock: the callback waits for its operands' buffers,
    whose readiness XLA's CPU runtime signals on its worker pool, and with one core that pool's
    only thread is the one running the callback (seen in a jitted top-k training step at
    576 x 576, batch 256, under `taskset -c 0`). So "auto" falls back to dense there and
    "sparse" refuses with this reason instead of hanging."""
    if step == "dense":
        return None
    if step == "ffi":  # C++ kernels called by XLA itself: no callback, no deadlock on one core
        if jax.default_backend() != "cpu":
            return None
        from interp.sae import sparse_ffi
        sparse_ffi._library()  # compiles on first use; KernelBuildError says why it cannot
        return "ffi"
    if step == "auto":  # the training driver picks the dense or the "ffi" step per window
        return None
    if jax.default_backend() == "cpu" and single_core():
        raise ValueError("SAEConfig.step='sparse' needs at least 2 CPU cores: on one core its "
                         "host callbacks can deadlock waiting for XLA's only worker thread; use "
                         "step='auto' (dense here) or 'dense'")
    _require_numba()
    return step


def kernel_threads() -> int:
    """Threads numba's kernels use (NUMBA_NUM_THREADS; default: all cores)."""
    return numba.get_num_threads() if numba is not None else int(os.cpu_count() or 1)
