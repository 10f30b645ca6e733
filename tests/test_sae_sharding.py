"""Sharded SAE training (batch over "data", latents over "feature") equals single-device
training. Runs in a subprocess so the 8-fake-CPU-devices XLA flag does not leak."""

import os
import subprocess
import sys
import textwrap

SCRIPT = textwrap.dedent("""
    import jax, numpy as np
    from interp import sae
    assert len(jax.devices()) == 8, jax.devices()
    data = lambda: sae.SparseDictionaryData(d_in=16, n_features=32, batch_size=128,
                                            mean_active=3)
    for strategy in ("ghost", "resample"):
        cfg = sae.SAEConfig(d_in=16, d_sae=32, batch_size=128, steps=20, lr=1e-2,
                            lr_warmup_steps=5, l1_coeff=0.02, dead_window_steps=5,
                            dead_strategy=strategy, resample_at=(0.5,))
        single, h1 = sae.train(cfg, data(), progress=False, log_every=10)
        mesh = sae.make_mesh(n_data=4, n_feature=2)
        sharded, h2 = sae.train(cfg, data(), progress=False, log_every=10, mesh=mesh)
        w = sharded.params["W_enc"]
        assert len(w.sharding.device_set) == 8, w.sharding
        assert w.sharding.spec == jax.sharding.PartitionSpec(None, "feature"), w.sharding.spec
        for name in single.params:
            np.testing.assert_allclose(np.asarray(sharded.params[name]),
                                       np.asarray(single.params[name]), rtol=1e-4, atol=1e-5,
                                       err_msg=f"{strategy} {name}")
        np.testing.assert_allclose(h1["loss"], h2["loss"], rtol=1e-4)
    print("SHARDED_OK")
""")


def test_sharded_training_equals_single_device():
    env = dict(os.environ, XLA_FLAGS="--xla_force_host_platform_device_count=8",
               JAX_PLATFORMS="cpu")
    proc = subprocess.run([sys.executable, "-c", SCRIPT], env=env, capture_output=True,
                          text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr[-4000:]
    assert "SHARDED_OK" in proc.stdout
