"""The sparse SAE products of `sparse.py` as XLA FFI custom calls: C++ kernels (OpenMP) that
XLA calls on its own buffers inside the jitted step; a fused core for ReLU and top-k SAEs; and
one gradient-pursuit iteration for `interp.ito`.

Three levels:
- per product (`decode`, `masked_dot`, `outer`, `outer_t`, `kth_largest`): any architecture
  and dead-latent strategy (gated, ghost grads, AuxK);
- `sae_core`: a ReLU / top-k SAE whose loss needs only the codes, the reconstruction and the
  sparsity sum. Forward: XLA's dense encoder matmul, then one kernel pass that adds the bias,
  applies the activation, decodes and counts firing latents, writing the codes over the
  pre-activations in place. Backward: one pass over the active pairs grouped by latent that
  forms dz on the support and accumulates every weight gradient from it. What this saves is
  less the arithmetic than the (batch, latents) arrays XLA would otherwise allocate and sweep
  (bias, ReLU, L1 sum, masks, firing counts; each a fresh ~75 MB at 4096 x 4608);
- `gp_step`: everything in a gradient-pursuit iteration after the correlation matmul.

Why: `jax.pure_callback` copies every operand to numpy and back and runs Python on each call;
at the book's shapes those copies and the hand-offs between XLA's and numba's threads cost more
than the sparse kernels save (measured: the numba step 0.63x the dense step at 576 x 4608,
batch 4096, L0 64). An FFI call reads and writes XLA's buffers in place, needs no Python, and
cannot deadlock on one core (nothing waits for XLA's thread pool).

The kernels (`sparse_ffi.cc`) are compiled on first use with the machine's C++ compiler (g++
with OpenMP; the README's setup machine has it), into the cache under a key of the source, the
compiler and the flags, and loaded from there afterwards. `available()` says whether that
worked; nothing falls back silently: `ops()` raises with the compiler's message.
"""

from __future__ import annotations

import ctypes
import functools
import hashlib
import shutil
import subprocess
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np
from jax.custom_derivatives import SymbolicZero

from interp import cache
from interp.sae import precision

SOURCE = Path(__file__).with_name("sparse_ffi.cc")
# -fno-finite-math-only: the kernels use -inf as a mask (gradient pursuit's blocked atoms), which
# plain -ffast-math would let the compiler assume away
FLAGS = ("-O3", "-march=native", "-ffast-math", "-fno-finite-math-only", "-fopenmp", "-shared",
         "-fPIC", "-std=c++17")
TARGETS = {"sae_sparse_decode": "SaeDecode", "sae_sparse_masked_dot": "SaeMaskedDot",
           "sae_sparse_outer": "SaeOuter", "sae_sparse_outer_t": "SaeOuterT",
           "sae_sparse_kth_largest": "SaeKthLargest", "sae_core_fwd": "SaeCoreFwd",
           "sae_core_bwd": "SaeCoreBwd", "sae_core_dx": "SaeCoreDx",
           "sae_gp_step": "SaeGpStep"}


class KernelBuildError(RuntimeError):
    """The FFI kernels could not be compiled or loaded (the message says why)."""


def _compiler() -> str:
    cxx = shutil.which("g++") or shutil.which("c++")
    if cxx is None:
        raise KernelBuildError("no C++ compiler (g++) on PATH: the FFI kernels are compiled on "
                               "first use; install g++ (Debian: apt install g++) or use "
                               "SAEConfig.step='dense'")
    return cxx


@functools.lru_cache(maxsize=None)
def _library() -> ctypes.CDLL:
    cxx = _compiler()
    version = subprocess.run([cxx, "--version"], capture_output=True, text=True).stdout
    include = jax.ffi.include_dir()
    key = hashlib.sha256(SOURCE.read_bytes() + version.encode() + " ".join(FLAGS).encode()
                         + include.encode()).hexdigest()[:16]
    folder = cache.cache_dir("ffi-kernels", key)
    lib = folder / "libsae_sparse.so"
    if not lib.exists():
        tmp = folder / "libsae_sparse.so.tmp"
        cmd = [cxx, *FLAGS, f"-I{include}", str(SOURCE), "-o", str(tmp)]
        done = subprocess.run(cmd, capture_output=True, text=True)
        if done.returncode != 0:
            raise KernelBuildError(f"compiling {SOURCE.name} failed ({' '.join(cmd)}):\n"
                                   f"{done.stderr[-2000:]}")
        tmp.replace(lib)
    try:
        handle = ctypes.cdll.LoadLibrary(str(lib))
    except OSError as e:
        raise KernelBuildError(f"loading {lib} failed: {e}; delete {folder} to rebuild") from e
    for name, symbol in TARGETS.items():
        jax.ffi.register_ffi_target(name, jax.ffi.pycapsule(getattr(handle, symbol)),
                                    platform="cpu")
    return handle


def available() -> bool:
    """Whether the kernels compile and load here (compiles them on the first call)."""
    try:
        _library()
        return True
    except KernelBuildError:
        return False


def num_threads() -> int:
    """OpenMP threads the kernels use (OMP_NUM_THREADS; default: all cores)."""
    return int(_library().sae_sparse_num_threads())


def _call(target: str, shape, *args, **attributes):
    """One float32 output (the per-product kernels); `_core_call` for several."""
    return _core_call(target, (shape,), *args, **attributes)[0]


def decode(f, W):
    """f @ W from f's non-zeros: f (B, M), W (M, d) -> (B, d)."""
    return _call("sae_sparse_decode", f.shape[:-1] + W.shape[-1:], f, W)


def masked_dot(f, g, W):
    """g @ W.T where f != 0, else 0: f (B, M), g (B, d), W (M, d) -> (B, M)."""
    return _call("sae_sparse_masked_dot", f.shape, f, g, W)


def outer(a, g):
    """a.T @ g from a's non-zeros: a (B, M), g (B, d) -> (M, d)."""
    return _call("sae_sparse_outer", a.shape[-1:] + g.shape[-1:], a, g)


def outer_t(a, g):
    """(a.T @ g).T from a's non-zeros: a (B, M), g (B, d) -> (d, M)."""
    return _call("sae_sparse_outer_t", g.shape[-1:] + a.shape[-1:], a, g)


def kth_largest(z, k: int):
    """The k-th largest entry of each row of z, shape z.shape[:-1] + (1,): the top-k threshold
    by a partition (XLA's CPU top_k sorts every row). No gradient (it only picks the kept
    entries)."""
    z = jax.lax.stop_gradient(z)
    return _call("sae_sparse_kth_largest", z.shape[:-1] + (1,), z, k=np.int64(k))


# --------------------------------------------------------------------------- differentiable ops
@jax.custom_vjp
def sparse_decode(f, W):
    """f @ W for mostly-zero codes f; the cotangent of f is returned on f's support only (see
    `sparse.py` for why that is exact for every architecture here)."""
    return decode(f, W)


def _decode_fwd(f, W):
    return decode(f, W), (f, W)


def _decode_bwd(res, g):
    f, W = res
    return masked_dot(f, g, W), outer(f, g)


sparse_decode.defvjp(_decode_fwd, _decode_bwd)


@functools.partial(jax.custom_vjp, nondiff_argnums=(2,))
def sparse_grad_matmul(x, W, compute_dtype="float32"):
    """x @ W (dense forward, XLA, in `compute_dtype`) whose cotangent dz is mostly zero:
    dW = x^T dz and dx = dz W^T from dz's non-zeros only (float32)."""
    return precision.matmul(x, W, compute_dtype)


def _matmul_fwd(x, W, compute_dtype):
    return precision.matmul(x, W, compute_dtype), (x, W)


def _matmul_bwd(compute_dtype, res, dz):
    x, W = res
    return decode(dz, W.T), outer_t(dz, x)


sparse_grad_matmul.defvjp(_matmul_fwd, _matmul_bwd)


# --------------------------------------------------------------------------- fused core
def _f32(shape):
    return jax.ShapeDtypeStruct(shape, jnp.float32)


def _core_call(target, shapes, *args, aliases=None, **attributes):
    # an aliased input must be batched like its output under vmap: "broadcast_all" (in a
    # training sweep every operand of the forward is per member anyway, so nothing is copied)
    _library()
    return jax.ffi.ffi_call(target, tuple(_f32(s) for s in shapes),
                            vmap_method="broadcast_all" if aliases else "expand_dims",
                            input_output_aliases=aliases)(
        *[a.astype(jnp.float32) for a in args], **attributes)


def _row(v):
    """A per-latent vector (M,) as the kernels' (1, M)."""
    return v[..., None, :]


@functools.partial(jax.custom_vjp, nondiff_argnums=(5, 6))
def sae_core(x, W_enc, c, W_dec, w, k: int = 0, compute_dtype: str = "float32"):
    """The fused core of a ReLU (k = 0) or top-k (k > 0) SAE step:

        z = x W_enc + c,  f = ReLU(z) (top-k: also z >= its k-th largest),
        returns f, f W_dec (no decoder bias), sum_j f_j w_j per token, and per latent the
        number of tokens where it fired (no gradient).

    The encoder product is XLA's dense matmul (in `compute_dtype`); everything after it is
    one kernel pass over the pre-activations, and the backward pass is one pass over the codes
    that computes dz on the active pairs only and accumulates every weight gradient from them
    (`sparse_ffi.cc`): none of the (batch, latents) masks and sums XLA would sweep separately."""
    f, xh, sp, fire = _core_fwd_call(precision.matmul(x, W_enc, compute_dtype), c, W_dec, w, k)
    return f, xh, sp, fire


def _core_fwd_call(h, c, W_dec, w, k):
    shapes = (h.shape, h.shape[:-1] + W_dec.shape[-1:], h.shape[:-1] + (1,),
              h.shape[:-2] + (1, h.shape[-1]))
    # f overwrites h in place (h is dead after this): one (batch, latents) buffer, not two
    f, xh, sp, fire = _core_call("sae_core_fwd", shapes, h, _row(c), W_dec, _row(w),
                                 aliases={0: 0}, k=np.int64(k))
    return f, xh, sp[..., 0], fire[..., 0, :]


def _core_fwd(x, W_enc, c, W_dec, w, k, compute_dtype):
    x, W_enc, c, W_dec, w = (a.value for a in (x, W_enc, c, W_dec, w))
    f, xh, sp, fire = _core_fwd_call(precision.matmul(x, W_enc, compute_dtype), c, W_dec, w, k)
    return (f, xh, sp, fire), (f, x, W_enc, W_dec, w)


def _dense_cotangent(ct, like):
    return jnp.zeros(like.shape, jnp.float32) if isinstance(ct, SymbolicZero) else ct


def _core_bwd(k, compute_dtype, res, cts):
    f, x, W_enc, W_dec, w = res
    df, dxh, dsp, _ = cts
    dxh = _dense_cotangent(dxh, x)
    dsp = _dense_cotangent(dsp, x[..., 0])[..., None]
    df = jnp.zeros((1, 1), jnp.float32) if isinstance(df, SymbolicZero) else df
    dW_enc, dc, dW_dec, dw = _core_call(
        "sae_core_bwd", (W_enc.shape, f.shape[:-2] + (1, f.shape[-1]), W_dec.shape,
                         f.shape[:-2] + (1, f.shape[-1])),
        f, dxh, dsp, df, x, W_dec, _row(w))
    # dx only matters when x is differentiated; otherwise XLA drops this call
    (dx,) = _core_call("sae_core_dx", (x.shape,), f, dxh, dsp, df, W_dec, _row(w),
                       jnp.swapaxes(W_enc, -1, -2))
    return dx, dW_enc, dc[..., 0, :], dW_dec, dw[..., 0, :]


sae_core.defvjp(_core_fwd, _core_bwd, symbolic_zeros=True)


# --------------------------------------------------------------------------- gradient pursuit
def gp_step(g, y, residual, indices, values, used, blocked, D, *, step=None,
            exact_residual=True, nonzero_support=False):
    """One non-negative gradient-pursuit iteration after the correlations g = residual D^T,
    for rows of examples (`interp.ito.pursuit.gradient_pursuit_step` with max_topk = 1, the
    same arithmetic): g (B, M), y and residual (B, d), indices / values / used (B, k) slots,
    blocked (M,) 0 or -inf, D (M, d) with unit rows; `step` None = exact line search, else a
    fixed step. Returns the new (indices, values, used, residual)."""
    _library()
    shapes = (jax.ShapeDtypeStruct(indices.shape, jnp.int32), _f32(values.shape),
              jax.ShapeDtypeStruct(used.shape, jnp.int32), _f32(residual.shape))
    idx, val, use, res = jax.ffi.ffi_call("sae_gp_step", shapes, vmap_method="expand_dims")(
        g.astype(jnp.float32), y.astype(jnp.float32), residual.astype(jnp.float32),
        indices.astype(jnp.int32), values.astype(jnp.float32), used.astype(jnp.int32),
        blocked.astype(jnp.float32)[..., None, :], D.astype(jnp.float32),
        fixed_step=np.float32(0.0 if step is None else step),
        exact_step=np.int64(step is None), exact_residual=np.int64(bool(exact_residual)),
        nonzero_support=np.int64(bool(nonzero_support)))
    return idx, val, use.astype(bool), res
