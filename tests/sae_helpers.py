"""Shared helper for the interp.sae tests: a small SAEConfig with overrides."""

from interp import sae


def small(**kw):
    base = dict(d_in=16, d_sae=64, batch_size=256, steps=50, lr=1e-3, lr_warmup_steps=10,
                l1_coeff=0.01)
    base.update(kw)
    return sae.SAEConfig(**base)
