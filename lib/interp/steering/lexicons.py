"""Concept word lists for the lexicon steering metric (ActAdd, Turner et al. 2023, Sec. 4).

Counting whole words (case-insensitive) in a completion is the cheapest steering effect that
needs no model at all: ActAdd counted wedding words per completion.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Sequence

import numpy as np

# ActAdd's wedding words (Turner et al. 2023, the wedding-word count experiment).
WEDDING = ("wedding", "weddings", "wed", "marry", "married", "marriage", "bride", "groom",
           "honeymoon")
# ActAdd's concepts, plus inflections so that "angrily" or "hated" count.
ANGER = ("anger", "angry", "angrily", "hate", "hated", "hates", "hatred", "furious", "rage",
         "raging", "mad", "annoyed", "annoying", "stupid", "idiot", "idiots", "damn", "yell",
         "yelling", "screaming", "scream", "pissed", "outraged", "irritated", "resent")
LOVE = ("love", "loved", "loves", "loving", "lovely", "adore", "adored", "care", "caring",
        "kind", "wonderful", "beautiful", "happy", "sweet", "dear", "darling")
HATE = ("hate", "hated", "hates", "hatred", "despise", "disgust", "disgusting", "awful",
        "terrible", "horrible", "angry", "stupid", "ugly", "worst")

LEXICONS = {"wedding": WEDDING, "anger": ANGER, "love": LOVE, "hate": HATE}


def _pattern(words: Iterable[str]) -> re.Pattern:
    words = sorted({w.lower() for w in words}, key=len, reverse=True)
    if not words:
        raise ValueError("empty lexicon")
    return re.compile(r"\b(" + "|".join(map(re.escape, words)) + r")\b", re.IGNORECASE)


def lexicon(name_or_words) -> tuple[str, ...]:
    if isinstance(name_or_words, str):
        if name_or_words not in LEXICONS:
            raise ValueError(f"unknown lexicon {name_or_words!r}; known: {sorted(LEXICONS)}")
        return LEXICONS[name_or_words]
    return tuple(name_or_words)


def count(texts: Sequence[str], words) -> np.ndarray:
    """Number of lexicon words in each text (whole words, case-insensitive)."""
    pat = _pattern(lexicon(words))
    return np.array([len(pat.findall(t)) for t in texts], dtype=np.float64)


def hits(token_strings: Sequence[str], words) -> bool:
    """Whether any of the token strings (e.g. a feature's logit-lens words) is in the lexicon,
    ignoring case and surrounding spaces; used to label concept features automatically."""
    vocab = {w.lower() for w in lexicon(words)}
    return any(t.strip().lower() in vocab for t in token_strings)
