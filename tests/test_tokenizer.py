"""Tokenizers built from GGUF metadata: llama.cpp's ids on a varied sample, exact round trips."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from interp import models

FIXTURE = Path(__file__).parent / "fixtures" / "tokenizer_reference.json"


@pytest.fixture(scope="module")
def reference():
    return json.loads(FIXTURE.read_text())


@pytest.mark.slow
@pytest.mark.parametrize("name", ["smollm2-135m", "gemma3-270m"])
def test_same_ids_as_llama_cpp(name, reference):
    tok = models.load(name, progress=False).tokenizer
    expected = reference["ids"][name]
    assert len(expected) == len(reference["texts"]) >= 20
    for text, ids in zip(reference["texts"], expected):
        assert tok.encode(text) == ids, text


@pytest.mark.slow
@pytest.mark.parametrize("name", ["smollm2-135m", "gemma3-270m"])
def test_exact_round_trip(name, reference):
    tok = models.load(name, progress=False).tokenizer
    for text in reference["texts"]:
        assert tok.decode(tok.encode(text, add_bos=False)) == text


@pytest.mark.slow
def test_special_tokens_only_when_asked():
    tok = models.load("smollm2-135m", progress=False).tokenizer
    chat = "<|im_start|>user\nhi<|im_end|>"
    parsed = tok.encode(chat, parse_special=True)
    assert parsed[0] == tok.hf.token_to_id("<|im_start|>") and len(parsed) < len(tok.encode(chat))
    assert tok.decode(tok.encode(chat)) == chat


@pytest.mark.slow
def test_gemma_bos_and_whitespace_runs():
    tok = models.load("gemma3-270m", progress=False).tokenizer
    ids = tok.encode("  Double")
    assert ids[0] == tok.bos_id == 2
    assert [tok.token(i) for i in ids[1:]] == ["  ", "Double"]


@pytest.mark.parametrize("name", ["tiny-llama", "tiny-gemma3"])
def test_tiny_byte_tokenizer_round_trip(name):
    tok = models.load(name).tokenizer
    text = "héllo 世界 🎉\n\t<bos>"
    ids = tok.encode(text, add_bos=False)
    assert ids == list(text.encode("utf-8"))
    assert tok.decode(ids) == text
