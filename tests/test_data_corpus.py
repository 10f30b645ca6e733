"""interp.data.corpus / readers / fetch: pinned, checksummed, document-split corpus."""

import hashlib
import json
import sys

import pytest

from interp.data import corpus, fetch, readers


def test_brown_tags_are_stripped_and_spacing_repaired():
    line = ("The/at jury/nn said/vbd ``/`` no/at evidence/nn ''/'' was/bedz found/vbn ,/, "
            "and/cc Atlanta's/np$ mayor/nn (/( Hartsfield/np )/) didn't/do* agree/vb ./.")
    assert readers.detokenise_brown(line) == (
        'The jury said "no evidence" was found, and Atlanta\'s mayor (Hartsfield) '
        "didn't agree.")


def test_wikitext_markup_is_removed_and_link_text_kept():
    raw = ("{{Infobox person|name=X|born={{birth date|1809|2|12}}}}\n'''Abraham Lincoln''' "
           "(&lt;ref&gt;cite&lt;/ref&gt;February 12, 1809) was the 16th [[President of the "
           "United States|President]] of the [[United States]].<ref name=a>Source</ref>\n"
           "[[File:Lincoln.jpg|thumb|A [[photograph]] of Lincoln]]\n== Early life ==\n"
           "* Born in [[Kentucky]]<!-- hidden -->\n{| class=wikitable\n| cell\n|}\n"
           "[http://example.org an external link] [[Category:Presidents]] [[de:Abraham Lincoln]]")
    assert readers.clean_wikitext(raw) == (
        "Abraham Lincoln (February 12, 1809) was the 16th President of the United States.\n\n"
        "Early life\nBorn in Kentucky\n\nan external link")


def test_heldout_choice_depends_on_the_document_only():
    ids = [f"doc{i}" for i in range(2000)]
    held = {i for i in ids if corpus.is_heldout(7, "src", i, 10)}
    assert 150 < len(held) < 250  # about 10%
    assert held == {i for i in reversed(ids) if corpus.is_heldout(7, "src", i, 10)}
    assert held != {i for i in ids if corpus.is_heldout(8, "src", i, 10)}  # seeded


def test_cap_keeps_whole_documents_deterministically():
    docs = [readers.Document("s", str(i), "x" * (100 + i)) for i in range(50)]
    kept = corpus.apply_cap(docs, 1000, seed=1)
    assert sum(len(d.text) for d in kept) <= 1000 and len(kept) >= 7
    assert kept == corpus.apply_cap(list(reversed(docs)), 1000, seed=1)


def _fake_client(monkeypatch, tmp_path, script):
    monkeypatch.setenv("INTERP_CACHE", str(tmp_path))
    monkeypatch.setattr(fetch, "_download_command",
                        lambda a, dest: [sys.executable, "-c", script, a.filename])


def test_a_download_with_the_wrong_checksum_is_rejected_naming_the_source(tmp_path, monkeypatch):
    _fake_client(monkeypatch, tmp_path, "import sys; open(sys.argv[1], 'w').write('tampered')")
    art = fetch.Artifact("pypi", "somepkg", "1.0", "somepkg-1.0.whl", "0" * 64)
    with pytest.raises(fetch.FetchError, match=r"pypi:somepkg==1.0: checksum mismatch"):
        fetch.fetch(art)
    assert not (fetch.downloads_dir() / art.filename).exists()  # nothing unverified is kept
    good = fetch.Artifact("pypi", "somepkg", "1.0", "somepkg-1.0.whl",
                          hashlib.sha256(b"tampered").hexdigest())
    path = fetch.fetch(good)
    assert path.read_bytes() == b"tampered"
    path.write_bytes(b"truncat")  # a damaged cached copy is detected and fetched again
    assert fetch.fetch(good).read_bytes() == b"tampered"


def test_a_failing_client_gives_an_error_naming_the_source(tmp_path, monkeypatch):
    _fake_client(monkeypatch, tmp_path, "import sys; sys.exit('no such version')")
    art = fetch.Artifact("npm", "corpus-x", "9.9", "corpus-x-9.9.tgz", "0" * 64)
    with pytest.raises(fetch.FetchError, match=r"npm:corpus-x==9.9: download failed.*no such"):
        fetch.fetch(art)


def test_manifest_pins_every_source_and_records_a_licence():
    manifest = corpus.load_manifest()
    names = [s["name"] for s in manifest["sources"]]
    assert sorted(names) == sorted(readers.READERS)
    for src in manifest["sources"]:
        art = fetch.Artifact.from_json(src["artifact"])
        assert len(art.sha256) == 64 and art.version and src["licence"]
    assert {s["split"] for s in manifest["sources"]} == {"train", "ood"}
    with pytest.raises(ValueError, match="unknown artifact fields"):
        fetch.Artifact.from_json({**manifest["sources"][0]["artifact"], "url": "x"})


def test_missing_corpus_and_corrupt_split_are_explained(tmp_path, monkeypatch):
    monkeypatch.setenv("INTERP_CACHE", str(tmp_path))
    with pytest.raises(corpus.CorpusNotFetched, match="python -m interp.data.corpus fetch"):
        corpus.load()
    for split in corpus.SPLITS:
        (tmp_path / f"{split}.jsonl").write_text('{"text": "a"}\n')
    digest = hashlib.sha256(b'{"text": "a"}\n').hexdigest()
    c = corpus.Corpus(tmp_path, {"revision": "r", "splits": {
        s: {"sha256": digest} for s in corpus.SPLITS}})
    c.verify()
    (tmp_path / "heldout.jsonl").write_text('{"text": "b"}\n')
    with pytest.raises(corpus.CorpusCorrupt, match="heldout.jsonl is corrupt"):
        c.verify()


@pytest.fixture(scope="module")
def assembled():
    try:
        return corpus.load()
    except corpus.CorpusNotFetched as e:
        pytest.skip(f"corpus not fetched on this machine ({e}); `make test` fetches it first")


def test_assembled_corpus_is_verified_deterministic_and_split_by_document(assembled):
    assembled.verify()
    manifest = corpus.load_manifest()
    # The pins were recorded from an independent assembly: equal hashes = deterministic output.
    assert {s: v["sha256"] for s, v in assembled.info["splits"].items()} == \
        manifest["assembled_sha256"]
    assert assembled.info["splits"]["train"]["text_bytes"] >= 20e6
    keys, texts = {}, {}
    for split in corpus.SPLITS:
        docs = list(assembled.documents(split))
        keys[split] = {(d["source"], d["id"]) for d in docs}
        texts[split] = {d["text"] for d in docs}
        assert len(keys[split]) == len(docs)
    assert not keys["train"] & keys["heldout"]
    assert not texts["train"] & texts["heldout"]  # no duplicate text crosses the split either
    train_sources = {s for s, _ in keys["train"]}
    assert train_sources == {s for s, _ in keys["heldout"]}
    assert train_sources == {s["name"] for s in manifest["sources"] if s["split"] == "train"}
    assert not train_sources & {s for s, _ in keys["ood"]}
    assert len(train_sources) >= 6  # encyclopedic, speeches, fiction, drama, informal, ...
    info = json.loads((assembled.path / "corpus.json").read_text())
    for name in train_sources:
        assert info["sources"][name]["licence"]


def _damaged_info(tmp_path, monkeypatch, text):
    monkeypatch.setenv("INTERP_CACHE", str(tmp_path))
    path = corpus.corpus_path()
    path.mkdir(parents=True)
    (path / "corpus.json").write_text(text)
    return path


@pytest.mark.parametrize("text, problem", [
    ('{"revision": "r", "spl', "not valid JSON"),
    ("[]", "a JSON list, not an object"),
    ('{"revision": "elsewhere"}', "revision 'elsewhere'"),
])
def test_a_damaged_corpus_json_names_the_file_and_the_fix(tmp_path, monkeypatch, capsys, text,
                                                          problem):
    path = _damaged_info(tmp_path, monkeypatch, text)
    with pytest.raises(corpus.CorpusCorrupt) as err:
        corpus.load()
    message = str(err.value)
    assert isinstance(err.value, ValueError)
    assert f"{path / 'corpus.json'} is damaged ({problem}" in message
    assert "python -m interp.data.corpus fetch" in message and f"delete {path}" in message
    assert corpus.main(["verify"]) == 1  # the command line reports it in one line, no traceback
    assert capsys.readouterr().err.strip() == f"error: {message}"


def test_a_corpus_json_missing_a_split_record_is_damage(tmp_path, monkeypatch):
    rev = corpus.revision()
    _damaged_info(tmp_path, monkeypatch, json.dumps(
        {"revision": rev, "splits": {"train": {"sha256": "0" * 64}}, "sources": {}}))
    with pytest.raises(corpus.CorpusCorrupt, match="no valid record of split 'train'"):
        corpus.load()


def _offline_sources(monkeypatch, tmp_path):
    """A two-source manifest whose 'downloads' are in-memory documents."""
    manifest = {"seed": 3, "heldout_percent": 20, "sources": [
        {"name": name, "split": split, "register": "test", "licence": "CC0",
         "artifact": {"registry": "pypi", "package": name, "version": "1", "filename": name,
                      "sha256": "0" * 64}}
        for name, split in (("brown", "train"), ("bbc", "ood"))]}
    docs = {src["name"]: [readers.Document(src["name"], f"d{i}", f"{src['name']} text {i}")
                          for i in range(30)] for src in manifest["sources"]}
    monkeypatch.setenv("INTERP_CACHE", str(tmp_path))
    monkeypatch.setattr(corpus, "load_manifest", lambda: manifest)
    monkeypatch.setattr(corpus, "revision", lambda m=None: "offline-rev")
    monkeypatch.setattr(corpus, "_artifact_path", lambda src: tmp_path)
    monkeypatch.setattr(corpus, "_read_source", lambda src: docs[src["name"]])


def test_fetch_reassembles_a_damaged_corpus_json(tmp_path, monkeypatch, capsys):
    _offline_sources(monkeypatch, tmp_path)
    first = corpus.assemble(progress=False)
    (first.path / "corpus.json").write_text("{broken")
    with pytest.raises(corpus.CorpusCorrupt):
        corpus.load("offline-rev")
    again = corpus.assemble(progress=False)
    assert "corpus.json is damaged" in capsys.readouterr().err
    again.verify()
    assert again.info == first.info  # the same corpus, rebuilt from the cached sources


def test_a_corrupt_split_line_and_a_broken_manifest_are_named(tmp_path):
    (tmp_path / "train.jsonl").write_text('{"text": "a"}\n{"text": \n')
    docs = corpus.Corpus(tmp_path, {"revision": "r"}).documents("train")
    assert next(docs) == {"text": "a"}
    with pytest.raises(corpus.CorpusCorrupt, match=r"train.jsonl line 2 is not valid JSON"):
        next(docs)
    bad = tmp_path / "sources.json"
    bad.write_text('{"sources": [{"name": "brown"}]}')
    with pytest.raises(ValueError, match=r"sources.json: sources \[0\] lack"):
        corpus.load_manifest(bad)
    bad.write_text("{")
    with pytest.raises(ValueError, match="sources.json is not a valid corpus manifest"):
        corpus.load_manifest(bad)
