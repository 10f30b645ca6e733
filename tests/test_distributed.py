"""interp.distributed: SAE training and harvesting across 2 local processes (jax.distributed,
gloo CPU collectives, 2 forced CPU devices each) agree with one process; a harvest whose
process was killed completes on a rerun with no row lost or written twice.

Every multi-process run is spawned on 127.0.0.1 with a free port, bounded by a deadline, and
all its processes are killed when one fails, when time runs out, or when the test fails.
"""

import json
import os
import signal
import socket
import subprocess
import sys
import textwrap
import time

import ml_dtypes
import numpy as np
import pytest

from interp import distributed
from interp.data import store as st

SITE = "blocks.1.resid_post"
DEADLINE_S = 420  # per spawn; a loaded or single-core machine is several times slower
ENV = {**os.environ, "XLA_FLAGS": "--xla_force_host_platform_device_count=2",
       "JAX_PLATFORMS": "cpu"}
# float32 tolerance for parameters after 8 Adam steps computed with a different reduction
# order (gloo all-reduce across processes vs XLA's in-process one), as in test_sae_sharding
RTOL, ATOL = 1e-4, 1e-5
BF16_EPS = float(ml_dtypes.finfo(ml_dtypes.bfloat16).eps)
CONFIG = {"d_in": 64, "d_sae": 128, "batch_size": 64, "steps": 8, "lr": 1e-2,
          "lr_warmup_steps": 2, "l1_coeff": 0.01, "dead_window_steps": 3,
          "dead_strategy": "resample", "resample_at": [0.5], "input_normalisation": "sqrt_d",
          "seed": 3}


# --------------------------------------------------------------------------- spawning
def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _process_args(port, i, n=2):
    return ["--coordinator", f"127.0.0.1:{port}", "--num-processes", str(n),
            "--process-id", str(i), "--init-timeout", "120"]


class Group:
    """n local processes started together, their output in files; killed (whole process
    groups) when the `with` block ends, so a failing test leaves nothing running."""

    def __init__(self, tmp_path, name, commands, env=ENV):
        self.logs = [tmp_path / f"{name}-{i}.log" for i in range(len(commands))]
        self.procs = []
        for cmd, log in zip(commands, self.logs):
            with open(log, "w") as out:
                self.procs.append(subprocess.Popen(cmd, env=env, stdout=out,
                                                   stderr=subprocess.STDOUT,
                                                   start_new_session=True))
        self.start = time.monotonic()

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.kill()

    def kill(self, i=None):
        for p in self.procs if i is None else [self.procs[i]]:
            if p.poll() is None:
                os.killpg(p.pid, signal.SIGKILL)
            p.wait()

    def output(self, i) -> str:
        return self.logs[i].read_text(errors="replace")

    def wait(self, which=None, deadline_s=DEADLINE_S):
        """Wait for processes `which` (default all) to exit; the first failure kills the rest."""
        which = range(len(self.procs)) if which is None else which
        while True:
            codes = [self.procs[i].poll() for i in which]
            failed = [i for i, c in zip(which, codes) if c not in (None, 0)]
            if failed or all(c is not None for c in codes):
                break
            if time.monotonic() - self.start > deadline_s:
                self.kill()
                pytest.fail(f"processes still running after {deadline_s} s:\n" + self._tails())
            time.sleep(0.1)
        return [self.procs[i].returncode for i in which]

    def check(self):
        codes = self.wait()
        if any(codes):
            self.kill()
            pytest.fail(f"exit codes {codes}:\n" + self._tails())
        return [self.output(i) for i in range(len(self.procs))]

    def _tails(self):
        return "\n".join(f"--- process {i}:\n{self.output(i)[-3000:]}"
                         for i in range(len(self.procs)))


def _last_json(text: str) -> dict:
    return json.loads([line for line in text.splitlines() if line.startswith("{")][-1])


# --------------------------------------------------------------------------- fixtures
@pytest.fixture(scope="module")
def tiny():
    from interp import models
    return models.load("tiny-llama", progress=False)


def _tokens(model, n, t=16, seed=0):
    rng = np.random.default_rng(seed)
    tokens = rng.integers(0, 256, size=(n, t), dtype=np.int32)  # byte ids of the tiny twin
    tokens[:, 0] = model.cfg.bos_id
    return tokens


def _harvest_here(model, tokens, path, contexts_per_shard):
    """The one-process reference: the store the CLI must reproduce (same spec)."""
    from interp.data import model_sites

    return st.harvest(model_sites.activation_fn(model, [SITE], with_params=True), tokens,
                      params=model.params, model=model_sites.model_id(model),
                      corpus_revision="tokens-file", contexts_per_shard=contexts_per_shard,
                      batch_size=4, path=path, progress=False)


@pytest.fixture(scope="module")
def train_store(tiny, tmp_path_factory):
    """64 contexts x 15 non-BOS rows in 16 shards: 8 per process, 480 rows per part."""
    return _harvest_here(tiny, _tokens(tiny, 64, seed=1), tmp_path_factory.mktemp("s") / "st", 4)


def _assert_same_rows(got, want):
    assert got.manifest["complete"] and got.spec == want.spec
    np.testing.assert_array_equal(got.tokens(), want.tokens())  # exact: integer token ids
    # activations: one bf16 rounding apart at most (a forward pass with another device count)
    np.testing.assert_allclose(got.read(SITE), want.read(SITE), rtol=BF16_EPS, atol=1e-3)


def _harvest_cmd(tokens_file, out, *extra):
    return [sys.executable, "-m", "interp.data", "harvest", "--model", "tiny-llama", "--site",
            SITE, "--tokens", str(tokens_file), "--out", str(out), "--contexts-per-shard", "3",
            "--batch-size", "4", "--quiet", *extra]


# --------------------------------------------------------------------------- in one process
def test_initialize_names_what_is_missing(monkeypatch):
    for var in (distributed.ENV_COORDINATOR, distributed.ENV_NUM_PROCESSES,
                distributed.ENV_PROCESS_ID):
        monkeypatch.delenv(var, raising=False)
    assert distributed.initialize() == (0, 1)  # nothing given: one process, nothing joined
    with pytest.raises(ValueError, match="coordinator's address"):
        distributed.initialize(num_processes=2, process_id=0)
    with pytest.raises(ValueError, match="this process's id"):
        distributed.initialize("127.0.0.1:1", num_processes=2)
    with pytest.raises(ValueError, match=r"outside 0\.\.1"):
        distributed.initialize("127.0.0.1:1", 2, 2)
    monkeypatch.setenv(distributed.ENV_NUM_PROCESSES, "two")
    with pytest.raises(ValueError, match="INTERP_NUM_PROCESSES='two'"):
        distributed.initialize()


def test_parts_of_the_store_split_every_epoch_without_overlap(train_store):
    from interp import lm_sae

    per_epoch = train_store.num_rows()  # 960 rows; 15 batches of 32 per part
    parts = [np.concatenate(list(distributed.local_batches(
        train_store, SITE, 64, 15, seed=0, part=p, parts=2))) for p in (0, 1)]
    assert [len(x) for x in parts] == [per_epoch // 2] * 2
    rows = np.concatenate(parts)
    everything = np.concatenate(list(train_store.batches(SITE, 960, seed=0)))
    # the two parts together serve every row of the store exactly once (as multisets: a few
    # rows are equal, e.g. position 1 of contexts that start with the same token)
    assert len(everything) == per_epoch
    assert sorted(r.tobytes() for r in rows) == sorted(r.tobytes() for r in everything)
    # one part is exactly the one-process training stream
    one = list(distributed.local_batches(train_store, SITE, 64, 20, seed=5))
    ref = list(lm_sae.training_batches(train_store, SITE, 64, 20, seed=5))
    assert len(one) == len(ref) == 20
    for a, b in zip(one, ref):
        np.testing.assert_array_equal(a, b)  # exact: the same stored rows in the same order
    with pytest.raises(ValueError, match="fewer than the 32 data-parallel processes"):
        distributed.local_batches(train_store, SITE, 64, 1, seed=0, part=0, parts=32)


def test_harvest_parts_then_complete_equals_one_harvest(tiny, tmp_path):
    from interp.data import model_sites

    tokens = _tokens(tiny, 10)
    ref = _harvest_here(tiny, tokens, tmp_path / "one", 3)
    kw = {"params": tiny.params, "model": model_sites.model_id(tiny),
          "corpus_revision": "tokens-file", "contexts_per_shard": 3, "batch_size": 4,
          "path": tmp_path / "parts", "progress": False}
    fn = model_sites.activation_fn(tiny, [SITE], with_params=True)
    done = []
    spec = st.harvest_part(fn, tokens, part=1, parts=2, on_shard=done.append, **kw)
    assert done == [1, 3]
    with pytest.raises(st.IncompleteStoreError, match=r"shard\(s\) 0, 2 of 4.*part\(s\) 0 of 2"):
        st.complete_harvest(spec, tmp_path / "parts", processes=2)
    st.harvest_part(fn, tokens, part=1, parts=2, on_shard=done.append, **kw)
    assert done == [1, 3]  # a rerun part skips the shards it finished
    st.harvest_part(fn, tokens, part=0, parts=2, on_shard=done.append, **kw)
    store = st.complete_harvest(spec, tmp_path / "parts", processes=2)
    assert done == [1, 3, 0, 2] and store.manifest["harvest"] == {"processes": 2}
    _assert_same_rows(store, ref)
    with pytest.raises(ValueError, match="0 <= part < parts"):
        st.harvest_part(fn, tokens, part=2, parts=2, **kw)


# --------------------------------------------------------------------------- two processes
TRAIN_WORKER = textwrap.dedent("""
    import json, sys
    from interp import distributed
    pid, port, store_path, cfg_path, out_a, out_c = sys.argv[1:7]
    distributed.initialize(f"127.0.0.1:{port}", 2, int(pid), timeout_s=120)
    import jax
    from interp import sae
    from interp.data import open_store
    from interp.sae import checkpoint
    saves, save = [], checkpoint.save_checkpoint
    checkpoint.save_checkpoint = lambda *a, **k: saves.append(1) or save(*a, **k)
    store, site = open_store(store_path), "SITE"
    cfg = sae.SAEConfig.from_dict(json.load(open(cfg_path)))
    # finish the run that `python -m interp.sae train --stop-after 4` left at step 4
    distributed.train_on_store(store, site, cfg, out_a, mesh=sae.make_mesh(), checkpoint_every=2,
                               log_every=4, progress=False)
    # latents split over each process's 2 devices, the batch over the 2 processes
    state, _ = distributed.train_on_store(store, site, cfg, out_c, mesh=sae.make_mesh(n_feature=2),
                                          checkpoint_every=4, log_every=4, progress=False)
    print(json.dumps({"process": jax.process_index(), "saves": len(saves),
                      "latents_split": state.params["W_enc"].sharding.spec
                      == jax.sharding.PartitionSpec(None, "feature")}))
""").replace("SITE", SITE)

REFERENCE = textwrap.dedent("""
    import json, sys
    import numpy as np
    from interp import distributed, sae
    from interp.data import open_store
    store_path, cfg_path, out_a, result = sys.argv[1:5]
    import jax
    assert len(jax.devices()) == 4 and jax.process_count() == 1, jax.devices()
    store, site = open_store(store_path), "SITE"
    cfg = sae.SAEConfig.from_dict(json.load(open(cfg_path)))

    def both_parts():  # what the 2 processes feed together: part 0's rows, then part 1's
        parts = [distributed.local_batches(store, site, cfg.batch_size, cfg.steps, seed=cfg.seed,
                                           part=p, parts=2) for p in (0, 1)]
        return (np.concatenate(pair) for pair in zip(*parts))

    out = {}
    for n_feature in (1, 2):
        state, history = sae.train(cfg, both_parts(), mesh=sae.make_mesh(n_feature=n_feature),
                                   progress=False, log_every=4)
        out.update({f"nf{n_feature}/{k}": np.asarray(v) for k, v in state.params.items()})
        out[f"nf{n_feature}/loss"] = np.asarray(history["loss"])
    one = distributed.local_batches(store, site, cfg.batch_size, cfg.steps, seed=cfg.seed)
    state, _ = sae.train(cfg, one, mesh=sae.make_mesh(), progress=False)  # another data order
    out.update({f"one_part/{k}": np.asarray(v) for k, v in state.params.items()})
    np.savez(result, **out)
    try:  # the 2-process run cannot be resumed by 1 process
        distributed.train_on_store(store, site, cfg, out_a, mesh=sae.make_mesh(), progress=False)
    except ValueError as e:
        print(json.dumps({"error": str(e)}))
""").replace("SITE", SITE)


def test_two_process_training_equals_one_process_on_four_devices(train_store, tmp_path):
    from interp.sae import load_checkpoint

    cfg_file = tmp_path / "sae.json"
    cfg_file.write_text(json.dumps(CONFIG))
    out_a, out_c = tmp_path / "a", tmp_path / "c"
    port = _free_port()
    cli = [sys.executable, "-m", "interp.sae", "train", "--store", str(train_store.path),
           "--config", str(cfg_file), "--out", str(out_a), "--checkpoint-every", "2",
           "--log-every", "4", "--stop-after", "4", "--quiet"]
    with Group(tmp_path, "cli", [cli + _process_args(port, i) for i in (0, 1)]) as g:
        first = _last_json(g.check()[0])
    assert first["processes"] == 2 and first["step"] == 4
    assert first["mesh"] == {"data": 4, "feature": 1}
    assert load_checkpoint(out_a)[0].step == 4
    assert json.loads((out_a / "run.json").read_text())["value"]["processes"] == 2

    port = _free_port()
    worker = [[sys.executable, "-c", TRAIN_WORKER, str(i), str(port), str(train_store.path),
               str(cfg_file), str(out_a), str(out_c)] for i in (0, 1)]
    with Group(tmp_path, "worker", worker) as g:
        reports = [_last_json(text) for text in g.check()]
    assert reports[1]["saves"] == 0 < reports[0]["saves"]  # process 0 alone writes
    assert all(r["latents_split"] for r in reports)

    result = tmp_path / "reference.npz"
    ref_cmd = [sys.executable, "-c", REFERENCE, str(train_store.path), str(cfg_file),
               str(out_a), str(result)]
    env = {**ENV, "XLA_FLAGS": "--xla_force_host_platform_device_count=4"}
    with Group(tmp_path, "reference", [ref_cmd], env=env) as g:
        error = _last_json(g.check()[0])["error"]
    assert "process count mismatch" in error and "--num-processes 2" in error
    ref = np.load(result)

    for tag, out in (("nf1", out_a), ("nf2", out_c)):
        state, config, history, _ = load_checkpoint(out)
        assert int(state.step) == CONFIG["steps"] and config.to_dict()["seed"] == CONFIG["seed"]
        for name, value in state.params.items():
            np.testing.assert_allclose(np.asarray(value), ref[f"{tag}/{name}"], rtol=RTOL,
                                       atol=ATOL, err_msg=f"{tag} {name}")
        np.testing.assert_allclose(history["loss"], ref[f"{tag}/loss"], rtol=RTOL)
        # the comparison can fail: one process reading the store in one part trains another SAE
        gap = np.abs(np.asarray(state.params["W_enc"]) - ref["one_part/W_enc"]).max()
        assert gap > 100 * ATOL, gap


def test_two_process_harvest_equals_one_process_harvest(tiny, tmp_path):
    tokens = _tokens(tiny, 24)
    np.save(tmp_path / "tokens.npy", tokens)
    ref = _harvest_here(tiny, tokens, tmp_path / "one", 3)
    port = _free_port()
    cmds = [_harvest_cmd(tmp_path / "tokens.npy", tmp_path / "two", *_process_args(port, i))
            for i in (0, 1)]
    with Group(tmp_path, "harvest", cmds) as g:
        report = _last_json(g.check()[0])
    assert report == {"store": str(tmp_path / "two"), "processes": 2, "contexts": 24,
                      "shards": 8}
    store = st.open_store(tmp_path / "two")
    assert store.manifest["harvest"]["processes"] == 2
    _assert_same_rows(store, ref)


KILLED_WORKER = textwrap.dedent("""
    import os, signal, sys
    import numpy as np
    from interp import distributed
    pid, port, tokens, out = sys.argv[1:5]
    distributed.initialize(f"127.0.0.1:{port}", 2, int(pid), timeout_s=120)
    from interp import models
    from interp.data import model_sites
    model = models.load("tiny-llama", progress=False)

    def die(index):  # process 1 is killed right after committing its first shard
        if int(pid) == 1:
            os.kill(os.getpid(), signal.SIGKILL)

    distributed.harvest(model_sites.activation_fn(model, ["SITE"], with_params=True),
                        np.load(tokens), params=model.params, model=model_sites.model_id(model),
                        corpus_revision="tokens-file", contexts_per_shard=3, batch_size=4,
                        path=out, progress=False, on_shard=die)
""").replace("SITE", SITE)


def test_a_killed_harvest_completes_on_rerun_without_lost_or_repeated_rows(tiny, tmp_path):
    tokens = _tokens(tiny, 24)
    np.save(tmp_path / "tokens.npy", tokens)
    out = tmp_path / "store"
    port = _free_port()
    cmds = [[sys.executable, "-c", KILLED_WORKER, str(i), str(port), str(tmp_path / "tokens.npy"),
             str(out)] for i in (0, 1)]
    with Group(tmp_path, "killed", cmds) as g:
        assert g.wait(which=[1]) == [-signal.SIGKILL], g.output(1)[-3000:]
        g.kill(0)  # process 0 is left waiting for it at the barrier, or still harvesting
    records = {p.name: p.stat().st_mtime_ns for p in (out / "tokens").glob("shard-*.json")}
    assert "shard-00001.json" in records and "shard-00003.json" not in records
    assert not (out / "manifest.json").exists()  # only process 0 writes it, after every part
    with pytest.raises(FileNotFoundError):
        st.open_store(out)

    port = _free_port()
    cmds = [_harvest_cmd(tmp_path / "tokens.npy", out, *_process_args(port, i)) for i in (0, 1)]
    with Group(tmp_path, "rerun", cmds) as g:
        g.check()
    store = st.open_store(out)
    for name, mtime in records.items():  # finished shards were kept, not harvested again
        assert (out / "tokens" / name).stat().st_mtime_ns == mtime, name
    assert not list(out.glob("*/.*.partial"))
    np.testing.assert_array_equal(store.tokens(), tokens)  # every row once, in order
    _assert_same_rows(store, _harvest_here(tiny, tokens, tmp_path / "one", 3))
