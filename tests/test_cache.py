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
