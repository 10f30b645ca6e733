"""Dead-latent strategies (Anthropic, Towards Monosemanticity 2023, resampling; Anthropic
Jan 2024 update, ghost grads; GDM Progress Update #1, snippet 3, scaled ghost grads).

- `ghost_loss`: Anthropic's ghost grads (Jan-2024), optionally scaled by the dead fraction (GDM).
- `auxk_loss`: Gao et al. (2024) AuxK for top-k SAEs.
- `resample`: Anthropic's neuron resampling (2023) with the moments of the touched rows reset.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp

from . import precision, registry
from .config import SAEConfig

sg = jax.lax.stop_gradient
EPS = 1e-8
# exp() of a pre-activation is clamped here so that "ghost_all" (which also exponentiates
# live, positive pre-activations) cannot overflow float32; dead latents sit far below it.
EXP_CLAMP = 30.0


def dead_mask(steps_since_fired, step, cfg: SAEConfig):
    """Latents that have not fired for `dead_window_steps` steps; under "ghost_all", every
    latent during the first `ghost_all_steps` steps (or always, if that is None)."""
    dead = steps_since_fired >= cfg.dead_window_steps
    if cfg.dead_strategy == "ghost_all":
        if cfg.ghost_all_steps is None:
            return jnp.ones_like(dead)
        return dead | (step < cfg.ghost_all_steps)
    return dead


def ghost_pre_activations(params, x, z, cfg: SAEConfig):
    """z with b_dec's influence stopped: same value, but the ghost gradient cannot reach b_dec
    (it must reach only the dead latents' encoder rows, biases and decoder rows). The b_dec
    gradient cancels up to float rounding; this avoids a second encoder matmul."""
    if not cfg.pre_encoder_bias:
        return z
    b = params["b_dec"]
    return z + (b - sg(b)) @ params["W_enc"]


def ghost_loss(params, x, z, x_hat, recon, dead, cfg: SAEConfig):
    """Anthropic ghost grads, per their January 2024 update (SAELens `calculate_ghost_grad_loss`):

        g = sum_{i dead} exp(z_i) d_i;  r = x - x_hat
        s = sg(||r|| / (2||g|| + eps))        (the ghost output has half the residual's norm)
        L0 = ||s g - sg(r)||^2;  L = L0 * sg(recon / (L0 + eps))   (per example; MSE-sized)

    Returns mean(L), times the dead fraction for "ghost_scaled" (GDM Progress Update #1, snippet 3), and 0
    when no latent is dead."""
    z = ghost_pre_activations(params, x, z, cfg)
    z_dead = jnp.where(dead, jnp.minimum(z, EXP_CLAMP), 0.0)
    ghost_acts = jnp.where(dead, jnp.exp(z_dead), 0.0)
    g = precision.matmul(ghost_acts, params["W_dec"], cfg.compute_dtype)
    r = sg(x - x_hat)
    s = sg(jnp.linalg.norm(r, axis=-1) / (2 * jnp.linalg.norm(g, axis=-1) + EPS))
    l0 = jnp.sum((s[..., None] * g - r) ** 2, axis=-1)
    per_example = l0 * sg(recon / (l0 + EPS))
    n_dead = jnp.sum(dead)
    weight = jnp.where(n_dead > 0, 1.0, 0.0)
    if cfg.dead_strategy == "ghost_scaled":
        weight = n_dead / dead.shape[-1]
    return weight * jnp.mean(per_example)


def auxk_loss(params, x, z, x_hat, dead, cfg: SAEConfig):
    """AuxK (Gao et al. 2024, App. A.2): reconstruct the (stopped) residual e = x - x_hat from
    the top `aux_k` dead latents, e_hat = W_dec topk_dead(z), loss ||e - e_hat||^2 / ||e||^2
    per example; 0 when no latent is dead. Weighted by `aux_k_coeff` in the total loss."""
    k_aux = min(cfg.aux_k, z.shape[-1])
    z_dead = jnp.where(dead, z, -jnp.inf)
    kth = jax.lax.top_k(z_dead, k_aux)[0][..., -1:]
    acts = jnp.where(dead & (z_dead >= kth), jax.nn.relu(z), 0.0)
    e = sg(x - x_hat)
    e_hat = precision.matmul(acts, params["W_dec"], cfg.compute_dtype)
    per_example = jnp.sum((e - e_hat) ** 2, -1) / (jnp.sum(e**2, -1) + EPS)
    return jnp.where(jnp.any(dead), jnp.mean(per_example), 0.0)


def resample(params, adam_m, adam_v, dead, x, loss, key, cfg: SAEConfig):
    """Anthropic neuron resampling (Towards Monosemanticity, 2023) from candidate inputs `x` (in
    training units; the step's batch or a larger pool) whose squared reconstruction errors are
    `loss`: draw one input per dead latent with probability proportional to loss ** 2 (the
    square of the autoencoder's loss on it); set d_i = x~/||x~|| (times the initial norm for
    non-unit decoders),
    encoder column = d_i * resample_encoder_scale * mean alive encoder norm, the latent's
    biases (and gated r_mag) = 0, and zero the Adam moments of every touched entry.
    Returns (params, adam_m, adam_v)."""
    arch = registry.get(cfg.architecture)
    p = loss**2
    p = jnp.where(jnp.sum(p) > 0, p / jnp.sum(p), jnp.full_like(p, 1.0 / p.shape[0]))
    idx = jax.random.choice(key, x.shape[0], shape=(cfg.d_sae,), p=p, replace=True)
    x_s = x[idx]
    d_new = x_s / (jnp.linalg.norm(x_s, axis=-1, keepdims=True) + EPS)  # x_s = 0 gives d_new = 0
    if cfg.decoder_norm != "unit":
        d_new = d_new * cfg.decoder_init_norm
    enc_norms = jnp.linalg.norm(params["W_enc"], axis=0)
    alive = ~dead
    n_alive = jnp.sum(alive)
    mean_alive = jnp.where(n_alive > 0, jnp.sum(enc_norms * alive) / jnp.maximum(n_alive, 1), 1.0)
    enc_new = (d_new / jnp.maximum(jnp.linalg.norm(d_new, axis=-1, keepdims=True), EPS)
               * cfg.resample_encoder_scale * mean_alive)

    new_values = {"W_dec": d_new, "W_enc": enc_new.T}
    params, adam_m, adam_v = dict(params), dict(adam_m), dict(adam_v)
    for name, axis in arch.FEATURE_AXES.items():
        shape = [1] * params[name].ndim
        shape[axis] = cfg.d_sae
        mask = dead.reshape(shape)
        value = new_values.get(name, jnp.zeros_like(params[name]))
        params[name] = jnp.where(mask, value, params[name])
        adam_m[name] = jnp.where(mask, 0.0, adam_m[name])
        adam_v[name] = jnp.where(mask, 0.0, adam_v[name])
    return params, adam_m, adam_v
