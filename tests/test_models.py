"""interp.models: loading, errors, generation with a KV cache, and agreement with llama.cpp."""

from __future__ import annotations

import functools
import json
import os
import subprocess
import sys
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from interp import models
from interp.models import core, gguf_io

FIXTURES = Path(__file__).parent / "fixtures"
REPO = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module", params=["tiny-llama", "tiny-gemma3"])
def tiny(request):
    return models.load(request.param)


# --------------------------------------------------------------------- names and bad files


def test_unknown_model_name_lists_known_ones():
    with pytest.raises(ValueError, match="known models: smollm2-135m, gemma3-270m"):
        models.load("smollm3")


def test_missing_gguf_is_named(tmp_path):
    missing = tmp_path / "nope.gguf"
    with pytest.raises(models.ModelFileError, match="not found: .*nope.gguf"):
        models.load_gguf(missing)


def test_corrupt_gguf_is_named(tmp_path):
    bad = tmp_path / "bad.gguf"
    bad.write_bytes(b"not a gguf file at all" * 100)
    with pytest.raises(models.ModelFileError, match="bad.gguf is not a GGUF file"):
        models.load_gguf(bad)


@pytest.mark.slow
def test_truncated_gguf_is_named(tmp_path):
    src = gguf_io.locate_smollm2()
    cut = tmp_path / "truncated.gguf"
    with open(src, "rb") as f:
        cut.write_bytes(f.read(5_000_000))  # header intact, tensor data cut off
    with pytest.raises(models.ModelFileError, match="truncated.gguf"):
        gguf_io.read_gguf(cut)


def test_corrupt_cache_is_detected(tmp_path):
    (tmp_path / "a.bin").write_bytes(b"hello")
    (tmp_path / "manifest.json").write_text(json.dumps({"a.bin": "0" * 64}))
    assert "fails its sha256 check" in gguf_io._check_manifest(tmp_path, tmp_path / "manifest.json")
    (tmp_path / "manifest.json").write_text(json.dumps({"b.bin": "0" * 64}))
    assert "missing" in gguf_io._check_manifest(tmp_path, tmp_path / "manifest.json")


# --------------------------------------------------------------------- generation


# Why teacher forcing and a tolerance: the cached decoder and the full forward are different
# compiled programs, so their float32 logits differ in the last bits; on a random tiny model two
# logits can nearly tie, and comparing argmax ids run against run would then bet on rounding.
LOGIT_TOL = 1e-4  # float32 logits of order 1, summed in another order by another program


@functools.partial(jax.jit, static_argnames=("arch", "cfg"))
def _cached_step(arch, params, tokens, cfg, cache, positions):
    out = core.forward(arch, params, tokens, cfg, cache=cache, positions=positions)
    return out.logits[0, -1], out.cache


def _cached_next_logits(model, prompt, continuation):
    """Next-token logits [len(continuation) + 1, V] from KV-cached decoding teacher-forced on
    `continuation`: a prefill of the prompt, then one cached step per token (as generation)."""
    cache = core.init_cache(model.cfg, 1, 64)
    step = functools.partial(_cached_step, model.arch, model.params, cfg=model.cfg)
    row, cache = step(jnp.asarray([prompt], jnp.int32), cache=cache,
                      positions=jnp.arange(len(prompt), dtype=jnp.int32))
    rows = [row]
    for i, tok in enumerate(continuation):
        row, cache = step(jnp.asarray([[tok]], jnp.int32), cache=cache,
                          positions=jnp.asarray([len(prompt) + i], jnp.int32))
        rows.append(row)
    return np.asarray(jnp.stack(rows))


def _full_next_logits(model, prompt, continuation):
    """The same rows from one full (uncached) forward over prompt + continuation."""
    logits = np.asarray(model.forward([list(prompt) + list(continuation)]).logits[0])
    return logits[len(prompt) - 1:]


def _assert_greedy_up_to_ties(model, logits, ids):
    """Each id is the most likely allowed token of its logits row, up to a float32 near tie."""
    allowed = logits.copy()
    allowed[:, list(model.never_sample)] = -np.inf
    chosen = allowed[np.arange(len(ids)), ids]
    np.testing.assert_array_less(allowed.max(-1) - chosen, LOGIT_TOL)


def test_kv_cache_decoding_matches_full_forward(tiny):
    prompt = tiny.tokenizer.encode("a cache test")  # 12-13 tokens: past the tiny 8-token window
    got = tiny.generate(prompt, max_new_tokens=10, stop_tokens=())
    assert len(got) == 10
    full = _full_next_logits(tiny, prompt, got)
    cached = _cached_next_logits(tiny, prompt, got)
    np.testing.assert_allclose(cached, full, rtol=LOGIT_TOL, atol=LOGIT_TOL)
    assert np.abs(full).max() > 0.1  # not a comparison of near-zero logits
    _assert_greedy_up_to_ties(tiny, full[:-1], got)


def test_sampling_is_deterministic_for_a_seed(tiny):
    kw = dict(max_new_tokens=12, temperature=1.5, stop_tokens=())
    a = tiny.generate("seed", seed=3, **kw)
    assert a == tiny.generate("seed", seed=3, **kw)  # exact: same program, inputs and key
    others = {tiny.generate("seed", seed=s, **kw) for s in range(4, 8)}
    assert len(others | {a}) > 1


def test_sampling_options(tiny):
    prompt = tiny.tokenizer.encode("options")
    greedy = tiny.generate(prompt, max_new_tokens=8, stop_tokens=())
    # a vanishing nucleus keeps only the most likely token: greedy again (checked against
    # teacher-forced logits: the sampling program may break a near tie the other way)
    nucleus = tiny.generate(prompt, max_new_tokens=8, temperature=1.0, top_p=1e-6, seed=1,
                            stop_tokens=())
    _assert_greedy_up_to_ties(tiny, _full_next_logits(tiny, prompt, nucleus)[:-1], nucleus)
    # stop tokens end generation (and are included); exact: the same compiled greedy program
    # on the same inputs picks the same first token
    assert tiny.generate(prompt, max_new_tokens=8, stop_tokens=(greedy[0],)) == greedy[:1]
    # a huge frequency penalty forbids repeats
    no_repeat = tiny.generate(prompt, max_new_tokens=20, frequency_penalty=1e4, stop_tokens=())
    assert len(set(no_repeat)) == len(no_repeat)


def test_never_sample_mask(tiny):
    prompt = tiny.tokenizer.encode("mask")
    first = tiny.generate(prompt, max_new_tokens=1, stop_tokens=())[0]
    masked = models.Model(tiny.name, tiny.cfg, tiny.params, tiny.tokenizer,
                          tuple(tiny.never_sample) + (first,))
    out = masked.generate(prompt, max_new_tokens=30, temperature=2.0, seed=0, stop_tokens=())
    assert first not in out and not set(out) & set(masked.never_sample)


def test_generation_rejects_bad_options(tiny):
    with pytest.raises(ValueError, match="top_p"):
        tiny.generate("x", top_p=0.0)


def test_cli_topk_and_info_on_tiny_model():
    env = dict(os.environ, JAX_PLATFORMS="cpu")
    r = subprocess.run([sys.executable, "-m", "interp.models", "topk", "tiny-llama", "hi!", "--k", "3"],
                       capture_output=True, text=True, env=env, timeout=300)
    assert r.returncode == 0, r.stderr
    out = json.loads(r.stdout)
    assert out["ids"] == [104, 105, 33]
    assert len(out["topk"]) == 3 and all(len(row) == 3 for row in out["topk"])
    r = subprocess.run([sys.executable, "-m", "interp.models", "info", "nonsense"],
                       capture_output=True, text=True, env=env, timeout=300)
    assert r.returncode == 2 and "unknown model 'nonsense'" in r.stderr


# --------------------------------------------------------------------- real models vs llama.cpp

REAL = ["smollm2-135m", "gemma3-270m"]


@pytest.fixture(scope="module", params=REAL)
def real(request):
    return models.load(request.param, progress=False)


def _reference(name):
    with np.load(FIXTURES / f"llamacpp_logits_{name}.npz") as z:
        keys = sorted({k.split(".")[0] for k in z.files})
        return {k: {f: z[f"{k}.{f}"] for f in ("ids", "top_ids", "top_logits")} for k in keys}


@pytest.mark.slow
def test_logits_agree_with_llama_cpp(real):
    ref = _reference(real.name)
    assert "long" in ref and len(ref["long"]["ids"]) > 600
    hits = []
    # the short prompts run as one right-padded batch (causal attention: padding after a
    # prompt cannot change its logits), so there are only two compiled shapes
    short = [k for k in ref if k != "long"]
    width = 64
    assert all(len(ref[k]["ids"]) <= width for k in short)
    batch = np.zeros((len(short), width), np.int32)
    for row, k in enumerate(short):
        batch[row, : len(ref[k]["ids"])] = ref[k]["ids"]
    short_logits = np.asarray(real.forward(batch).logits)
    for key, r in ref.items():
        ids = [int(i) for i in r["ids"]]
        assert ids == real.tokenizer.encode(_prompt_text(key)), key
        if key == "long":
            logits = np.asarray(real.forward([ids]).logits[0])
        else:
            logits = short_logits[short.index(key), : len(ids)]
        ours = np.argsort(-logits, axis=-1)[:, :10]
        # identical top-10 next tokens after the prompt
        assert set(ours[-1]) == set(r["top_ids"][-1]), key
        hits.append(ours[:, 0] == r["top_ids"][:, 0])
        # the logit values are close too (llama.cpp quantises activations to 8 bits)
        mine = np.take_along_axis(logits, r["top_ids"].astype(np.int64), -1)
        assert np.abs(mine - r["top_logits"].astype(np.float32)).mean() < 0.5, key
        if key == "long":  # past Gemma's 512-token window as well as before it
            assert hits[-1][:512].mean() >= 0.95 and hits[-1][512:].mean() >= 0.95
    # top-1 agreement over all positions of all prompts
    assert np.concatenate(hits).mean() >= 0.95


def _prompt_text(key):
    sys.path.insert(0, str(FIXTURES))
    from reference_texts import LONG_PROSE, PROMPTS

    return LONG_PROSE if key == "long" else PROMPTS[key]


@pytest.mark.slow
def test_paris(real):
    text = real.generate("The capital of France is", max_new_tokens=3)
    if real.name == "smollm2-135m":
        assert text.startswith(" Paris")
    top5 = real.topk(real.tokenizer.encode("The capital of France is"), 5)[-1]
    assert real.tokenizer.encode(" Paris", add_bos=False)[0] in top5


@pytest.mark.slow
def test_cached_load_is_fast_and_identical():
    import time

    t = time.perf_counter()
    again = models.load_gguf(gguf_io.locate_smollm2(), progress=False)
    assert time.perf_counter() - t < 60  # converted weights come from the cache
    first = models.load("smollm2-135m", progress=False)
    for a, b in zip(jax.tree.leaves(first.params), jax.tree.leaves(again.params)):
        np.testing.assert_array_equal(np.asarray(a), np.asarray(b))  # exact: stored copies


@pytest.mark.slow
def test_cli_generate_paris():
    env = dict(os.environ, JAX_PLATFORMS="cpu")
    r = subprocess.run([sys.executable, "-m", "interp.models", "generate", "smollm2-135m",
                        "The capital of France is", "--max-new-tokens", "3"],
                       capture_output=True, text=True, env=env, timeout=600, cwd=REPO)
    assert r.returncode == 0, r.stderr[-2000:]
    assert r.stdout.startswith(" Paris")


def test_config_layer_constants_for_gemma():
    cfg = models.gemma3.config_from_gguf({
        "gemma3.embedding_length": 640, "gemma3.block_count": 18, "gemma3.feed_forward_length": 2048,
        "gemma3.attention.head_count": 4, "gemma3.attention.head_count_kv": 1,
        "gemma3.attention.key_length": 256, "tokenizer.ggml.tokens": ["a"] * 10,
        "gemma3.attention.layer_norm_rms_epsilon": 1e-6, "gemma3.rope.freq_base": 1e6,
        "gemma3.context_length": 32768})
    c = cfg.layer_constants()
    glob = [i for i in range(18) if cfg.is_global(i)]
    assert glob == [5, 11, 17]
    assert c["rope_base"][5] == 1e6 and c["rope_base"][0] == 1e4
    assert c["window"][0] == 512 and c["window"][5] > 32768


def test_init_cache_shape():
    cfg = models.llama.TINY
    cache = core.init_cache(cfg, 2, 64)
    assert cache["k"].shape == (cfg.n_layers, 2, 64, cfg.n_kv_heads, cfg.head_dim)
    assert jnp.all(cache["v"] == 0)  # exact: written as zeros


@pytest.mark.parametrize("name", ["tiny-llama", "tiny-gemma3"])
def test_forward_over_zero_layers(name):
    """stop_at_layer=0 returns the embeddings; start_at_layer=n_layers runs only the head."""
    from interp import hooks

    m = models.load(name)
    toks = jnp.asarray([[1, 5, 7, 9]])
    emb = m.forward(toks, hooks=hooks.capture("embed"), stop_at_layer=0)
    np.testing.assert_array_equal(emb.resid, emb.captures["embed"])  # exact: one value, twice
    n = m.cfg.n_layers
    full = m.forward(toks)
    head_only = m.forward(None, start_at_layer=n, resid=full.resid)
    np.testing.assert_allclose(head_only.logits, full.logits, rtol=1e-5, atol=1e-5)


def test_compiled_forward_count_counts_new_programs_only():
    """The public counter the infrastructure page reads: a new shape compiles once, a repeat
    with the same shape and new values does not."""
    tiny = models.load("tiny-llama")
    tiny.forward([[1, 2, 3, 4, 5, 6, 7]])
    before = models.compiled_forward_count()
    tiny.forward([[7, 6, 5, 4, 3, 2, 1]])
    assert models.compiled_forward_count() == before
    tiny.forward([[1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11]])
    assert models.compiled_forward_count() == before + 1
