"""Real RASP programs compiled by Tracr, run as plain JAX with a labelled residual stream.

Why: a Tracr-compiled transformer (Lindner et al. 2023, https://arxiv.org/abs/2301.05062)
has a residual stream whose basis is known: one dimension per value of each categorical
variable, one per numerical variable, plus token/position one-hots and a constant "one".
That makes it a ground truth for SAE feature recovery.

Design: `compile_program` calls the real compiler (`tracr-pypi`) once and keeps only
data (weights, residual labels, encodings) in a `CompiledProgram`; it is cached in
memory and on disk (compiling takes seconds). `forward` re-implements Tracr's
`model.Transformer` (no layer norm, ReLU MLPs, BOS-anchored attention) as a pure
function of that data, so the same code runs the compiled model, its compressed version
(`interp.toy.tracr_compression`), under `jit`/`grad`, and returns every residual site.
Tests check `forward` against Tracr's own haiku model and against RASP evaluation.

Module name: `tracr_models`, not `tracr`, so it never shadows the `tracr` package.
"""

from __future__ import annotations

import functools
import json
import hashlib
from dataclasses import dataclass, field
from typing import Any, Callable, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np

from interp import cache

__all__ = [
    "PROGRAMS", "ProgramSpec", "CompiledProgram", "compile_program", "build_program",
    "compile_with_tracr_model",
    "Trace", "forward", "encode", "random_inputs", "rasp_outputs", "decode_outputs",
    "site_names", "BOS",
]

BOS = "BOS"
_CACHE_KIND = "tracr"
_FORMAT_VERSION = 1  # bump when the stored fields or the program builders change


# ---- the programs ----------------------------------------------------------------------

@dataclass(frozen=True)
class ProgramSpec:
    """A program from `tracr.compiler.lib` with the input setting it is compiled for."""

    name: str
    build: Callable[[int], Any]  # max_seq_len -> rasp.SOp
    vocab: tuple
    max_seq_len: int
    causal: bool = False
    doc: str = ""


def _frac_prevs(max_seq_len: int):
    from tracr.compiler import lib
    from tracr.rasp import rasp

    return lib.make_frac_prevs((rasp.tokens == "x").named("is_x")).named("frac_prevs")


def _sort(max_seq_len: int):
    from tracr.compiler import lib
    from tracr.rasp import rasp

    return lib.make_sort(rasp.tokens, rasp.tokens, max_seq_len=max_seq_len,
                         min_key=1).named("sort")


def _hist(max_seq_len: int):
    from tracr.compiler import lib

    return lib.make_hist().named("hist")


def _reverse(max_seq_len: int):
    from tracr.compiler import lib
    from tracr.rasp import rasp

    return lib.make_reverse(rasp.tokens).named("reverse")


PROGRAMS: dict[str, ProgramSpec] = {
    s.name: s for s in [
        ProgramSpec("frac_prevs", _frac_prevs, ("a", "b", "c", "x"), 8,
                    doc="fraction of tokens so far that are 'x' (numerical output)"),
        ProgramSpec("sort", _sort, (1, 2, 3, 4, 5), 5,
                    doc="tokens sorted ascending; ties broken by position (make_sort)"),
        ProgramSpec("hist", _hist, ("a", "b", "c", "d"), 8,
                    doc="how many times each token occurs in the sequence (make_hist)"),
        ProgramSpec("reverse", _reverse, ("a", "b", "c", "d"), 6,
                    doc="the sequence reversed (make_reverse, uses make_length)"),
    ]
}


def build_program(name: str, max_seq_len: int | None = None):
    """A fresh RASP SOp for a named program (for RASP evaluation)."""
    spec = _spec(name)
    return spec.build(max_seq_len or spec.max_seq_len)


def _spec(name: str) -> ProgramSpec:
    if name not in PROGRAMS:
        raise ValueError(f"unknown Tracr program {name!r}; known: {sorted(PROGRAMS)}")
    return PROGRAMS[name]


# ---- compiled data ----------------------------------------------------------------------

@dataclass(frozen=True, eq=False)
class CompiledProgram:
    """Everything needed to run a compiled program, as plain data.

    params: Tracr's haiku parameter dict {"token_embed": {"embeddings": ...}, ...,
      "transformer/layer_{l}/attn/query": {"w", "b"}, ...} as numpy arrays.
    residual_labels: the name of each residual dimension, e.g. "tokens:a", "indices:3",
      "one", "frac_prevs", "sort:2" (Tracr's labels with the per-process numeric ids
      stripped, so labels are stable across processes).
    """

    name: str
    vocab: tuple
    max_seq_len: int
    causal: bool
    numerical_output: bool
    num_layers: int
    num_heads: int
    key_size: int
    residual_labels: tuple[str, ...]
    output_label: str
    output_values: tuple          # categorical: the value of each output dimension
    input_encoding: dict          # token value (incl. BOS, pad) -> id
    params: dict = field(repr=False)

    @property
    def d_model(self) -> int:
        return len(self.residual_labels)

    @property
    def output_dims(self) -> np.ndarray:
        """Residual dimensions the unembedding reads."""
        if self.numerical_output:
            return np.array([self.residual_labels.index(self.output_label)])
        prefix = self.output_label + ":"
        return np.array([i for i, lab in enumerate(self.residual_labels)
                         if lab.startswith(prefix)])

    def variables(self) -> dict[str, np.ndarray]:
        """Residual dimensions grouped by variable ("tokens", "indices", "sort", ...)."""
        groups: dict[str, list[int]] = {}
        for i, lab in enumerate(self.residual_labels):
            groups.setdefault(lab.split(":")[0], []).append(i)
        return {k: np.array(v) for k, v in groups.items()}


def _normalised_labels(program, labels: list[str]) -> list[str]:
    """Replace Tracr's `name_<id>` labels by `name` where the name is unique."""
    exprs, stack = {}, [program]
    while stack:
        e = stack.pop()
        if e.label not in exprs:
            exprs[e.label] = e
            stack.extend(e.children)
    names = [e.name for e in exprs.values()]
    rename = {lab: e.name for lab, e in exprs.items() if names.count(e.name) == 1}

    def fix(label: str) -> str:
        for lab in sorted(rename, key=len, reverse=True):
            if label == lab or label.startswith(lab + ":") or label.startswith(lab + "_"):
                return rename[lab] + label[len(lab):]
        return label

    return [fix(lab) for lab in labels]


def _compile_uncached(spec: ProgramSpec) -> CompiledProgram:
    return compile_with_tracr_model(spec.name)[0]


def compile_with_tracr_model(name: str):
    """Compile without caching; returns (CompiledProgram, Tracr's AssembledTransformerModel).

    For cross-checking `forward` against Tracr's own haiku model.
    """
    from tracr.compiler import compiling
    from tracr.rasp import rasp

    spec = _spec(name)
    program = spec.build(spec.max_seq_len)
    model = compiling.compile_rasp_to_model(
        program, vocab=set(spec.vocab), max_seq_len=spec.max_seq_len, causal=spec.causal,
        compiler_bos=BOS)
    labels = _normalised_labels(program, list(model.residual_labels))
    numerical = rasp.is_numerical(program)
    if numerical:
        output_values: tuple = ()
    else:
        enc = model.output_encoder.encoding_map
        output_values = tuple(v for v, _ in sorted(enc.items(), key=lambda kv: kv[1]))
    params = {k: {kk: np.asarray(vv) for kk, vv in v.items()} for k, v in model.params.items()}
    cfg = model.model_config
    return CompiledProgram(
        name=spec.name, vocab=tuple(spec.vocab), max_seq_len=spec.max_seq_len,
        causal=spec.causal, numerical_output=bool(numerical), num_layers=cfg.num_layers,
        num_heads=cfg.num_heads, key_size=cfg.key_size, residual_labels=tuple(labels),
        output_label=program.name, output_values=output_values,
        input_encoding=dict(model.input_encoder.encoding_map), params=params), model


def _cache_key(spec: ProgramSpec) -> str:
    from importlib.metadata import version

    return cache.content_hash(spec.name, list(spec.vocab), spec.max_seq_len, spec.causal,
                              version("tracr-pypi"), _FORMAT_VERSION)


def _save(prog: CompiledProgram, folder) -> None:
    import io

    flat = {f"{k}|{kk}": vv for k, v in prog.params.items() for kk, vv in v.items()}
    buf = io.BytesIO()
    np.savez(buf, **flat)
    meta = {
        "name": prog.name, "vocab": list(prog.vocab), "max_seq_len": prog.max_seq_len,
        "causal": prog.causal, "numerical_output": prog.numerical_output,
        "num_layers": prog.num_layers, "num_heads": prog.num_heads,
        "key_size": prog.key_size, "residual_labels": list(prog.residual_labels),
        "output_label": prog.output_label, "output_values": list(prog.output_values),
        "input_encoding": [[k, v] for k, v in prog.input_encoding.items()],
        "params_sha256": hashlib.sha256(buf.getvalue()).hexdigest(),
    }
    cache.atomic_write_bytes(folder / "params.npz", buf.getvalue())
    cache.atomic_write_bytes(folder / "meta.json", json.dumps(meta).encode())


def _load(folder) -> CompiledProgram:
    meta_path, npz_path = folder / "meta.json", folder / "params.npz"
    try:
        meta = json.loads(meta_path.read_text())
        blob = npz_path.read_bytes()
        if hashlib.sha256(blob).hexdigest() != meta["params_sha256"]:
            raise ValueError("checksum mismatch")
        import io

        with np.load(io.BytesIO(blob)) as z:
            flat = {k: z[k] for k in z.files}
    except Exception as err:  # noqa: BLE001 - any failure here means a corrupt cache
        raise ValueError(f"corrupt compiled-Tracr cache in {folder} ({err}); delete that "
                         "folder to recompile") from err
    params: dict = {}
    for key, value in flat.items():
        mod, leaf = key.split("|")
        params.setdefault(mod, {})[leaf] = value
    return CompiledProgram(
        name=meta["name"], vocab=tuple(meta["vocab"]), max_seq_len=meta["max_seq_len"],
        causal=meta["causal"], numerical_output=meta["numerical_output"],
        num_layers=meta["num_layers"], num_heads=meta["num_heads"],
        key_size=meta["key_size"], residual_labels=tuple(meta["residual_labels"]),
        output_label=meta["output_label"], output_values=tuple(meta["output_values"]),
        input_encoding={k: v for k, v in meta["input_encoding"]}, params=params)


@functools.lru_cache(maxsize=None)
def compile_program(name: str, *, use_disk_cache: bool = True) -> CompiledProgram:
    """Compile a program of `PROGRAMS` with Tracr (memoised in-process and on disk)."""
    spec = _spec(name)
    if not use_disk_cache:
        return _compile_uncached(spec)
    folder = cache.cache_dir(_CACHE_KIND, _cache_key(spec))
    if (folder / "meta.json").exists():
        return _load(folder)
    prog = _compile_uncached(spec)
    _save(prog, folder)
    return prog


# ---- inputs and reference outputs ---------------------------------------------------------

def random_inputs(prog: CompiledProgram, n: int, *, seed: int, length: int | None = None
                  ) -> list[list]:
    """n random token sequences (uniform over the vocab), without BOS."""
    length = length or prog.max_seq_len
    if not 1 <= length <= prog.max_seq_len:
        raise ValueError(f"length must be in [1, {prog.max_seq_len}], got {length}")
    rng = np.random.default_rng(seed)
    idx = rng.integers(0, len(prog.vocab), size=(n, length))
    return [[prog.vocab[i] for i in row] for row in idx]


def encode(prog: CompiledProgram, sequences: list[list]) -> jax.Array:
    """Token ids [B, 1 + T] with BOS prepended. All sequences must share one length."""
    lengths = {len(s) for s in sequences}
    if len(lengths) != 1:
        raise ValueError(f"sequences must share one length (no padding mask), got {lengths}")
    unknown = {t for s in sequences for t in s} - set(prog.vocab)
    if unknown:
        raise ValueError(f"tokens {sorted(map(str, unknown))} are not in the vocab "
                         f"{prog.vocab} of program {prog.name!r}")
    enc = prog.input_encoding
    return jnp.array([[enc[BOS]] + [enc[t] for t in s] for s in sequences], jnp.int32)


def rasp_outputs(prog: CompiledProgram, sequences: list[list]) -> list[list]:
    """The program's outputs by RASP evaluation (the ground truth for the compiled model)."""
    program = build_program(prog.name, prog.max_seq_len)
    return [list(program(list(s))) for s in sequences]


# ---- the forward pass ---------------------------------------------------------------------

class Trace(NamedTuple):
    """All residual-stream sites of one forward pass.

    residuals: [S, B, T, d] with S = 1 + 2 * num_layers: the embedding, then the stream
      after each attention and each MLP sublayer (`site_names`). d is the width of the
      stream: d_model for the compiled model, the compressed width otherwise.
    layer_outputs: [2 * num_layers, B, T, d_model] what each sublayer adds, in the
      compiled (uncompressed) basis.
    output: [B, T, d_model] the final residual read back into the compiled basis.
    """

    residuals: jax.Array
    layer_outputs: jax.Array
    output: jax.Array


def site_names(prog: CompiledProgram) -> list[str]:
    names = ["embed"]
    for layer in range(prog.num_layers):
        names += [f"layer_{layer}/attn", f"layer_{layer}/mlp"]
    return names


def _linear(p, x):
    return x @ p["w"] + p["b"]


def _attention(prog: CompiledProgram, p: dict, x: jax.Array) -> jax.Array:
    """Tracr's MultiHeadAttention (softmax(QK^T / sqrt(k)) V, then a linear map)."""
    *lead, t, _ = x.shape
    h, k = prog.num_heads, prog.key_size
    q = _linear(p["query"], x).reshape(*lead, t, h, k)
    kk = _linear(p["key"], x).reshape(*lead, t, h, k)
    v = _linear(p["value"], x).reshape(*lead, t, h, k)
    logits = jnp.einsum("...thd,...Thd->...htT", q, kk) / np.sqrt(k).astype(np.float32)
    if prog.causal:
        logits = jnp.where(jnp.tril(jnp.ones((t, t), bool)), logits, -1e30)
    weights = jax.nn.softmax(logits, axis=-1)
    out = jnp.einsum("...htT,...Thd->...thd", weights, v).reshape(*lead, t, h * k)
    return _linear(p["linear"], out)


def _mlp(p: dict, x: jax.Array) -> jax.Array:
    return _linear(p["linear_2"], jax.nn.relu(_linear(p["linear_1"], x)))


@functools.partial(jax.jit, static_argnums=0)
def forward(prog: CompiledProgram, token_ids: jax.Array, w_emb: jax.Array | None = None
            ) -> Trace:
    """Run the compiled model; with `w_emb` [d_c, d_model], run it compressed.

    Compression follows Tracr's `CompressedTransformer` with `unembed_at_every_layer`
    (paper §5): the residual stream has width d_c; every sublayer *reads* the stream as
    z @ w_emb (back to the compiled basis, so the compiled weights stay frozen) and
    *writes* its output as out @ w_emb.T. The stream is decompressed before unembedding.
    Jitted with the program static (compiled once per program and input shape).
    """
    params = prog.params
    t = token_ids.shape[-1]
    if t > prog.max_seq_len + 1:
        raise ValueError(f"sequence of {t - 1} tokens exceeds max_seq_len {prog.max_seq_len}")
    x = (jnp.asarray(params["token_embed"]["embeddings"])[token_ids]
         + jnp.asarray(params["pos_embed"]["embeddings"])[:t])
    if w_emb is None:
        write = read = lambda a: a  # noqa: E731
    else:
        if w_emb.shape[-1] != prog.d_model:
            raise ValueError(f"w_emb must be [d_c, {prog.d_model}], got {w_emb.shape}")
        write, read = (lambda a: a @ w_emb.T), (lambda a: a @ w_emb)  # noqa: E731
    z = write(x)
    residuals, outputs = [z], []
    for layer in range(prog.num_layers):
        pre = f"transformer/layer_{layer}"
        attn = _attention(prog, {n: params[f"{pre}/attn/{n}"]
                                 for n in ("query", "key", "value", "linear")}, read(z))
        z = z + write(attn)
        residuals.append(z)
        mlp = _mlp({n: params[f"{pre}/mlp/{n}"] for n in ("linear_1", "linear_2")}, read(z))
        z = z + write(mlp)
        residuals.append(z)
        outputs += [attn, mlp]
    return Trace(jnp.stack(residuals), jnp.stack(outputs), read(z))


def decode_outputs(prog: CompiledProgram, output: jax.Array) -> np.ndarray:
    """Program outputs from the final residual [B, T, d_model] -> [B, T] (BOS included).

    Categorical: the value whose output dimension is largest (Tracr's argmax unembed);
    numerical: the value of the output dimension.
    """
    vals = np.asarray(output)[..., prog.output_dims]
    if prog.numerical_output:
        return vals[..., 0]
    return np.asarray(prog.output_values, dtype=object)[vals.argmax(-1)]
