"""interp.ito.encoder: the SAE-shaped ITO encoder (pytree, jit, SAE decoders, splicing into a
model), and the algorithm package staying free of the models and the experiments."""

import json
import subprocess
import sys

import jax
import jax.numpy as jnp
import numpy as np

from interp import hooks, ito, models, sae


def test_encoder_adapter_matches_pursuit_and_jits(small_problem):
    D, X = small_problem
    bias = np.linspace(-1, 1, D.shape[1]).astype(np.float32)
    enc = ito.encoder({"W_dec": D, "b_dec": bias}, k=8, precision="highest")
    f = enc.encode(X)
    direct = ito.gradient_pursuit(D, X, 8, bias=bias, precision="highest")
    np.testing.assert_allclose(np.asarray(f), np.asarray(direct.to_dense(192)), atol=1e-6)
    np.testing.assert_allclose(np.asarray(enc.decode(f)), np.asarray(enc(X)), atol=1e-5)
    jitted = jax.jit(ito.encode)(enc, X)  # the encoder is a pytree: jit/vmap over its arrays
    np.testing.assert_allclose(np.asarray(jitted), np.asarray(f), atol=1e-6)
    mp = enc.replace(method="matching_pursuit")
    mp_direct = ito.matching_pursuit(D, X, 8, bias=bias, precision="highest")
    np.testing.assert_allclose(np.asarray(mp.encode(X)), np.asarray(mp_direct.to_dense(192)),
                               atol=1e-6)


def test_encoder_from_sae():
    cfg = sae.SAEConfig(d_in=16, d_sae=64)
    model = sae.init_sae(jax.random.PRNGKey(0), cfg)
    model = type(model)({**model.params, "b_dec": jnp.full((16,), 0.5)}, model.config)
    enc = ito.encoder(model, k=4)
    x = jax.random.normal(jax.random.PRNGKey(1), (10, 16))
    f = enc.encode(x)
    assert f.shape == model.encode(x).shape
    # ITO codes decode through the SAE's own decoder
    np.testing.assert_allclose(np.asarray(model.decode(f)), np.asarray(enc.decode(f)), atol=1e-5)


def test_splice_into_model():
    m = models.load("tiny-llama")
    d = m.cfg.d_model
    tokens = jnp.asarray([[1, 5, 9, 33, 7, 70, 2, 11]])
    clean = m.forward(tokens, hooks.capture("resid_pre", layers=2))
    x = clean.captures["resid_pre"]
    x = x.reshape(-1, *x.shape[-2:])[-1] if x.ndim == 4 else x  # [B, T, d]
    # a complete +/- orthonormal dictionary with k = d reconstructs exactly: logits unchanged
    Q, _ = np.linalg.qr(np.random.default_rng(3).normal(size=(d, d)))
    full = ito.encoder(np.concatenate([Q.T, -Q.T]).astype(np.float32), k=d, precision="highest")
    out = m.forward(tokens, hooks.splice("resid_pre", ito.encode, ito.decode, full, layers=2))
    # tolerance: on GPU the model's own TF32 matmuls differ between compiled programs by ~1e-3
    tol = 1e-4 if jax.default_backend() == "cpu" else 3e-3
    np.testing.assert_allclose(np.asarray(out.logits), np.asarray(clean.logits), atol=tol)
    # a lossy dictionary (the + half only; zero atoms are never used; same shapes, so no
    # recompile): splicing equals replacing the site by the ITO reconstruction
    half = np.concatenate([Q.T, np.zeros_like(Q)]).astype(np.float32)
    lossy = ito.encoder(half, k=d, precision="highest")
    spliced = m.forward(tokens, hooks.splice("resid_pre", ito.encode, ito.decode, lossy, layers=2))
    replaced = m.forward(tokens, hooks.replace("resid_pre", lossy(x), layers=2))
    np.testing.assert_allclose(np.asarray(spliced.logits), np.asarray(replaced.logits), atol=tol)
    assert np.max(np.abs(np.asarray(spliced.logits) - np.asarray(clean.logits))) > 100 * tol


def test_algorithm_package_does_not_import_the_experiments_or_the_models():
    """`interp.ito` is the algorithms only: the ITO page's wiring (interp.experiments.ito, once
    interp.ito.experiments), the models, the claims and the data must not load with it."""
    code = ("import json, sys, interp.ito; "
            "print(json.dumps(sorted(m for m in sys.modules if m.startswith('interp.'))))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    loaded = set(json.loads(out.stdout))
    assert loaded == {"interp.ito", "interp.ito.encoder", "interp.ito.pursuit",
                      "interp.ito.reference", "interp.ito.shrinkage"}, loaded
