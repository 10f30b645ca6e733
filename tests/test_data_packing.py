"""interp.data.packing: fixed-length BOS contexts from the committed public-domain fixture."""

import json
from pathlib import Path

import numpy as np
import pytest
from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers

from interp.data import corpus as corpus_mod
from interp.data import packing

FIXTURE = Path(__file__).parent / "fixtures" / "text"
BOS = 1


def fixture_texts():
    return [p.read_text() for p in sorted(FIXTURE.glob("*.txt"))]


class BPE:
    """A small byte-level BPE trained on the fixture (stands in for the GGUF tokenizers)."""

    def __init__(self, vocab_size=400, add_bos=False):
        tok = Tokenizer(models.BPE())
        tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
        tok.decoder = decoders.ByteLevel()
        trainer = trainers.BpeTrainer(vocab_size=vocab_size, special_tokens=["<pad>", "<bos>"],
                                      initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
                                      show_progress=False)
        tok.train_from_iterator(fixture_texts(), trainer)
        self.tok, self.bos_id, self.add_bos = tok, tok.token_to_id("<bos>"), add_bos
        assert self.bos_id == BOS

    def encode(self, text):
        ids = self.tok.encode(text).ids
        return [self.bos_id, *ids] if self.add_bos else ids


@pytest.fixture(scope="module")
def tokenizer():
    return BPE()


def test_contexts_start_with_bos_and_hold_the_token_stream_in_order(tokenizer):
    texts = fixture_texts()
    rows = packing.pack(texts, tokenizer, context_length=32)
    assert rows.dtype == np.int32 and rows.shape[1] == 32
    assert (rows[:, 0] == BOS).all() and (rows[:, 1:] != BOS).all()
    sep = tokenizer.encode("\n\n")
    stream = []
    for i, text in enumerate(texts):
        stream += (sep if i else []) + tokenizer.encode(text)
    assert len(rows) == len(stream) // 31  # only the final partial context is dropped
    np.testing.assert_array_equal(rows[:, 1:].ravel(), stream[: len(rows) * 31])
    # the tokens decode back to the fixture text
    assert tokenizer.tok.decode(rows[0, 1:].tolist()) in texts[0]


def test_max_contexts_and_a_tokenizer_that_adds_its_own_bos(tokenizer):
    plain = packing.pack(fixture_texts(), tokenizer, 16, max_contexts=5)
    adds = packing.pack(fixture_texts(), BPE(add_bos=True), 16, max_contexts=5)
    assert plain.shape == (5, 16)
    np.testing.assert_array_equal(plain, adds)  # the tokenizer's BOS was not duplicated
    explicit = packing.pack(fixture_texts(), tokenizer.tok, 16, max_contexts=5, bos_id=BOS)
    np.testing.assert_array_equal(plain, explicit)  # a raw `tokenizers.Tokenizer` works too


def test_bad_packing_requests_are_explained(tokenizer):
    with pytest.raises(ValueError, match="at least 2"):
        packing.pack(["text"], tokenizer, 1)
    with pytest.raises(ValueError, match="fewer than"):
        packing.pack(["short"], tokenizer, 512)
    with pytest.raises(ValueError, match="bos_id"):
        packing.pack(["text"], tokenizer.tok, 8)
    with pytest.raises(TypeError, match="encode"):
        packing.pack(["text"], object(), 8, bos_id=1)


def test_fingerprint_identifies_tokenizers_by_behaviour(tokenizer):
    assert packing.tokenizer_fingerprint(tokenizer) == packing.tokenizer_fingerprint(BPE())
    assert packing.tokenizer_fingerprint(tokenizer) != packing.tokenizer_fingerprint(
        BPE(vocab_size=300))


def test_packed_split_is_cached_per_revision_and_tokenizer(tmp_path, monkeypatch, tokenizer):
    monkeypatch.setenv("INTERP_CACHE", str(tmp_path / "cache"))
    folder = tmp_path / "corpus"
    folder.mkdir()
    with open(folder / "train.jsonl", "w") as f:
        for i, text in enumerate(fixture_texts()):
            doc = {"source": "fixture", "id": str(i), "text": text, "meta": {}}
            f.write(json.dumps(doc) + "\n")
    corpus = corpus_mod.Corpus(folder, {"revision": "fixture-rev"})
    tokens = packing.packed_split("train", tokenizer, 24, 10, corpus=corpus, progress=False)
    np.testing.assert_array_equal(tokens, packing.pack(fixture_texts(), tokenizer, 24,
                                                       max_contexts=10))
    (folder / "train.jsonl").write_text("")  # a second call must not re-read the corpus
    again = packing.packed_split("train", tokenizer, 24, 10, corpus=corpus, progress=False)
    np.testing.assert_array_equal(again, tokens)
    with pytest.raises(ValueError, match="fewer than"):
        packing.packed_split("train", tokenizer, 24, 11, corpus=corpus, progress=False)


def test_a_flipped_byte_in_cached_tokens_is_caught_and_repacked(tmp_path, monkeypatch,
                                                                 tokenizer):
    """A damaged tokens.npy must never reach a model as wrong token ids: it fails its sha256
    check, is named in a warning and re-packed from the corpus."""
    monkeypatch.setenv("INTERP_CACHE", str(tmp_path / "cache"))
    folder = tmp_path / "corpus"
    folder.mkdir()
    with open(folder / "train.jsonl", "w") as f:
        for i, text in enumerate(fixture_texts()):
            f.write(json.dumps({"source": "fixture", "id": str(i), "text": text, "meta": {}})
                    + "\n")
    corpus = corpus_mod.Corpus(folder, {"revision": "fixture-rev"})
    tokens = packing.packed_split("train", tokenizer, 24, 10, corpus=corpus, progress=False)
    (path,) = (tmp_path / "cache" / "tokens").glob("*/tokens.npy")
    data = bytearray(path.read_bytes())
    data[-3] ^= 0x01  # inside the last token id
    path.write_bytes(bytes(data))
    with pytest.warns(UserWarning, match="tokens.npy: cached packed tokens fail their sha256"):
        again = packing.packed_split("train", tokenizer, 24, 10, corpus=corpus, progress=False)
    np.testing.assert_array_equal(again, tokens)  # integer token ids: exact
    assert path.read_bytes() != bytes(data)  # the repaired file replaced the damaged one
