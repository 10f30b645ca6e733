"""Tokenizers rebuilt from GGUF metadata with HF `tokenizers` (no hub download).

Verified to give exactly llama.cpp's ids (tests/fixtures/tokenizer_reference.json):

* SmolLM2 (`tokenizer.ggml.model = gpt2`, `pre = smollm`): byte-level BPE with the stored merges;
  digits are split one by one before the GPT-2 regex.
* Gemma 3 (`model = llama`): SentencePiece-style BPE. The GGUF stores no merges, so they are
  derived from the scores (a merge ranks by the score of the merged piece, SentencePiece's rule);
  unknown bytes fall back to `<0xNN>` tokens; spaces become U+2581. User-defined pieces (runs of
  spaces, newlines, tabs, `<start_of_image>`, ...) are matched on the raw text *before* that
  normalisation, which is why they are added tokens.

Plain text never parses special-token markup (`"<bos>"` in the text stays text, llama.cpp's
`special=False`); pass `parse_special=True` to encode chat templates.
"""

from __future__ import annotations

import re
from collections.abc import Sequence

import numpy as np
from tokenizers import AddedToken, Tokenizer, decoders, models, normalizers, pre_tokenizers

# llama.cpp token types
NORMAL, UNKNOWN, CONTROL, USER_DEFINED, UNUSED, BYTE = 1, 2, 3, 4, 5, 6

# llama.cpp (llama-vocab.cpp) overrides the type of "control-looking" end-of-text, end-of-turn
# and fill-in-the-middle tokens to CONTROL, whatever the GGUF says, so plain text never matches
# them. Gemma 3's `</s>` (id 212) is stored as user-defined and is affected (seen in the fixture).
FORCED_CONTROL = frozenset({
    "</s>", "<|eot_id|>", "<|im_end|>", "<|end|>", "<end_of_turn>", "<|endoftext|>", "<EOT>",
    "_<EOT>", "<|end_of_text|>", "<end_of_utterance>", "<|eom_id|>", "<|return|>", "<|call|>",
    "<|fim_prefix|>", "<|fim_suffix|>", "<|fim_middle|>", "<|fim_pad|>", "<|repo_name|>",
    "<|file_sep|>", "<fim-prefix>", "<fim-suffix>", "<fim-middle>", "<fim_prefix>", "<fim_suffix>",
    "<fim_middle>", "<PRE>", "<SUF>", "<MID>",
})


def _effective_types(tokens, types) -> list[int]:
    return [CONTROL if t in FORCED_CONTROL and ty in (NORMAL, USER_DEFINED) else ty
            for t, ty in zip(tokens, types)]


class TextTokenizer:
    """`encode` / `decode` with the model's BOS convention; wraps a `tokenizers.Tokenizer`."""

    def __init__(self, hf: Tokenizer, *, bos_id: int | None, eos_id: int | None, add_bos: bool):
        self.hf = hf
        self.bos_id, self.eos_id, self.add_bos = bos_id, eos_id, add_bos

    @property
    def vocab_size(self) -> int:
        return self.hf.get_vocab_size(with_added_tokens=True)

    def encode(self, text: str, *, add_bos: bool | None = None, parse_special: bool = False) -> list[int]:
        self.hf.encode_special_tokens = not parse_special
        ids = self.hf.encode(text, add_special_tokens=False).ids
        if (self.add_bos if add_bos is None else add_bos) and self.bos_id is not None:
            ids = [self.bos_id] + ids
        return ids

    def encode_batch(self, texts: Sequence[str], **kw) -> list[list[int]]:
        return [self.encode(t, **kw) for t in texts]

    def decode(self, ids: Sequence[int], *, skip_special: bool = False) -> str:
        return self.hf.decode([int(i) for i in ids], skip_special_tokens=skip_special)

    def token(self, i: int) -> str:
        return self.hf.id_to_token(int(i))


def build_from_gguf(meta: dict) -> Tokenizer:
    kind = meta["tokenizer.ggml.model"]
    if kind == "gpt2":
        return _byte_level_bpe(meta)
    if kind == "llama":
        return _sentencepiece_bpe(meta)
    raise ValueError(f"unsupported GGUF tokenizer model {kind!r} (supported: 'gpt2', 'llama')")


def _byte_level_bpe(meta: dict) -> Tokenizer:
    tokens = list(meta["tokenizer.ggml.tokens"])
    types = _effective_types(tokens, meta["tokenizer.ggml.token_type"])
    merges = [tuple(m.split(" ", 1)) for m in meta["tokenizer.ggml.merges"]]
    vocab = {t: i for i, t in enumerate(tokens)}
    tok = Tokenizer(models.BPE(vocab=vocab, merges=merges))
    pre = [pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=True)]
    if meta.get("tokenizer.ggml.pre") == "smollm":
        pre.insert(0, pre_tokenizers.Digits(individual_digits=True))
    tok.pre_tokenizer = pre_tokenizers.Sequence(pre)
    tok.decoder = decoders.ByteLevel()
    control = [t for t, ty in zip(tokens, types) if ty == CONTROL]
    tok.add_special_tokens([AddedToken(t, special=True, normalized=False) for t in control])
    return tok


def _sentencepiece_bpe(meta: dict) -> Tokenizer:
    tokens = list(meta["tokenizer.ggml.tokens"])
    types = _effective_types(tokens, meta["tokenizer.ggml.token_type"])
    scores = np.asarray(meta["tokenizer.ggml.scores"], np.float32)
    vocab = {t: i for i, t in enumerate(tokens)}
    normal = {t for t, ty in zip(tokens, types) if ty == NORMAL}
    cand = []
    for t in normal:
        for k in range(1, len(t)):
            a, b = t[:k], t[k:]
            if a in normal and b in normal:
                cand.append((-float(scores[vocab[t]]), vocab[a], vocab[b], a, b))
    cand.sort()
    unk_id = meta.get("tokenizer.ggml.unknown_token_id")
    unk = tokens[int(unk_id)] if unk_id is not None else None
    tok = Tokenizer(models.BPE(vocab=vocab, merges=[(c[3], c[4]) for c in cand], unk_token=unk,
                               fuse_unk=True, byte_fallback=True))
    tok.normalizer = normalizers.Replace(" ", "\u2581")
    tok.decoder = decoders.Sequence([decoders.Replace("\u2581", " "), decoders.ByteFallback(),
                                     decoders.Fuse()])
    user = [t for t, ty in zip(tokens, types) if ty == USER_DEFINED]
    control = [t for t, ty in zip(tokens, types) if ty == CONTROL]
    tok.add_tokens([AddedToken(t, special=False, normalized=False) for t in user])
    tok.add_special_tokens([AddedToken(t, special=True, normalized=False) for t in control])
    return tok


_TAG = re.compile(r"^<[^<>\s]+>$")


def never_sample_ids(meta: dict) -> list[int]:
    """Ids generation must never produce: control tokens (except EOS), unused slots, and
    tag-like user-defined tokens such as Gemma's `<start_of_image>` (real text never needs them;
    steered Gemma otherwise emits runs of them)."""
    tokens = meta["tokenizer.ggml.tokens"]
    types = meta["tokenizer.ggml.token_type"]
    eos = meta.get("tokenizer.ggml.eos_token_id")
    out = []
    for i, (t, ty) in enumerate(zip(tokens, types)):
        if i == eos:
            continue
        if ty in (CONTROL, UNUSED, UNKNOWN) or (ty == USER_DEFINED and _TAG.match(t)):
            out.append(i)
    return out


def bytes_to_unicode() -> dict[int, str]:
    """GPT-2's reversible byte -> printable character map (used by ByteLevel)."""
    bs = list(range(ord("!"), ord("~") + 1)) + list(range(ord("¡"), ord("¬") + 1)) + list(
        range(ord("®"), ord("ÿ") + 1))
    cs = bs[:]
    n = 0
    for b in range(256):
        if b not in bs:
            bs.append(b)
            cs.append(256 + n)
            n += 1
    return dict(zip(bs, (chr(c) for c in cs)))


def byte_tokenizer(bos_id: int, eos_id: int, add_bos: bool) -> TextTokenizer:
    """A 260-token byte-level tokenizer for the tiny test twins (ids 0..255 are the bytes)."""
    chars = bytes_to_unicode()
    vocab = {chars[b]: b for b in range(256)}
    vocab.update({"<bos>": 256, "<eos>": 257, "<pad>": 258, "<unk>": 259})
    tok = Tokenizer(models.BPE(vocab=vocab, merges=[]))
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=False)
    tok.decoder = decoders.ByteLevel()
    tok.add_special_tokens([AddedToken(t, special=True, normalized=False)
                            for t in ("<bos>", "<eos>", "<pad>", "<unk>")])
    return TextTokenizer(tok, bos_id=bos_id, eos_id=eos_id, add_bos=add_bos)
