"""The two extension points a newcomer uses: every registered model architecture and SAE
architecture satisfies its written-down protocol, by name, signature and behaviour."""

import inspect

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from interp import models, sae
from interp.models.architecture import Architecture
from interp.sae import registry
from interp.sae.architecture import SAEArchitecture
from interp.sae.config import ARCHITECTURES


def _methods(protocol):
    return [n for n, v in vars(protocol).items() if inspect.isfunction(v) and not n.startswith("_")]


def _same_parameters(module, protocol, name):
    want = list(inspect.signature(getattr(protocol, name)).parameters)[1:]  # drop self
    got = list(inspect.signature(getattr(module, name)).parameters)
    assert got[:len(want)] == want, f"{module.__name__}.{name}{tuple(got)} vs protocol {want}"
    extra = [inspect.signature(getattr(module, name)).parameters[p] for p in got[len(want):]]
    assert all(p.default is not inspect.Parameter.empty for p in extra), (module.__name__, name)


@pytest.mark.parametrize("arch_name", sorted(models.ARCHS))
def test_model_architectures_satisfy_the_protocol(arch_name):
    module = models.ARCHS[arch_name]
    assert isinstance(module, Architecture)
    assert set(_methods(Architecture)) == {"embed", "block", "head", "config_from_gguf",
                                           "convert", "init_params"}
    for name in _methods(Architecture):
        _same_parameters(module, Architecture, name)
    cfg = module.TINY
    params = jax.tree.map(jnp.asarray, module.init_params(cfg, 0))
    tokens = jnp.array([[1, 2, 3, 4]], jnp.int32)
    x = module.embed(params, tokens, cfg)
    assert x.shape == (1, 4, cfg.d_model)
    logits = models.core.forward(module, params, tokens, cfg).logits
    assert logits.shape[:2] == (1, 4) and np.isfinite(np.asarray(logits)).all()
    assert {"resid_pre", "resid_post", "embed"} <= set(module.SITES.names)


@pytest.mark.parametrize("arch_name", sorted(registry.ARCHITECTURES))
def test_sae_architectures_satisfy_the_protocol(arch_name):
    module = registry.get(arch_name)
    assert arch_name in ARCHITECTURES                      # SAEConfig accepts it
    assert isinstance(module, SAEArchitecture)
    for name in _methods(SAEArchitecture):
        _same_parameters(module, SAEArchitecture, name)
    cfg = sae.SAEConfig(d_in=8, d_sae=32, architecture=arch_name, k=4)
    params = module.init(jax.random.PRNGKey(0), cfg)
    for p, axis in module.FEATURE_AXES.items():
        assert params[p].shape[axis] == cfg.d_sae, (p, params[p].shape)
    np.testing.assert_allclose(np.linalg.norm(params["W_dec"], axis=1), 1.0, rtol=1e-5)
    x = jax.random.normal(jax.random.PRNGKey(1), (5, cfg.d_in))
    out = module.forward(params, x, cfg)
    assert {"z", "f", "x_hat", "sparsity"} <= set(out)       # gated adds its aux_recon
    assert out["z"].shape == out["f"].shape == (5, cfg.d_sae)
    assert out["x_hat"].shape == x.shape and out["sparsity"].shape == (5,)
    np.testing.assert_allclose(module.encode(params, x, cfg), out["f"], rtol=1e-6, atol=1e-6)
    np.testing.assert_allclose(module.pre_activations(params, x, cfg), out["z"], rtol=1e-6,
                               atol=1e-6)
    assert (np.asarray(out["f"]) >= 0).all()


def test_an_unregistered_sae_architecture_is_refused_naming_the_registered_ones():
    with pytest.raises(ValueError, match="relu"):
        registry.get("jumprelu")
