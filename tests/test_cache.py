"""interp.cache: stable content hashes and atomic writes."""

import os

from interp import cache


def test_content_hash_is_stable_and_order_insensitive_for_dicts():
    a = cache.content_hash({"b": 1, "a": [1, 2]}, "x")
    assert a == cache.content_hash({"a": [1, 2], "b": 1}, "x")
    assert a != cache.content_hash({"a": [1, 2], "b": 2}, "x")
    assert len(a) == 16


def test_cache_dir_lives_under_the_configured_root(tmp_path, monkeypatch):
    monkeypatch.setenv(cache.CACHE_ENV, str(tmp_path))
    d = cache.cache_dir("models", "abc")
    assert d == tmp_path / "models" / "abc" and d.is_dir()


def test_atomic_write_leaves_no_temporary_file(tmp_path):
    target = tmp_path / "w.bin"
    cache.atomic_write_bytes(target, b"hello")
    assert target.read_bytes() == b"hello"
    assert os.listdir(tmp_path) == ["w.bin"]
    assert cache.file_sha256(target) == (
        "2cf24dba5fb0a30e26e83b2ac5b9e29e1b161e5c1fa7425e73043362938b9824")


# --------------------------------------------------------------------- checked artifacts
import json  # noqa: E402
from pathlib import Path  # noqa: E402

import numpy as np  # noqa: E402
import pytest  # noqa: E402


def test_checked_json_round_trips_and_names_a_flipped_byte(tmp_path):
    path = tmp_path / "r.json"
    value = {"seconds": 12.5, "fvu": [0.25, 0.125], "name": "x"}
    cache.write_checked_json(path, value)
    assert cache.read_checked_json(path) == value
    path.write_text(path.read_text().replace("12.5", "12.6"))
    with pytest.raises(cache.CorruptCacheError, match=r"r.json: contents fail their sha256 "
                                                      r"check\. Delete .*r.json to recompute"):
        cache.read_checked_json(path)
    path.write_text(json.dumps(value))  # an unchecked file is not trusted either
    with pytest.raises(cache.CorruptCacheError, match="no checksum"):
        cache.read_checked_json(path, delete=tmp_path)
    path.write_bytes(b"\xff{")
    with pytest.raises(cache.CorruptCacheError, match=f"unreadable JSON.*Delete {tmp_path} "):
        cache.read_checked_json(path, delete=tmp_path)


class _TinyStore:
    """Just enough of an ActivationStore for `lm_sae.train_cached`: 256 fixed random rows."""

    path = Path("tiny-store-for-cache-tests")
    rows = np.random.default_rng(0).normal(size=(256, 8)).astype(np.float32)

    def num_rows(self):
        return len(self.rows)

    def batches(self, site, batch_size, *, seed, epoch, drop_remainder):
        order = np.random.default_rng((seed, epoch)).permutation(len(self.rows))
        for lo in range(0, len(order) - batch_size + 1, batch_size):
            yield self.rows[order[lo:lo + batch_size]]


@pytest.fixture()
def cached_run(tmp_path, monkeypatch):
    """A tiny vmapped sweep trained into a fresh cache: (acts, config, sweep, run folder)."""
    from interp import lm_sae, sae

    monkeypatch.setenv(cache.CACHE_ENV, str(tmp_path))
    acts = lm_sae.Activations(None, "site", _TinyStore(), np.zeros((1, 2), np.int32))
    config = sae.SAEConfig(d_in=8, d_sae=16, batch_size=32, steps=6, lr_warmup_steps=1,
                           dead_window_steps=3)
    sweep = {"l1_coeff": [1e-3, 1e-2]}
    first = lm_sae.train_cached(acts, config, sweep, log_every=3, progress=False)
    assert not first.from_cache
    (folder,) = (tmp_path / "sae-runs").iterdir()
    return acts, config, sweep, folder


def test_train_cached_reloads_a_checked_run(cached_run):
    from interp import lm_sae

    acts, config, sweep, folder = cached_run
    again = lm_sae.train_cached(acts, config, sweep, log_every=3, progress=False)
    assert again.from_cache and again.seconds > 0 and len(again.saes()) == 2


@pytest.mark.parametrize("damage", ["checkpoint byte", "done.json", "checkpoint missing"])
def test_train_cached_names_the_folder_of_a_damaged_run(cached_run, damage):
    from interp import lm_sae
    from interp.sae import checkpoint

    acts, config, sweep, folder = cached_run
    ckpt = folder / checkpoint.CHECKPOINT_FILE
    if damage == "checkpoint byte":
        raw = bytearray(ckpt.read_bytes())
        raw[-10] ^= 0x01  # inside the last array's data
        ckpt.write_bytes(bytes(raw))
    elif damage == "done.json":
        done = folder / "done.json"
        done.write_text(done.read_text().replace('"seconds": ', '"seconds": 1'))
    else:
        ckpt.unlink()
    with pytest.raises(cache.CorruptCacheError, match=f"Delete {folder} to train it again"):
        lm_sae.train_cached(acts, config, sweep, log_every=3, progress=False)
