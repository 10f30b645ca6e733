"""ActAdd steering vectors and steered generation (Turner et al. 2023, arXiv:2308.10248).

Why per-position vectors: ActAdd's vector is the *difference of two prompts' residual streams*
at one layer, h_A = h_l(p+) - h_l(p-) in R^{P x d}, one row per token position. The shorter
prompt is right-padded with the space token (the reference code's `pad_method="tokens_right"`),
and during generation c * h_A is added to the first P positions of the user's prompt
("front" positions). Both prompts start with BOS, so h_A[0] = 0.

Why per-row vectors: generation on CPU is the cost of every steering experiment. Putting every
(variant, coefficient, sample) in one batch, each row with its own steering vector, turns
dozens of small generate calls into one large one.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence

import jax
import jax.numpy as jnp
import numpy as np
from tqdm import tqdm

from interp import hooks
from interp.hooks import Site, resolve_site
from interp.models import sampling as sampling_mod

# ActAdd's sampling settings (the paper's appendix / the LessWrong post): seed 0, T = 1,
# top-p 0.3, frequency penalty 1.
ACTADD_SAMPLING = {"temperature": 1.0, "top_p": 0.3, "frequency_penalty": 1.0}


@dataclasses.dataclass(frozen=True)
class PromptPair:
    """Two prompts tokenised (BOS first) and right-padded with the space token to equal length."""

    plus: str
    minus: str
    plus_ids: tuple[int, ...]
    minus_ids: tuple[int, ...]
    n_pad_plus: int   # space tokens appended to `plus`
    n_pad_minus: int  # space tokens appended to `minus`

    @property
    def positions(self) -> tuple[int, ...]:
        """The front positions 0..P-1 that the vector is added to."""
        return tuple(range(len(self.plus_ids)))


def space_token(tokenizer) -> int:
    """The id of the single-space token (what ActAdd pads with)."""
    ids = tokenizer.encode(" ", add_bos=False)
    if len(ids) != 1:
        raise ValueError(f"the tokenizer encodes ' ' as {ids}, not one token; "
                         "cannot pad ActAdd pairs")
    return int(ids[0])


def bos_token(model) -> int:
    """BOS of the model (SmolLM2 has no add_bos flag but was packed with <|im_start|>=1 as BOS
    by interp.data.packing; we prepend the same id so prompts look like training contexts)."""
    if model.cfg.bos_id is None:
        raise ValueError(f"model {model.name} has no BOS id; ActAdd prompts need one at position 0")
    return int(model.cfg.bos_id)


def encode_prompt(model, text: str) -> list[int]:
    """BOS + the tokens of `text` (the layout ActAdd uses, and the SAE's training layout)."""
    return [bos_token(model)] + list(model.tokenizer.encode(text, add_bos=False))


def prompt_pair(model, plus: str, minus: str, pad: str = " ") -> PromptPair:
    """Tokenise `plus` and `minus` and right-pad the shorter with the `pad` token (ActAdd: the
    space token; it must be a single token)."""
    if not isinstance(plus, str) or not isinstance(minus, str):
        raise TypeError("prompt pair members must be strings")
    a, b = encode_prompt(model, plus), encode_prompt(model, minus)
    if pad == " ":
        pad = space_token(model.tokenizer)
    else:
        ids = model.tokenizer.encode(pad, add_bos=False)
        if len(ids) != 1:
            raise ValueError(f"pad {pad!r} is {len(ids)} tokens; ActAdd pads with one token")
        pad = int(ids[0])
    n = max(len(a), len(b))
    pa, pb = n - len(a), n - len(b)
    return PromptPair(plus, minus, tuple(a + [pad] * pa), tuple(b + [pad] * pb), pa, pb)


def residual_site(model, site: str | Site) -> Site:
    """Site("resid_post", 6) for "blocks.6.resid_post": steering needs a per-layer residual
    stream site."""
    parsed = resolve_site(model, site)
    if parsed.name not in ("resid_pre", "resid_mid", "resid_post") or parsed.layer is None:
        raise ValueError(f"steering site {site!r} must be a residual stream site "
                         "blocks.<layer>.resid_pre|resid_mid|resid_post")
    return parsed


def resume_layer(model, site: str) -> int:
    """The layer whose input is the site's residual (resid_pre l -> l, resid_post l -> l + 1):
    where a forward restarted from a steered residual resumes. resid_mid has no such layer."""
    name, layer = residual_site(model, site)
    if name == "resid_mid":
        raise ValueError(f"steering site {site!r}: a forward can resume only after a "
                         "resid_pre / resid_post site, not resid_mid")
    return layer if name == "resid_pre" else layer + 1


def residuals(model, site: str, ids_batch) -> jax.Array:
    """The value at `site` for each sequence of an equal-length batch: [B, T, d]."""
    name, layer = residual_site(model, site)
    ids = jnp.asarray(ids_batch, jnp.int32)
    out = model.forward(ids, hooks=hooks.capture(name, layers=layer), stop_at_layer=layer + 1)
    return out.captures[name][0]


def sink_positions(model, site: str, pair: PromptPair, reference_norm: float,
                   factor: float = 3.0) -> tuple[int, ...]:
    """Non-BOS positions where either prompt's residual norm exceeds `factor` x
    `reference_norm` (the typical norm at the site).

    Why: in SmolLM2 the space token and some first words after BOS ("Ang", "Love") are extra
    attention sinks ("massive activations", norm ~6x the typical residual). ActAdd's space padding
    then puts a sink-minus-token row into h_A that dwarfs the concept rows; the SAE never models
    such rows well. A sink row may also carry the concept ("Ang" of "Anger"): only
    `padding_sinks` are left out."""
    h = np.asarray(residuals(model, site, [pair.plus_ids, pair.minus_ids]))
    norms = np.linalg.norm(h, axis=-1).max(0)
    return tuple(int(t) for t in np.flatnonzero(norms > factor * reference_norm) if t > 0)


def padding_rows(pair: PromptPair) -> tuple[int, ...]:
    """Positions where either prompt holds a pad token (ActAdd's right padding)."""
    n, k = len(pair.plus_ids), max(pair.n_pad_plus, pair.n_pad_minus)
    return tuple(range(n - k, n))


def padding_sinks(model, site: str, pair: PromptPair, reference_norm: float,
                  factor: float = 3.0) -> tuple[int, ...]:
    """The sink rows that are padding rows: what the steering page zeroes. Why only these: a
    padding row is the pad's attention sink minus the other prompt's token (norm ~5x the
    concept rows), an artefact of the padding, while a sink at a real token of both prompts
    ("Ang" - "C" in Anger - Calm) is where the concept is written and is kept."""
    pad = set(padding_rows(pair))
    return tuple(t for t in sink_positions(model, site, pair, reference_norm, factor) if t in pad)


def actadd_vector(model, site: str, pair: PromptPair) -> jax.Array:
    """h_A = h(p+) - h(p-) at `site`: [P, d], one row per front position."""
    h = residuals(model, site, [pair.plus_ids, pair.minus_ids])
    return h[0] - h[1]


# ----------------------------------------------------------------------------- hooks
def _add_per_row(x, args, ctx):
    """x [B, T, d] += delta [B, P, d] scattered onto the absolute positions `positions` [P]."""
    onehot = (ctx.positions[:, None] == args["positions"][None, :]).astype(x.dtype)  # [T, P]
    return x + jnp.einsum("tp,bpd->btd", onehot, args["delta"].astype(x.dtype))


def steering_hooks(model, site, deltas) -> hooks.Hooks:
    """Hooks adding `deltas` ([P, d] for every row, or [B, P, d] per row; coefficient already
    applied) to positions 0..P-1 at `site`. Positions are absolute, so during KV-cached
    generation the edit touches the prompt once, never the new tokens.

    `site` may also be a list of L sites of the same kind at different layers with deltas
    [L, B, P, d] (one compiled program for a whole layer sweep: zero rows where a sample is
    not steered at that layer)."""
    sites = [site] if isinstance(site, str) else list(site)
    parsed = [residual_site(model, s) for s in sites]
    if len({n for n, _ in parsed}) != 1 or len({layer for _, layer in parsed}) != len(parsed):
        raise ValueError(f"sites {sites} must be one kind of residual site at distinct layers")
    name, layers = parsed[0][0], [layer for _, layer in parsed]
    deltas = jnp.asarray(deltas, jnp.float32)
    if isinstance(site, str):
        deltas = deltas[None] if deltas.ndim == 2 else deltas
        deltas = deltas[None]
    if deltas.ndim != 4 or deltas.shape[0] != len(sites) or deltas.shape[-1] != model.cfg.d_model:
        raise ValueError(f"steering deltas must be [P, d] or [B, P, d] for one site (or "
                         f"[{len(sites)}, B, P, d] for {len(sites)} sites) with d = "
                         f"{model.cfg.d_model}, got {deltas.shape}")
    positions = jnp.arange(deltas.shape[2], dtype=jnp.int32)
    return hooks.Hooks.of(hooks.apply(name, _add_per_row, {"positions": positions},
                                      layers=layers, layer_args={"delta": deltas}))


def generate(model, site, prompt: str | Sequence[int], deltas, *, max_new_tokens: int = 24,
             seed: int = 0, sampling: dict | None = None, batch_size: int = 64,
             min_positions: int = 8, progress: bool = False) -> list[list[int]]:
    """Sample one continuation per row of `deltas` [B, P, d] (coefficient included; a zero row
    is the unsteered model), with ActAdd's sampling settings unless `sampling` overrides them.
    With a list of L sites, `deltas` is [L, B, P, d] (see `steering_hooks`). Vectors shorter
    than `min_positions` are padded with zero rows (fewer recompilations across vectors).

    Rows are generated `batch_size` at a time; chunk k uses the sampling seed
    `seed + 1_000_003 * k` (chunk 0: `seed` itself), so a request is reproducible for a fixed
    batch_size.
    The prompt is BOS + tokens when given as text. Returns the new token ids per row.
    """
    ids = encode_prompt(model, prompt) if isinstance(prompt, str) else list(prompt)
    multi = not isinstance(site, str)
    deltas = jnp.asarray(deltas, jnp.float32)
    if deltas.ndim == 2:
        deltas = deltas[None]
    if not multi:
        deltas = deltas[None]
    if deltas.ndim != 4:
        raise ValueError(f"deltas must be [B, P, d] (or [L, B, P, d] for L sites), "
                         f"got {deltas.shape}")
    if deltas.shape[2] > len(ids) and float(jnp.abs(deltas[:, :, len(ids):]).max()) > 0:
        raise ValueError(f"the steering vector covers {deltas.shape[2]} positions but the prompt "
                         f"has only {len(ids)} tokens; ActAdd adds at the prompt's front positions")
    if deltas.shape[2] < min_positions:  # zero rows: one compiled program for every vector length
        deltas = jnp.pad(deltas, ((0, 0), (0, 0), (0, min_positions - deltas.shape[2]), (0, 0)))
    knobs = {**ACTADD_SAMPLING, **(sampling or {})}
    unknown = set(knobs) - set(ACTADD_SAMPLING)
    if unknown:
        raise ValueError(f"unknown sampling options {sorted(unknown)}; "
                         f"allowed: {sorted(ACTADD_SAMPLING)}")
    stop = () if model.cfg.eos_id is None else (model.cfg.eos_id,)
    out: list[list[int]] = []
    n = deltas.shape[1]
    for lo in tqdm(range(0, n, batch_size), desc="generate", disable=not progress):
        chunk = deltas[:, lo:lo + batch_size]
        b = chunk.shape[1]
        if b < batch_size and n > batch_size:  # keep one compiled shape: pad with zero rows
            zeros = jnp.zeros((chunk.shape[0], batch_size - b) + chunk.shape[2:])
            chunk = jnp.concatenate([chunk, zeros], axis=1)
        new = sampling_mod.generate(model.arch, model.params, model.cfg, [ids] * chunk.shape[1],
                                    max_new_tokens=max_new_tokens,
                                    seed=seed + 1_000_003 * (lo // batch_size),
                                    stop_tokens=stop, never_sample=model.never_sample,
                                    hooks=steering_hooks(model, site if multi else [site], chunk),
                                    **knobs)
        out.extend(new[:b])
    return out
