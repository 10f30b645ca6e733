"""The sparse SAE products of `sparse.py` as XLA FFI custom calls: C++ kernels (OpenMP) that
XLA calls on its own buffers inside the jitted step.

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

from interp import cache

SOURCE = Path(__file__).with_name("sparse_ffi.cc")
FLAGS = ("-O3", "-march=native", "-ffast-math", "-fopenmp", "-shared", "-fPIC", "-std=c++17")
TARGETS = {"sae_sparse_decode": "SaeDecode", "sae_sparse_masked_dot": "SaeMaskedDot",
           "sae_sparse_outer": "SaeOuter", "sae_sparse_outer_t": "SaeOuterT",
           "sae_sparse_kth_largest": "SaeKthLargest"}


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
    _library()
    return jax.ffi.ffi_call(target, jax.ShapeDtypeStruct(shape, jnp.float32),
                            vmap_method="expand_dims")(*[a.astype(jnp.float32) for a in args],
                                                       **attributes)


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


@jax.custom_vjp
def sparse_grad_matmul(x, W):
    """x @ W (dense forward, XLA) whose cotangent dz is mostly zero: dW = x^T dz and
    dx = dz W^T from dz's non-zeros only."""
    return x @ W


def _matmul_fwd(x, W):
    return x @ W, (x, W)


def _matmul_bwd(res, dz):
    x, W = res
    return decode(dz, W.T), outer_t(dz, x)


sparse_grad_matmul.defvjp(_matmul_fwd, _matmul_bwd)
