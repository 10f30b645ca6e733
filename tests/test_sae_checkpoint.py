"""SAE checkpoint integrity: every kind of damage to a saved checkpoint raises one named error
(`CorruptCheckpointError`) that names the file and what to delete, instead of loading wrong
weights silently or failing later inside JAX; non-finite parameters are never written."""

import json
import struct

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from safetensors.numpy import load as st_load
from safetensors.numpy import save as st_save

from interp import cache, sae
from interp.sae import checkpoint


def cfg(**kw):
    base = dict(d_in=8, d_sae=16, batch_size=32, steps=6, lr=1e-2, lr_warmup_steps=2,
                l1_coeff=0.02, dead_window_steps=4)
    base.update(kw)
    return sae.SAEConfig(**base)


def data():
    return sae.SparseDictionaryData(d_in=8, n_features=16, batch_size=32, mean_active=2)


@pytest.fixture()
def saved(tmp_path):
    """A freshly trained and checkpointed tiny SAE: (folder, file, state, config)."""
    c = cfg()
    state, _ = sae.train(c, data(), progress=False, log_every=3, checkpoint_dir=tmp_path)
    return tmp_path, tmp_path / checkpoint.CHECKPOINT_FILE, state, c


def read(path):
    """(arrays, metadata) of a safetensors file."""
    raw = path.read_bytes()
    (n,) = struct.unpack("<Q", raw[:8])
    metadata = json.loads(raw[8:8 + n])["__metadata__"]
    return st_load(raw), metadata


def data_offset(path, name):
    """Byte offset in the file of the first data byte of array `name`."""
    raw = path.read_bytes()
    (n,) = struct.unpack("<Q", raw[:8])
    return 8 + n + json.loads(raw[8:8 + n])[name]["data_offsets"][0]


def flip_byte(path, offset):
    raw = bytearray(path.read_bytes())
    raw[offset] ^= 0x01
    path.write_bytes(bytes(raw))


def as_legacy(metadata):
    """The same metadata in the older checksum-less format."""
    legacy = {k: v for k, v in metadata.items() if k != checkpoint.CHECKSUM_KEY}
    legacy["format"] = checkpoint.LEGACY_FORMATS[0]
    return legacy


def test_a_clean_checkpoint_round_trips(saved):
    folder, _, state, c = saved
    loaded, loaded_cfg, _, _ = sae.load_checkpoint(folder)
    assert loaded_cfg == c
    for a, b in zip(jax.tree_util.tree_leaves(loaded), jax.tree_util.tree_leaves(state)):
        np.testing.assert_array_equal(a, b)  # exact: a saved-and-reloaded copy


def test_one_flipped_byte_in_w_dec_is_named(saved):
    folder, path, _, _ = saved
    flip_byte(path, data_offset(path, "params/W_dec") + 5)
    with pytest.raises(sae.CorruptCheckpointError, match="params/W_dec fails its sha256") as e:
        sae.load_checkpoint(folder)
    assert f"Delete {path}" in str(e.value) and e.value.path == path
    assert isinstance(e.value, cache.CorruptCacheError) and isinstance(e.value, ValueError)


def test_one_flipped_byte_in_the_config_metadata_is_named(saved):
    folder, path, _, _ = saved
    arrays, metadata = read(path)
    metadata["config"] = metadata["config"].replace('"l1_coeff": 0.02', '"l1_coeff": 0.03')
    path.write_bytes(st_save(arrays, metadata=metadata))
    with pytest.raises(sae.CorruptCheckpointError, match="metadata .* fails its sha256"):
        sae.load_checkpoint(folder)


@pytest.mark.parametrize("legacy", [False, True], ids=["checksummed", "legacy"])
def test_a_missing_adam_array_is_named(saved, legacy):
    folder, path, _, _ = saved
    arrays, metadata = read(path)
    del arrays["adam_v/W_enc"]
    path.write_bytes(st_save(arrays, metadata=as_legacy(metadata) if legacy else metadata))
    with pytest.warns(UserWarning, match="predates checksums") if legacy else _no_warning():
        with pytest.raises(sae.CorruptCheckpointError, match="lacks array.*adam_v/W_enc"):
            sae.load_checkpoint(folder)


def test_a_config_that_does_not_match_the_arrays_is_named(saved):
    folder, path, _, c = saved
    arrays, metadata = read(path)
    metadata = as_legacy(metadata)  # checksums would catch it first; this checks the shapes
    metadata["config"] = c.replace(d_sae=20).to_json()
    path.write_bytes(st_save(arrays, metadata=metadata))
    with pytest.warns(UserWarning, match="predates checksums"):
        with pytest.raises(sae.CorruptCheckpointError,
                           match=r"params/W_dec is float32\[16, 8\] but its config calls for "
                                 r"float32\[20, 8\]"):
            sae.load_checkpoint(folder)


def test_an_array_of_the_wrong_dtype_is_named(saved):
    folder, path, _, _ = saved
    arrays, metadata = read(path)
    arrays["params/b_dec"] = arrays["params/b_dec"].astype(np.float16)
    path.write_bytes(st_save(arrays, metadata=as_legacy(metadata)))
    with pytest.warns(UserWarning), pytest.raises(sae.CorruptCheckpointError,
                                                  match="params/b_dec is float16"):
        sae.load_checkpoint(folder)


@pytest.mark.parametrize("legacy", [False, True], ids=["checksummed", "legacy"])
def test_metadata_without_config_is_named(saved, legacy):
    folder, path, _, _ = saved
    arrays, metadata = read(path)
    del metadata["config"]
    path.write_bytes(st_save(arrays, metadata=as_legacy(metadata) if legacy else metadata))
    expected = "metadata lacks config" if legacy else "metadata .* fails its sha256"
    with pytest.warns(UserWarning) if legacy else _no_warning():
        with pytest.raises(sae.CorruptCheckpointError, match=expected):
            sae.load_checkpoint(folder)


def test_metadata_with_an_invalid_config_or_format_is_named(saved):
    folder, path, _, _ = saved
    arrays, metadata = read(path)
    path.write_bytes(st_save(arrays, metadata=dict(as_legacy(metadata), config="{not json")))
    with pytest.warns(UserWarning), pytest.raises(sae.CorruptCheckpointError,
                                                  match="invalid config"):
        sae.load_checkpoint(folder)
    path.write_bytes(st_save(arrays))  # no metadata at all
    with pytest.raises(sae.CorruptCheckpointError, match="format=None"):
        sae.load_checkpoint(folder)


def test_a_legacy_checkpoint_still_loads_with_a_warning(saved):
    folder, path, state, c = saved
    arrays, metadata = read(path)
    path.write_bytes(st_save(arrays, metadata=as_legacy(metadata)))
    with pytest.warns(UserWarning, match="predates checksums"):
        loaded, loaded_cfg, _, _ = sae.load_checkpoint(folder)
    assert loaded_cfg == c
    np.testing.assert_array_equal(loaded.params["W_dec"], state.params["W_dec"])  # exact: copy


def test_a_checkpoint_with_nan_parameters_is_refused_and_the_old_one_kept(saved):
    folder, path, state, c = saved
    before = path.read_bytes()
    bad = state._replace(params=dict(state.params, W_dec=state.params["W_dec"].at[3, 2].set(
        jnp.nan)))
    with pytest.raises(sae.NonFiniteParamsError, match="params/W_dec"):
        sae.save_checkpoint(folder, bad, c)
    assert path.read_bytes() == before
    # a NaN that reached the disk anyway (older code) is named on load
    arrays, metadata = read(path)
    arrays["params/W_dec"][3, 2] = np.nan
    path.write_bytes(st_save(arrays, metadata=as_legacy(metadata)))
    with pytest.warns(UserWarning), pytest.raises(sae.CorruptCheckpointError,
                                                  match="non-finite .* params/W_dec"):
        sae.load_checkpoint(folder)


def test_sweep_checkpoints_check_the_stacked_shapes(tmp_path):
    c = cfg()
    sweep = {"l1_coeff": [0.01, 0.05], "seed": [0, 1]}
    sae.train_sweep(c, data(), sweep, progress=False, log_every=3, checkpoint_dir=tmp_path)
    state, _, _, loaded_sweep = sae.load_checkpoint(tmp_path)
    assert loaded_sweep == sweep and state.params["W_dec"].shape == (2, 16, 8)
    path = tmp_path / checkpoint.CHECKPOINT_FILE
    arrays, metadata = read(path)
    metadata = dict(as_legacy(metadata), sweep=json.dumps({"l1_coeff": [0.01, 0.05, 0.1]}))
    path.write_bytes(st_save(arrays, metadata=metadata))
    with pytest.warns(UserWarning), pytest.raises(sae.CorruptCheckpointError,
                                                  match=r"config calls for float32\[3, 16, 8\]"):
        sae.load_checkpoint(tmp_path)


class _no_warning:
    """Context manager: fail on any warning inside (a checksummed file must not warn)."""

    def __enter__(self):
        import warnings
        self._ctx = warnings.catch_warnings()
        self._ctx.__enter__()
        warnings.simplefilter("error")

    def __exit__(self, *exc):
        return self._ctx.__exit__(*exc)
