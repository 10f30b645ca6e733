"""Shared helpers for the interp.autointerp tests (no LLM; see test_autointerp_backends).

Synthetic latents fire on one word of random text, so the right explanation is known: an oracle
explanation / simulator / judge must score perfectly, and random ones at chance. `OracleLLM` is a
deterministic backend that plays a perfect simulator / judge for such word-latents.
"""

import json
import re

import numpy as np

from interp.autointerp.backend import Completion, TokenLogprob

WORDS = [" the", " a", " cat", " dog", " sat", " ran", " on", " mat", " house", " red", " blue",
         " big", " small", " tree", " car", " and", " of", " to", " in", " is"]


def corpus(n=200, t=32, seed=0):
    rng = np.random.default_rng(seed)
    return [[WORDS[i] for i in rng.integers(0, len(WORDS), t)] for _ in range(n)]


def word_latent(tokens, word, *, graded=False, seed=0):
    """Activation 3.0 (or graded, in [1, 5]) on `word`, 0 elsewhere."""
    rng = np.random.default_rng(seed)
    acts = np.array([[1.0 if t == word else 0.0 for t in row] for row in tokens])
    return acts * (rng.uniform(1, 5, acts.shape) if graded else 3.0)


class OracleLLM:
    """A backend that behaves like a perfect simulator/judge for word-latents: it reads the
    quoted word from the explanation in the prompt. Exercises the LLM roles' plumbing."""

    kind, model = "oracle", "oracle-1"

    def __init__(self):
        self.calls = 0

    @staticmethod
    def _word(messages):
        return re.findall(r'"([^"]+)"', messages[-1].content)[0]

    def chat(self, messages, sampling):
        self.calls += 1
        word, text = self._word(messages), messages[-1].content
        if "JSON list" in text:
            toks = [ln.split("\t", 1)[1] for ln in text.splitlines() if "\t" in ln]
            return Completion(json.dumps([10 if t.strip() == word else 0 for t in toks]))
        if "marked <<like this>>" in text:
            shown = text.split("marked <<like this>>:", 1)[1]
            marked = [m.strip() for m in re.findall(r"<<(.*?)>>", shown)]
            yes = bool(marked) and all(m == word for m in marked)
        else:
            yes = f" {word}" in text.split("Text:", 1)[1]
        tok = "yes" if yes else "no"
        lp = TokenLogprob(tok, -0.1, {tok: -0.1, ("no" if yes else "yes"): -2.5})
        return Completion(tok, logprobs=(lp,) if sampling.top_logprobs else None)

    def slot_logprobs(self, messages, segments, choices):
        word = self._word(messages)
        out = np.full((len(segments), len(choices)), -20.0)
        for i, seg in enumerate(segments):
            tok = seg.split("\n")[-1].rstrip("\t").strip()
            out[i, -1 if tok == word else 0] = 0.0
        return out
