"""interp.data.store: round trip, resumption, corruption, shuffling, caching, sharding."""

import json
import os
import subprocess
import sys
from pathlib import Path

import jax
import jax.numpy as jnp
import ml_dtypes
import numpy as np
import pytest

from interp.data import store as st

VOCAB, T, D = 97, 12, 16


def make_model(seed=0):
    """A small random causal network: embeddings, a causal running mean, two named sites.
    Position 0 is scaled up like a real model's BOS residual."""
    k1, k2, k3 = jax.random.split(jax.random.PRNGKey(seed), 3)
    emb = jax.random.normal(k1, (VOCAB, D))
    w1 = jax.random.normal(k2, (D, D)) / np.sqrt(D)
    w2 = jax.random.normal(k3, (D, 2 * D)) / np.sqrt(D)

    def fn(tokens):
        x = emb[tokens]
        mix = jnp.cumsum(x, axis=1) / jnp.arange(1, tokens.shape[1] + 1)[None, :, None]
        h = jnp.tanh(mix @ w1) + x
        h = h.at[:, 0].multiply(50.0)
        return {"blocks.0.resid": h, "blocks.1/mlp_out": jnp.tanh(h @ w2)}

    return fn


def make_tokens(n=21, seed=1):
    rng = np.random.default_rng(seed)
    tokens = rng.integers(1, VOCAB, size=(n, T), dtype=np.int32)
    tokens[:, 0] = 0  # BOS
    return tokens


def harvest(tmp_path, name="s", **kw):
    args = dict(model="toy-0", corpus_revision="rev-test", batch_size=4, contexts_per_shard=5,
                path=tmp_path / name, progress=False)
    args.update(kw)
    fn = args.pop("fn", None) or make_model()
    tokens = args.pop("tokens", None)
    return st.harvest(fn, make_tokens() if tokens is None else tokens, **args)


@pytest.mark.parametrize("dtype", ["bfloat16", "float16"])
def test_round_trip_matches_direct_forward_within_storage_dtype(tmp_path, dtype):
    store = harvest(tmp_path, dtype=dtype)
    direct = jax.jit(make_model())(make_tokens())
    np_dtype = st.STORAGE_DTYPES[dtype]
    for site in ("blocks.0.resid", "blocks.1/mlp_out"):
        got = store.read(site)
        want = np.asarray(direct[site], np.float32)
        assert got.dtype == np.float32 and got.shape == want.shape
        # equal to the direct pass rounded to the storage dtype (up to float reassociation)
        rounded = want.astype(np_dtype).astype(np.float32)
        eps = float(ml_dtypes.finfo(np_dtype).eps)
        np.testing.assert_allclose(got, rounded, rtol=eps, atol=eps * 1e-2)
        np.testing.assert_allclose(got, want, rtol=eps, atol=eps * 1e-2 * 4)
        assert np.abs(got - want).max() > 0  # really stored at reduced precision
    np.testing.assert_array_equal(store.tokens(), make_tokens())
    np.testing.assert_allclose(store.read("blocks.0.resid", 3, 13),
                               store.read("blocks.0.resid")[3:13])


def test_manifest_records_what_the_issue_asks(tmp_path):
    store = harvest(tmp_path)
    m = json.loads((store.path / "manifest.json").read_text())
    assert m["model"] == "toy-0" and m["corpus_revision"] == "rev-test"
    assert m["dtype"] == "bfloat16" and m["token_count"] == 21 * T
    assert m["sites"] == {"blocks.0.resid": D, "blocks.1/mlp_out": 2 * D}
    assert m["n_shards"] == 5 and m["complete"]  # 21 contexts, 5 per shard
    files = [f for s in m["shards"].values() for f in s["files"]]
    assert len(files) == 5 * 3 and all(len(s["files"][f]["sha256"]) == 64
                                       for s in m["shards"].values() for f in s["files"])
    assert "blocks.1_mlp_out/shard-00004.bin" in files  # site names made path-safe


def _shard_digests(store):
    return {f: e["sha256"] for s in store.manifest["shards"].values()
            for f, e in s["files"].items()}


def test_resume_after_interruption_gives_the_same_store(tmp_path):
    full = harvest(tmp_path, "full")

    class Interrupted(Exception):
        pass

    def stop_after_two(index):
        if index == 1:
            raise Interrupted

    with pytest.raises(Interrupted):
        harvest(tmp_path, "resumed", on_shard=stop_after_two)
    with pytest.raises(st.IncompleteStoreError, match="resume"):
        st.open_store(tmp_path / "resumed")
    # a crash mid-shard leaves a partial file behind; resumption must discard it
    (tmp_path / "resumed/blocks.0.resid/.shard-00002.bin.partial").write_bytes(b"junk")
    done = []
    resumed = harvest(tmp_path, "resumed", batch_size=3, on_shard=done.append)
    assert done == [2, 3, 4]  # only the missing shards were harvested
    assert _shard_digests(resumed) == _shard_digests(full)
    assert not list((tmp_path / "resumed").glob("*/.*.partial"))


def test_flipped_byte_and_truncation_are_reported_by_name_and_rebuilt(tmp_path):
    store = harvest(tmp_path)
    good = _shard_digests(store)
    victim = store.path / "blocks.1_mlp_out/shard-00003.bin"
    data = bytearray(victim.read_bytes())
    data[100] ^= 0x01
    victim.write_bytes(bytes(data))
    short = store.path / "tokens/shard-00001.bin"
    short.write_bytes(short.read_bytes()[:-3])

    with pytest.raises(st.CorruptShardError) as err:
        store.verify()
    assert set(err.value.problems) == {"blocks.1_mlp_out/shard-00003.bin",
                                       "tokens/shard-00001.bin"}
    assert "checksum" in err.value.problems["blocks.1_mlp_out/shard-00003.bin"]
    assert "truncated" in err.value.problems["tokens/shard-00001.bin"]
    assert "blocks.1_mlp_out/shard-00003.bin" in str(err.value)
    with pytest.raises(st.CorruptShardError, match="shard-00003"):
        list(store.batches("blocks.1/mlp_out", 7, seed=0))

    rebuilt_shards = []
    repaired = harvest(tmp_path, verify=True, on_shard=rebuilt_shards.append)
    assert rebuilt_shards == [1, 3]
    repaired.verify()
    assert _shard_digests(repaired) == good


def _flip_byte(file, offset=100):
    data = bytearray(file.read_bytes())
    data[offset] ^= 0x01
    file.write_bytes(bytes(data))


def _edit_manifest(store_path, edit):
    manifest = json.loads((store_path / "manifest.json").read_text())
    edit(manifest)
    (store_path / "manifest.json").write_text(json.dumps(manifest))


@pytest.mark.parametrize("damage", ["{not json", "[1, 2]", '{"format": 1}'])
def test_a_damaged_manifest_is_named_and_harvest_rebuilds_it_keeping_good_shards(tmp_path,
                                                                                 damage):
    store = harvest(tmp_path)
    good = _shard_digests(store)
    (store.path / "manifest.json").write_text(damage)
    with pytest.raises(st.CorruptStoreError, match="manifest.json is damaged") as err:
        st.open_store(store.path)
    assert isinstance(err.value, ValueError)
    assert f"delete {store.path}" in str(err.value) and "harvest" in str(err.value)

    _flip_byte(store.path / "blocks.0.resid/shard-00002.bin")  # the one shard to redo
    rebuilt = []
    with pytest.warns(UserWarning, match="keeping 4 of 5 shards"):
        repaired = harvest(tmp_path, on_shard=rebuilt.append)
    assert rebuilt == [2]
    repaired.verify()
    assert _shard_digests(repaired) == good
    assert st.open_store(store.path).manifest["complete"]


def test_a_manifest_missing_a_shard_entry_is_named_and_the_shard_recovered(tmp_path):
    store = harvest(tmp_path)
    good = _shard_digests(store)
    _edit_manifest(store.path, lambda m: m["shards"].pop("3"))
    with pytest.raises(st.CorruptStoreError, match=r"no entry for shard\(s\) 3 of 5"):
        st.open_store(store.path)
    rebuilt = []
    with pytest.warns(UserWarning, match="keeping 5 of 5"):
        harvest(tmp_path, on_shard=rebuilt.append)  # the shard's own record restores it
    assert rebuilt == []
    # without the record (a store from before records existed) the shard is harvested again
    _edit_manifest(store.path, lambda m: m["shards"].pop("3"))
    (store.path / "tokens/shard-00003.json").unlink()
    with pytest.warns(UserWarning, match="keeping 4 of 5"):
        repaired = harvest(tmp_path, on_shard=rebuilt.append)
    assert rebuilt == [3]
    assert _shard_digests(repaired) == good
    # a mangled entry (wrong size) is damage too, not a KeyError or a silently wrong read
    _edit_manifest(store.path, lambda m: m["shards"]["1"]["files"]["tokens/shard-00001.bin"]
                   .update(bytes=7))
    with pytest.raises(st.CorruptStoreError, match="shard 1: entry of tokens/shard-00001.bin"):
        st.open_store(store.path)


def test_records_of_another_store_are_not_overwritten(tmp_path):
    store = harvest(tmp_path)
    (store.path / "manifest.json").write_text("garbage")
    with pytest.raises(st.StoreMismatchError, match=f"delete {store.path}"):
        harvest(tmp_path, model="another-model")
    assert (store.path / "blocks.0.resid/shard-00000.bin").exists()


def test_reads_outside_the_store_name_the_range_and_the_size(tmp_path):
    store = harvest(tmp_path)  # 21 contexts
    for start, stop in [(-1, 3), (0, 22), (5, 3), (30, None)]:
        with pytest.raises(ValueError, match=r"contexts \[0, 21\)"):
            store.read("blocks.0.resid", start, stop)
    assert store.read("blocks.0.resid", 4, 4).shape == (0, T, D)
    whole = store.read("blocks.0.resid")
    np.testing.assert_array_equal(store.read("blocks.0.resid", 20), whole[20:])  # exact: stored
    with pytest.raises(ValueError, match="site 'nope' not in store"):
        store.read("nope")
    with pytest.raises(ValueError, match="buffer_rows must be positive"):
        list(store.batches("blocks.0.resid", 4, seed=0, buffer_rows=0))


def test_a_flipped_byte_is_caught_on_load_and_the_advice_works(tmp_path):
    store = harvest(tmp_path)
    store.read("blocks.0.resid")  # verified once ...
    victim = store.path / "blocks.0.resid/shard-00001.bin"
    data = bytearray(victim.read_bytes())
    data[7] ^= 0x80
    replacement = victim.with_name("replacement")
    replacement.write_bytes(bytes(data))
    os.replace(replacement, victim)  # ... a rewritten file is hashed again
    with pytest.raises(st.CorruptStoreError, match="shard-00001.bin: checksum") as err:
        store.read("blocks.0.resid", 5, 6)
    assert isinstance(err.value, ValueError) and isinstance(err.value, st.CorruptShardError)
    assert "verify=True" in str(err.value) and "lm_sae.activations" in str(err.value)
    rebuilt = []
    harvest(tmp_path, verify=True, on_shard=rebuilt.append).read("blocks.0.resid")
    assert rebuilt == [1]


def test_lm_sae_activations_accepts_the_advised_verify(tmp_path, monkeypatch):
    """The repair a CorruptShardError advises works through lm_sae.activations too."""
    from types import SimpleNamespace

    from interp import lm_sae, models
    from interp.data import corpus, packing

    model = models.load("tiny-llama")
    monkeypatch.setenv("INTERP_CACHE", str(tmp_path))
    monkeypatch.setattr(corpus, "load", lambda: SimpleNamespace(revision="fake-rev"))
    monkeypatch.setattr(packing, "packed_split",
                        lambda split, tok, t, n, **kw: _model_tokens(model, n, t, seed=len(split)))
    args = dict(n_tokens=60, context_len=16, heldout_contexts=2, batch_size=4, progress=False)
    acts = lm_sae.activations("tiny-llama", "blocks.1.resid_post", **args)
    shard = next(acts.store.path.glob("blocks.1.resid_post/shard-*.bin"))
    _flip_byte(shard)
    with pytest.raises(st.CorruptShardError, match="verify=True"):
        acts.store.read("blocks.1.resid_post")
    rebuilt = []
    repaired = lm_sae.activations("tiny-llama", "blocks.1.resid_post", verify=True,
                                  on_shard=rebuilt.append, **args)
    assert rebuilt == [0] and repaired.store.path == acts.store.path
    repaired.store.verify()


def _id_model(tokens):
    """Each activation row encodes its (context, position) id exactly in bfloat16."""
    ids = tokens.astype(jnp.float32)
    return {"ids": jnp.stack([ids // 32, ids % 32], axis=-1)}


def _decode(batch):
    return (batch[:, 0] * 32 + batch[:, 1]).astype(np.int64)


@pytest.mark.parametrize("drop_bos", [True, False])
def test_shuffle_serves_every_row_exactly_once_per_epoch(tmp_path, drop_bos):
    n = 23
    tokens = np.arange(n * T, dtype=np.int32).reshape(n, T)  # token value = row id
    store = harvest(tmp_path, fn=_id_model, tokens=tokens, contexts_per_shard=4)
    expected = tokens[:, 1:] if drop_bos else tokens
    epochs = []
    for epoch in (0, 1):
        batches = list(store.batches("ids", 10, seed=3, epoch=epoch, drop_bos=drop_bos,
                                     buffer_rows=60))
        assert all(b.dtype == np.float32 and b.shape[1] == 2 for b in batches)
        assert all(len(b) == 10 for b in batches[:-1])
        served = np.concatenate([_decode(b) for b in batches])
        assert len(served) == store.num_rows(drop_bos) == expected.size
        np.testing.assert_array_equal(np.sort(served), np.sort(expected.ravel()))
        epochs.append(served)
    assert not np.array_equal(epochs[0], epochs[1])  # a new order each epoch
    assert not np.array_equal(epochs[0], np.sort(epochs[0]))  # really shuffled
    again = np.concatenate([_decode(b) for b in store.batches(
        "ids", 10, seed=3, epoch=0, drop_bos=drop_bos, buffer_rows=60)])
    np.testing.assert_array_equal(again, epochs[0])  # seeded
    dropped = list(store.batches("ids", 10, seed=3, drop_remainder=True, drop_bos=drop_bos))
    assert all(len(b) == 10 for b in dropped) and sum(map(len, dropped)) == expected.size // 10 * 10


def test_drop_bos_removes_the_huge_norm_position_and_sites_stay_aligned(tmp_path):
    store = harvest(tmp_path)
    norms = np.linalg.norm(store.read("blocks.0.resid"), axis=-1)
    assert norms[:, 0].mean() > 20 * norms[:, 1:].mean()
    served = np.concatenate(list(store.batches("blocks.0.resid", 16, seed=0, drop_bos=True)))
    assert np.linalg.norm(served, axis=-1).max() < norms[:, 0].min()
    both = list(store.batches(["blocks.0.resid", "blocks.1/mlp_out"], 16, seed=0))
    assert set(both[0]) == {"blocks.0.resid", "blocks.1/mlp_out"}
    np.testing.assert_array_equal(np.concatenate([b["blocks.0.resid"] for b in both]), served)


def test_stores_are_shared_through_the_content_addressed_cache(tmp_path, monkeypatch):
    monkeypatch.setenv("INTERP_CACHE", str(tmp_path / "cache"))
    calls = []
    first = harvest(tmp_path, path=None, on_shard=calls.append)
    second = harvest(tmp_path, path=None, on_shard=calls.append)
    assert first.path == second.path and first.path.is_relative_to(tmp_path / "cache")
    assert calls == [0, 1, 2, 3, 4]  # the second request reused the first harvest
    other_dtype = harvest(tmp_path, path=None, dtype="float16")
    other_model = harvest(tmp_path, path=None, model="toy-1")
    other_tokens = harvest(tmp_path, path=None, tokens=make_tokens(seed=9))
    assert len({first.path, other_dtype.path, other_model.path, other_tokens.path}) == 4


def test_bad_requests_are_explained(tmp_path):
    with pytest.raises(ValueError, match="unknown storage dtype 'float8'"):
        harvest(tmp_path, dtype="float8")
    with pytest.raises(KeyError, match="does not return sites"):
        harvest(tmp_path, sites=["nope"])
    harvest(tmp_path, "taken")
    with pytest.raises(st.StoreMismatchError, match="model"):
        harvest(tmp_path, "taken", model="another")
    store = st.open_store(tmp_path / "taken")
    with pytest.raises(KeyError, match="not in store"):
        store.read("nope")
    with pytest.raises(FileNotFoundError):
        st.open_store(tmp_path / "absent")


MULTI_DEVICE = r"""
import json, sys
import jax, numpy as np
sys.path.insert(0, sys.argv[2])
import test_data_store as t
from interp.data import store as st
assert len(jax.devices()) == 4, jax.devices()
s = st.harvest(t.make_model(), t.make_tokens(), model="toy-0", corpus_revision="rev-test",
               batch_size=6, contexts_per_shard=5, path=sys.argv[1], progress=False)
from interp import models
from interp.data import model_sites
m = models.load("tiny-llama")
s2 = model_sites.harvest_model(m, t._model_tokens(m, 7, 16), ["blocks.2.resid_post"],
                               corpus_revision="r", batch_size=4, contexts_per_shard=3,
                               path=sys.argv[1] + "_model", progress=False)
assert s2.manifest["harvest"]["devices"] == 4
print(json.dumps(s.manifest["harvest"]))
"""


def test_harvest_splits_batches_across_forced_cpu_devices(tmp_path):
    env = {**os.environ, "XLA_FLAGS": "--xla_force_host_platform_device_count=4",
           "JAX_PLATFORMS": "cpu"}
    out = subprocess.run([sys.executable, "-c", MULTI_DEVICE, str(tmp_path / "multi"),
                          str(Path(__file__).parent)], env=env, capture_output=True, text=True,
                         timeout=300)
    assert out.returncode == 0, out.stderr[-2000:]
    info = json.loads(out.stdout.strip().splitlines()[-1])
    assert info["devices"] == 4 and info["batch_size"] == 8  # 6 padded to a multiple of 4
    multi = st.open_store(tmp_path / "multi")
    single = harvest(tmp_path, "single")
    for site in single.sites:
        eps = float(ml_dtypes.finfo(ml_dtypes.bfloat16).eps)
        np.testing.assert_allclose(multi.read(site), single.read(site), rtol=eps, atol=1e-3)
    # the model adapter passes weights as (replicated) jit arguments; same values as one device
    from interp import hooks, models

    model = models.load("tiny-llama")
    direct = model.forward(_model_tokens(model, 7, 16), hooks=hooks.capture(
        "resid_post", layers=2)).captures["resid_post"][0]
    got = st.open_store(str(tmp_path / "multi") + "_model").read("blocks.2.resid_post")
    w = np.asarray(direct, np.float32)
    np.testing.assert_allclose(got, w, rtol=2e-2, atol=1e-2 * np.abs(w).max())


def _model_tokens(model, n, t, seed=0):
    rng = np.random.default_rng(seed)
    tokens = rng.integers(0, 256, size=(n, t), dtype=np.int32)  # ordinary (byte-range) ids
    tokens[:, 0] = model.cfg.bos_id
    return tokens


def test_model_adapter_round_trip_on_the_tiny_twin(tmp_path):
    from interp import hooks, models
    from interp.data import model_sites

    model = models.load("tiny-llama")
    tokens = _model_tokens(model, 9, 16)
    sites = ["blocks.1.resid_post", "blocks.3.resid_post", "blocks.2.mlp_out", "embed"]
    store = model_sites.harvest_model(model, tokens, sites, corpus_revision="r", dtype="float16",
                                      batch_size=4, contexts_per_shard=4, path=tmp_path / "m",
                                      progress=False)
    assert store.spec.model.startswith("tiny-llama@")
    direct = model.forward(tokens, hooks=hooks.Hooks.of(
        hooks.capture("resid_post", layers=(1, 3)), hooks.capture("mlp_out", layers=2),
        hooks.capture("embed"))).captures
    want = {"blocks.1.resid_post": direct["resid_post"][0],
            "blocks.3.resid_post": direct["resid_post"][1],
            "blocks.2.mlp_out": direct["mlp_out"][0], "embed": direct["embed"]}
    for name in sites:
        w = np.asarray(want[name], np.float32)
        np.testing.assert_allclose(store.read(name), w, rtol=2e-3, atol=2e-3 * np.abs(w).max())
    with pytest.raises(KeyError, match="valid sites"):
        model_sites.activation_fn(model, ["blocks.1.nonsense"])
    with pytest.raises(KeyError, match="layer 9"):
        model_sites.activation_fn(model, ["blocks.9.resid_post"])


@pytest.mark.slow
def test_real_model_store_matches_a_direct_forward_pass(tmp_path):
    from interp import hooks, models
    from interp.data import model_sites

    model = models.load("smollm2-135m", progress=False)
    text = (Path(__file__).parent / "fixtures/text/moby_dick_chapter_1.txt").read_text()
    from interp.data.packing import pack

    tokens = pack([text], model.tokenizer, 64, max_contexts=6)
    store = model_sites.harvest_model(model, tokens, ["blocks.6.resid_post"], corpus_revision="f",
                                      batch_size=4, contexts_per_shard=4, path=tmp_path / "r",
                                      progress=False)
    direct = np.asarray(model.forward(tokens, hooks=hooks.capture("resid_post", layers=6))
                        .captures["resid_post"][0], np.float32)
    got = store.read("blocks.6.resid_post")
    eps = float(ml_dtypes.finfo(ml_dtypes.bfloat16).eps)
    scale = np.abs(direct).max(axis=-1, keepdims=True)
    assert np.abs(got - direct).max() > 0
    assert (np.abs(got - direct) <= eps * scale + 1e-6).all()
    norms = np.linalg.norm(direct, axis=-1)
    assert norms[:, 0].mean() > 5 * np.median(norms[:, 1:])  # why drop_bos exists
