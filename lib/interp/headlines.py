"""The post's seven headline claims, and the rule that combines each from its sub-claims.

Each snippet of GDM's *Progress Update #1* (April 2024) ends its summary with one headline
claim. A headline is decided by a few *decisive* sub-claims, measured on the snippet's page:

- reproduced when every decisive sub-claim is reproduced;
- not reproduced when any decisive sub-claim is not reproduced;
- not tested when none of them was measured (all missing or "not tested");
- inconclusive otherwise (some measured, none refuted, not all reproduced).

So a headline is never stronger than its weakest decisive measurement, and one refutation is
enough to say the book does not reproduce it. Sub-claims that are not decisive (replicated or
exploratory ones) are shown on the Claims page but do not enter the headline.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass

from interp.stats import INCONCLUSIVE, NOT_REPRODUCED, NOT_TESTED, REPRODUCED


@dataclass(frozen=True)
class Headline:
    snippet: str
    page: str
    quote: str
    decisive: tuple[str, ...]


# The quotes are the post's own summary sentences (GDM mech-interp team, Progress Update #1).
HEADLINES: tuple[Headline, ...] = (
    Headline("Steering vectors", "steering",
             "We analyse the steering vectors used in Turner et al., 2023 using SAEs. We find "
             "that they are highly interpretable, and that in some cases we can get better "
             "performance by constructing interpretable steering vectors from SAE features, "
             "though in other cases we struggle to.",
             ("S1", "S2", "S3")),
    Headline("Inference-time optimisation", "ito",
             "One notable finding is that high L0 SAEs have higher quality dictionaries than "
             "low L0 SAEs, even if we learn coefficients with low L0 at inference time.",
             ("I1", "I2")),
    Headline("Ghost grads", "ghost_grads",
             "We replicate their work, and find that it under-performs resampling. We present "
             "an improvement, multiplying the ghost grads loss by the proportion of dead "
             "features, which makes ghost grads competitive.",
             ("G-2", "G-3")),
    Headline("SAEs on toy models", "toy_models",
             "[We] now think that compression may be very difficult to achieve in Tracr models "
             "without changing the underlying algorithm. [...] the ReLU output model of Toy "
             "Models of Superposition [...] is too toy to be an interesting proxy for language "
             "models.",
             ("T-3", "T-2")),
    Headline("Anthropic's February recommendations", "recipe",
             "We now set Adam's beta1 to 0 by default in our SAE training runs, which sometimes "
             "helps and is sometimes neutral, but haven't adopted any of the other "
             "recommendations.",
             ("F-2", "F-3")),
    Headline("Auto-interp", "autointerp",
             "We overall consider auto-interp a useful technique, that provides some signal on "
             "top of cheap metrics like L0 and loss recovered, but may also introduce "
             "systematic biases and should be used with caution.",
             ("A-1", "A-5")),
    Headline("JAX infrastructure", "infrastructure",
             "Good tooling is essential for doing mechanistic interpretability research, in "
             "particular intervening on and saving intermediate activations. We work in JAX "
             "[...]. We write up some desiderata and solutions we've found for meeting them.",
             ("J-a", "J-b")),
)


def combine(verdicts: Sequence[str | None]) -> str:
    """A headline's verdict from its decisive sub-claims' verdicts (None: not recorded)."""
    measured = [v for v in verdicts if v not in (None, NOT_TESTED)]
    if not measured:
        return NOT_TESTED
    if NOT_REPRODUCED in measured:
        return NOT_REPRODUCED
    if len(measured) == len(verdicts) and all(v == REPRODUCED for v in measured):
        return REPRODUCED
    return INCONCLUSIVE


def judge_all(records: Sequence[Mapping]) -> list[dict]:
    """Each headline with its decisive sub-claims' verdicts and the combined verdict."""
    by_id = {r["claim_id"]: r for r in records}
    out = []
    for h in HEADLINES:
        parts = {cid: (by_id[cid]["verdict"] if cid in by_id else None) for cid in h.decisive}
        out.append({"snippet": h.snippet, "page": h.page, "quote": h.quote,
                    "decisive": parts, "verdict": combine(list(parts.values()))})
    return out
