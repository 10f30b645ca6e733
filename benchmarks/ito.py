"""Speed and quality of inference-time optimisation (interp.ito) next to scikit-learn's OMP.

    python benchmarks/ito.py                           # batch 4096, d 576, 4608 atoms, k 8 32 64
    python benchmarks/ito.py --batch 512 --ks 8 32     # a quick look
    python benchmarks/ito.py --dictionary W_dec.npz --activations acts.npy   # real data

For each k it prints codes/s, the fraction of variance unexplained (FVU) and the achieved L0 of
* gp       non-negative gradient pursuit with the exact line search (one jitted run to k), all
           in XLA (`kernel="xla"`; the default before the C++ kernel);
* gp-ffi   gp with the work after each correlation matmul in one C++ kernel (CPU only;
           `kernel="ffi"`), same arithmetic;
* gp-before the same pursuit as interp.ito ran it before its CPU selection rewrite (top_k over a
           rebuilt support mask), to measure the speed-up in the same run;
* gp-top4  the same adding up to 4 atoms per iteration (the post's "max top-k");
* mp       non-negative matching pursuit;
* gp-gather (accelerators only) gp with the CPU layout: gathered [batch, k, d] atoms instead of
           dense matmuls for the support updates;
* gp-front one gradient-pursuit run to max(ks) whose snapshots give every k (time counted once,
           for all ks together);
* sklearn  scikit-learn's `orthogonal_mp` (Cholesky OMP, `precompute=True`) on the same data
           (optionally only the first `--sklearn-examples`; codes/s is then per example run).
           It allows negative codes, so its error is not a like-for-like target for the
           non-negative pursuits: it solves a less constrained problem.
* nn-omp   interp.ito's non-negative OMP reference (NNLS refit) on the first
           `--nnomp-examples` examples only (slow; quality reference, rate extrapolated).
Times exclude compilation (each JAX pursuit is compiled ahead of time, then timed best of
`--repeats`). Default data: a seeded random unit-norm dictionary and approximately sparse
non-negative targets (`--true-l0` active atoms plus 10% noise), so the numbers are reproducible;
pass `--dictionary` (.npy [n_atoms, d], or .npz with W_dec and optional b_dec) and
`--activations` (.npy [n, d]) to measure on a trained SAE's decoder and real activations.
"""

from __future__ import annotations

import argparse
import json
import time

import jax
import jax.numpy as jnp
import numpy as np


def synthetic(batch: int, d: int, n_atoms: int, true_l0: int, seed: int):
    rng = np.random.default_rng(seed)
    D = rng.normal(size=(n_atoms, d)).astype(np.float32)
    D /= np.linalg.norm(D, axis=1, keepdims=True)
    idx = np.argsort(rng.random((batch, n_atoms)), axis=1)[:, :true_l0]
    A = np.zeros((batch, n_atoms), np.float32)
    np.put_along_axis(A, idx, rng.exponential(1.0, (batch, true_l0)).astype(np.float32), axis=1)
    clean = A @ D
    noise = rng.normal(size=clean.shape).astype(np.float32)
    noise *= 0.1 * np.linalg.norm(clean, axis=1, keepdims=True) / np.sqrt(d)
    return D, np.zeros(d, np.float32), clean + noise


def load_real(dictionary: str, activations: str, batch: int):
    if dictionary.endswith(".npz"):
        z = np.load(dictionary)
        D = np.asarray(z["W_dec"], np.float32)
        b = np.asarray(z["b_dec"], np.float32) if "b_dec" in z else np.zeros(D.shape[1], np.float32)
    else:
        D = np.load(dictionary).astype(np.float32)
        b = np.zeros(D.shape[1], np.float32)
    X = np.load(activations, mmap_mode="r")[:batch].astype(np.float32)
    if X.shape[1] != D.shape[1]:
        raise SystemExit(f"activations have d={X.shape[1]}, dictionary has d={D.shape[1]}")
    return D, b, X


def gp_before(D, X, k, bias):
    """Non-negative gradient pursuit as `interp.ito` ran it before its CPU selection rewrite
    (commit 6cab717): each iteration rebuilt an [n_atoms] support mask by scatter, chose the
    atom with XLA's top_k and gathered the k support atoms twice. Kept here, unchanged in
    arithmetic, so that one run measures the speed-up against it."""
    norms = jnp.linalg.norm(D, axis=-1)
    Du = D / norms[:, None]
    n = D.shape[0]

    def one(y):
        def body(state, _):
            idx, val, used, r = state
            g = Du @ r
            mask = jnp.zeros((n,), bool).at[idx].max(used)
            top_val, top_idx = jax.lax.top_k(jnp.where(mask, -jnp.inf, g), 1)
            take = (top_val > 0) & (jnp.arange(1) < k - jnp.sum(used))
            slot = jnp.argsort(used, stable=True)[:1]
            idx = idx.at[slot].set(jnp.where(take, top_idx, idx[slot]))
            used = used.at[slot].set(used[slot] | take)
            u = jnp.where(used, g[idx], 0.0)
            c = u @ Du[idx]
            cc = c @ c
            eta = jnp.where(cc > 0, (c @ r) / jnp.where(cc > 0, cc, 1.0), 0.0)
            val = jnp.where(used, jnp.maximum(val + eta * u, 0.0), 0.0)
            return (idx, val, used, y - val @ Du[idx]), None

        init = (jnp.zeros(k, jnp.int32), jnp.zeros(k), jnp.zeros(k, bool), y)
        (idx, val, _, _), _ = jax.lax.scan(body, init, None, length=k)
        return idx, val

    idx, val = jax.vmap(one)(X - bias)
    from interp import ito
    return ito.SparseCodes(idx, val / norms[idx])


def fvu(X, X_hat):
    return float(np.sum((X - X_hat) ** 2) / np.sum((X - X.mean(0)) ** 2))


def timed(fn, repeats):
    best = float("inf")
    out = None
    for _ in range(repeats):
        t = time.perf_counter()
        out = jax.block_until_ready(fn())
        best = min(best, time.perf_counter() - t)
    return best, out


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--batch", type=int, default=4096)
    p.add_argument("--d", type=int, default=576)
    p.add_argument("--n-atoms", type=int, default=4608)
    p.add_argument("--ks", type=int, nargs="+", default=[8, 32, 64])
    p.add_argument("--true-l0", type=int, default=32, help="active atoms per synthetic target")
    p.add_argument("--repeats", type=int, default=2)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--sklearn-examples", type=int, default=None,
                   help="run scikit-learn on the first N examples only (default: all; 0: skip)")
    p.add_argument("--nnomp-examples", type=int, default=64)
    p.add_argument("--dictionary", help=".npy [n_atoms, d] or .npz with W_dec (and b_dec)")
    p.add_argument("--activations", help=".npy [n, d] activations (first --batch rows used)")
    p.add_argument("--precision", default=None, choices=["highest", "high", "default"],
                   help="matmul precision of the pursuits (default: JAX's; TF32 on H100)")
    p.add_argument("--json", help="also write the rows to this JSON file")
    args = p.parse_args(argv)

    from interp import ito

    if bool(args.dictionary) != bool(args.activations):
        raise SystemExit("--dictionary and --activations go together")
    if args.dictionary:
        D, b, X = load_real(args.dictionary, args.activations, args.batch)
        data = f"{args.activations} on {args.dictionary}"
    else:
        D, b, X = synthetic(args.batch, args.d, args.n_atoms, args.true_l0, args.seed)
        data = f"synthetic (seed {args.seed}, true L0 {args.true_l0}, 10% noise)"
    B = X.shape[0]
    print(f"device: {jax.devices()[0].device_kind} ({jax.default_backend()}); data: {data}")
    print(f"batch {B}, d {D.shape[1]}, atoms {D.shape[0]}, ks {args.ks}")
    Dj, bj, Xj = jnp.asarray(D), jnp.asarray(b), jnp.asarray(X)
    rows = []
    gp_codes = {}

    def report(method, k, seconds, codes, n=B):
        x_hat = np.asarray(codes.decode(D, b))
        row = {"method": method, "k": k, "seconds": seconds, "codes_per_s": n / seconds,
               "fvu": fvu(X[:n], x_hat), "mean_l0": float(np.mean(np.asarray(codes.l0()))),
               "examples": n}
        rows.append(row)
        print(f"{method:>9} k={k:<3} {seconds:8.3f} s  {row['codes_per_s']:10.0f} codes/s  "
              f"FVU {row['fvu']:.4f}  L0 {row['mean_l0']:.1f}" + ("" if n == B else f"  (n={n})"),
              flush=True)

    def compiled(fn):
        return jax.jit(fn).lower(Dj, Xj, bj).compile()

    for k in args.ks:
        pr = args.precision
        variants = {
            "gp": lambda D_, X_, b_, k=k: ito.gradient_pursuit(D_, X_, k, bias=b_, precision=pr,
                                                                kernel="xla"),
            "gp-before": lambda D_, X_, b_, k=k: gp_before(D_, X_, k, b_),
            "gp-top4": lambda D_, X_, b_, k=k: ito.gradient_pursuit(
                D_, X_, k, bias=b_, max_topk=min(4, k), precision=pr),
            "mp": lambda D_, X_, b_, k=k: ito.matching_pursuit(D_, X_, k, bias=b_, precision=pr),
        }
        if jax.default_backend() == "cpu":  # the C++ iteration kernel (issue #16)
            variants["gp-ffi"] = lambda D_, X_, b_, k=k: ito.gradient_pursuit(
                D_, X_, k, bias=b_, precision=pr, kernel="ffi")
        if jax.default_backend() != "cpu":  # the CPU layout (gathered atoms), for comparison
            variants["gp-gather"] = lambda D_, X_, b_, k=k: ito.gradient_pursuit(
                D_, X_, k, bias=b_, dense_updates=False, precision=pr)
        for name, fn in variants.items():
            run = compiled(fn)
            seconds, codes = timed(lambda run=run: run(Dj, Xj, bj), args.repeats)
            report(name, k, seconds, codes)
            if name in ("gp", "gp-ffi"):
                gp_codes[name, k] = codes
        if ("gp-ffi", k) in gp_codes:
            rate = {r["method"]: r["codes_per_s"] for r in rows if r["k"] == k}
            print(f"{'':>9} gp-ffi / gp = {rate['gp-ffi'] / rate['gp']:.2f}x in this run")

    k_max = max(args.ks)
    run = compiled(lambda D_, X_, b_: ito.gradient_pursuit(D_, X_, k_max, bias=b_, frontier=True,
                                                           precision=args.precision))
    seconds, front = timed(lambda: run(Dj, Xj, bj), args.repeats)
    front = ito.Frontier(np.asarray(front.ks), front.codes)
    for k in args.ks:
        report("gp-front", k, seconds, front.at(k))

    def gp_on_first(n, k):
        for name in ("gp", "gp-ffi"):
            if (name, k) not in gp_codes:
                continue
            c = gp_codes[name, k]
            codes = ito.SparseCodes(c.indices[:n], c.values[:n])
            print(f"{'':>9} ({name} FVU on the same {n}: "
                  f"{fvu(X[:n], np.asarray(codes.decode(D, b))):.4f})")

    n_sk = B if args.sklearn_examples is None else min(args.sklearn_examples, B)
    if n_sk:
        from sklearn.linear_model import orthogonal_mp

        for k in args.ks:
            t = time.perf_counter()  # float32 like the pursuits; the Gram matrix is counted
            coef = orthogonal_mp(D.T, (X[:n_sk] - b).T, n_nonzero_coefs=k, precompute=True)
            seconds = time.perf_counter() - t
            coef = np.asarray(coef, np.float32).reshape(D.shape[0], -1).T
            report("sklearn", k, seconds, ito.SparseCodes(*_slots(coef, k)), n=n_sk)
            if n_sk < B:
                gp_on_first(n_sk, k)

    if args.nnomp_examples:
        n = min(args.nnomp_examples, B)
        for k in args.ks:
            t = time.perf_counter()
            codes = ito.nn_omp(D, X[:n], k, bias=b)
            report("nn-omp", k, time.perf_counter() - t, codes, n=n)
            gp_on_first(n, k)

    if args.json:
        with open(args.json, "w") as f:
            json.dump({"device": jax.devices()[0].device_kind, "data": data, "rows": rows}, f,
                      indent=1)
    return rows


def _slots(dense: np.ndarray, k: int):
    """Dense codes (possibly signed) -> [B, k] slots (indices, values) of the non-zeros."""
    order = np.argsort(-np.abs(dense), axis=1)[:, :k]
    return order.astype(np.int32), np.take_along_axis(dense, order, axis=1)


if __name__ == "__main__":
    main()
