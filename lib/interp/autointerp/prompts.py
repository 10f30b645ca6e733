"""Prompts for the three roles (explainer, simulator, judge) and parsers for their replies.

Formats follow Bills et al. (2023): an excerpt is shown one token per line as
`token<tab>activation`, activations as integers 0..scale (the latent's maximum -> scale), and the
explainer completes "the main thing this feature does is find ...". Tabs and newlines inside a
token are shown escaped (`\\t`, `\\n`) so that one line is always one token.

Detection and fuzzing (Paulo et al. 2024, EleutherAI delphi) ask yes/no questions whose first
reply token can be read as a probability; fuzzing marks tokens as `<<token>>`.
"""

from __future__ import annotations

import json
import re
from collections.abc import Sequence

import numpy as np

from interp.autointerp.backend import Message
from interp.autointerp.records import Record, discretise

EXPLANATION_PREFIX = "the main thing this feature does is find"

EXPLAINER_SYSTEM = (
    "We are studying features of a neural network. Each feature looks for one particular thing "
    "in a short text. Look at the tokens where the feature activates and summarise in one short "
    "phrase what it is looking for.\n\nThe format is token<tab>activation, one token per line. "
    "Activations range from 0 to {scale}; 0 means the feature is silent, and higher values mean "
    "a stronger match.")

# One worked example (synthetic, written for this package) shows the format. Caveat measured on
# SmolLM2-135M-Instruct: it copies this example's explanation verbatim whatever the records are
# (and without the example it writes generic text), so its explanations score at baseline level;
# the prompt is designed for capable explainers (served over the OpenAI-compatible backend).
_FEW_SHOT = (
    Record(("We", " met", " on", " Monday", " and", " again", " on", " Friday", "."),
           [0, 0, 1, 10, 0, 0, 1, 8, 0]),
    Record(("See", " you", " next", " Tuesday", "!"), [0, 0, 2, 9, 0]),
)
FEW_SHOT_EXPLANATION = "days of the week"


def show_token(tok: str) -> str:
    return tok.replace("\\", "\\\\").replace("\t", "\\t").replace("\n", "\\n").replace("\r", "\\r")


def format_record(record: Record, max_act: float, *, scale: int = 10,
                  omit_zeros: bool = False) -> str:
    levels = discretise(record.acts, max_act, scale)
    lines = [f"{show_token(t)}\t{v}" for t, v in zip(record.tokens, levels)
             if not (omit_zeros and v == 0)]
    return "<start>\n" + "\n".join(lines) + "\n<end>"


def _examples_block(records: Sequence[Record], max_act: float, scale: int) -> str:
    blocks = [format_record(r, max_act, scale=scale) for r in records]
    text = "\n".join(blocks)
    levels = np.concatenate([discretise(r.acts, max_act, scale) for r in records])
    if np.mean(levels > 0) < 0.2:  # Bills: repeat the non-zero activations when they are sparse
        text += "\n\nThe same activations, with the zeros left out:\n" + "\n".join(
            format_record(r, max_act, scale=scale, omit_zeros=True) for r in records)
    return text


def most_active_tokens(records: Sequence[Record], max_act: float, scale: int = 10,
                       k: int = 5) -> str:
    """'"Monday" (10), "Friday" (8)': the k most active distinct tokens with their level."""
    best: dict[str, int] = {}
    for r in records:
        for t, v in zip(r.tokens, discretise(r.acts, max_act, scale)):
            if v > 0 and t.strip():
                best[t.strip()] = max(best.get(t.strip(), 0), int(v))
    ranked = sorted(best.items(), key=lambda kv: (-kv[1], kv[0]))[:k]
    return ", ".join(f'"{show_token(t)}" ({v})' for t, v in ranked)


def explainer_messages(records: Sequence[Record], *, max_act: float | None = None,
                       scale: int = 10, few_shot: bool = True,
                       list_top_tokens: bool = True) -> list[Message]:
    """Messages asking for a one-phrase explanation of the latent active in `records`.

    `list_top_tokens` adds a line with the most active tokens out of context (as in Bricken et
    al. 2023's explainer prompt); small local models lean on it heavily."""
    if not records:
        raise ValueError("the explainer needs at least one record")
    if max_act is None:
        max_act = max(r.max_act for r in records)
    msgs = [Message("system", EXPLAINER_SYSTEM.format(scale=scale))]

    def ask(recs, m):
        top = (f"\n\nMost active tokens: {most_active_tokens(recs, m, scale)}"
               if list_top_tokens else "")
        return (f"Activations:\n{_examples_block(recs, m, scale)}{top}\n\nExplanation of the "
                f"feature: {EXPLANATION_PREFIX} ...")

    if few_shot:
        m0 = max(r.max_act for r in _FEW_SHOT)
        msgs += [Message("user", ask(_FEW_SHOT, m0)),
                 Message("assistant", f"{EXPLANATION_PREFIX} {FEW_SHOT_EXPLANATION}.")]
    msgs.append(Message("user", ask(records, max_act)))
    return msgs


def parse_explanation(text: str) -> str:
    """The explanation phrase from a reply: the first non-empty line, without the prompt's
    prefix, a leading "Explanation:", surrounding quotes or a final period. May be ""."""
    lines = [ln.strip() for ln in text.strip().splitlines() if ln.strip()]
    s = lines[0] if lines else ""
    s = re.sub(r"^\**\s*explanation( of the feature)?\s*:?\**\s*", "", s, flags=re.I)
    s = re.sub(r"^(\.\.\.\s*)?" + re.escape(EXPLANATION_PREFIX) + r"\s*(\.\.\.)?\s*", "", s,
               flags=re.I)
    s = s.strip().strip("\"'`").strip()
    return s[:-1].rstrip() if s.endswith(".") else s


# -- simulation ---------------------------------------------------------------------------------

SIMULATOR_SYSTEM = (
    "We are studying features of a neural network. Each feature looks for one particular thing "
    "in a short text. Given a description of a feature, predict how strongly it activates on "
    "each token of a text, from 0 (silent) to {scale} (strongest).")


def simulation_messages(explanation: str, record: Record, *, scale: int = 10) -> list[Message]:
    """Text mode: ask for a JSON list with one integer per token (for chat APIs)."""
    lines = "\n".join(f"{i}\t{show_token(t)}" for i, t in enumerate(record.tokens))
    return [Message("system", SIMULATOR_SYSTEM.format(scale=scale)),
            Message("user", f"Feature: {EXPLANATION_PREFIX} {explanation}.\n\nText, one token "
                            f"per line (index<tab>token):\n{lines}\n\nReply with only a JSON list "
                            f"of {len(record.tokens)} integers from 0 to {scale}, one per token.")]


def parse_simulation(text: str, n_tokens: int, *, scale: int = 10) -> tuple[np.ndarray, bool]:
    """Predicted activations from a reply, and whether the reply was well formed.

    Reads the first JSON list; otherwise every number in the text, in order. Values are clipped to
    0..scale; a short reply is padded with 0 and a long one truncated (both flagged not ok).
    """
    values = None
    m = re.search(r"\[[^\[\]]*\]", text)
    if m:
        try:
            parsed = json.loads(m.group(0))
            if all(isinstance(v, (int, float)) for v in parsed):
                values = [float(v) for v in parsed]
        except json.JSONDecodeError:
            values = None
    if values is None:
        values = [float(v) for v in re.findall(r"-?\d+(?:\.\d+)?", text)]
    ok = len(values) == n_tokens and m is not None
    out = np.zeros(n_tokens)
    k = min(n_tokens, len(values))
    out[:k] = np.clip(values[:k], 0, scale)
    return out, ok


def simulation_transcript(explanation: str, record: Record, *, scale: int = 9,
                          placeholder: str = "0") -> tuple[list[Message], list[str]]:
    """All-at-once mode (Bills et al.): the reply lists `token<tab>activation` lines; a backend
    with `slot_logprobs` reads the distribution over the digits at every activation slot in one
    teacher-forced forward pass. Returns (messages, reply segments); the slot of token i is right
    after segment i.

    The default scale is 9 so that every level is one digit, i.e. one token for SmolLM2's
    digit-splitting tokenizer. Earlier slots must hold *something*: Bills et al. wrote "unknown",
    but a small model then copies "unknown" (SmolLM2-135M puts ~1% of its mass on digits after
    the first line); "0", the right value for most tokens of a sparse latent, keeps it on digits.
    """
    ex = _FEW_SHOT[0]
    levels = discretise(ex.acts, ex.max_act, scale)
    example = "\n".join(f"{show_token(t)}\t{v}" for t, v in zip(ex.tokens, levels))
    msgs = [Message("system", SIMULATOR_SYSTEM.format(scale=scale)),
            Message("user", f"Feature: {EXPLANATION_PREFIX} {FEW_SHOT_EXPLANATION}.\nText: "
                            f"{ex.text!r}\nList each token with its activation."),
            Message("assistant", example),
            Message("user", f"Feature: {EXPLANATION_PREFIX} {explanation}.\nText: "
                            f"{record.text!r}\nList each token with its activation.")]
    segments = []
    for i, t in enumerate(record.tokens):
        lead = "" if i == 0 else f"{placeholder}\n"
        segments.append(f"{lead}{show_token(t)}\t")
    return msgs, segments


def simulation_transcript_batch(explanation: str, records: Sequence[Record], *, scale: int = 9,
                                placeholder: str = "0") -> tuple[list[Message], list[str]]:
    """All-at-once over several records: one request lists every text ("Text 1: ...") and the
    reply lists each text's tokens with their activations, so one teacher-forced forward pass
    simulates all of them (Anthropic 2023 simulated 60 excerpts in one prompt). Why: on a CPU the
    fixed part of the prompt (instructions, worked example, explanation) costs more than a short
    excerpt, so per-record requests spend most of their compute re-reading it.

    Returns (messages, segments) with one slot per token of every record, in order.
    """
    if not records:
        raise ValueError("simulation_transcript_batch needs at least one record")
    ex = _FEW_SHOT[0]
    levels = discretise(ex.acts, ex.max_act, scale)
    example = "Text 1:\n" + "\n".join(f"{show_token(t)}\t{v}" for t, v in zip(ex.tokens, levels))
    texts = "\n".join(f"Text {k + 1}: {r.text!r}" for k, r in enumerate(records))
    msgs = [Message("system", SIMULATOR_SYSTEM.format(scale=scale)),
            Message("user", f"Feature: {EXPLANATION_PREFIX} {FEW_SHOT_EXPLANATION}.\nText 1: "
                            f"{ex.text!r}\nList each token of each text with its activation."),
            Message("assistant", example),
            Message("user", f"Feature: {EXPLANATION_PREFIX} {explanation}.\n{texts}\nList each "
                            "token of each text with its activation.")]
    segments = []
    for k, r in enumerate(records):
        for i, t in enumerate(r.tokens):
            if i == 0:
                lead = (f"{placeholder}\n\n" if k else "") + f"Text {k + 1}:\n"
            else:
                lead = f"{placeholder}\n"
            segments.append(f"{lead}{show_token(t)}\t")
    return msgs, segments


# -- detection and fuzzing ----------------------------------------------------------------------

JUDGE_SYSTEM = ("We are studying features of a neural network. You will get a description of a "
                "feature and a text. Answer the question with yes or no only.")
YES = ("yes", "Yes", " yes", " Yes", "YES")
NO = ("no", "No", " no", " No", "NO")


def detection_messages(explanation: str, record: Record) -> list[Message]:
    """Detection: does the described feature fire anywhere in this text?"""
    return [Message("system", JUDGE_SYSTEM),
            Message("user", f"Feature: {EXPLANATION_PREFIX} {explanation}.\n\nText: "
                            f"{record.text!r}\n\nDoes this text contain what the feature looks "
                            "for? Answer yes or no.")]


def highlight(tokens: Sequence[str], marked: Sequence[bool]) -> str:
    return "".join(f"<<{t}>>" if m else t for t, m in zip(tokens, marked))


def fuzzing_messages(explanation: str, tokens: Sequence[str],
                     marked: Sequence[bool]) -> list[Message]:
    """Fuzzing: are the <<marked>> tokens the ones the described feature fires on?"""
    return [Message("system", JUDGE_SYSTEM),
            Message("user", f"Feature: {EXPLANATION_PREFIX} {explanation}.\n\nText with some "
                            f"tokens marked <<like this>>: {highlight(tokens, marked)!r}\n\nAre "
                            "the marked tokens the ones where the feature activates? Answer yes "
                            "or no.")]


def parse_yes_no(text: str) -> bool | None:
    """True for a reply starting with yes, False for no, None otherwise."""
    m = re.match(r"\W*(yes|no)\b", text.strip(), flags=re.I)
    return None if m is None else m.group(1).lower() == "yes"
