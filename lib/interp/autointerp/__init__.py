"""Auto-interpretability: explain SAE latents with an LLM and score the explanations.

Roles (Bills et al. 2023): an *explainer* turns activation records into a phrase; a *simulator*
predicts per-token activations from the phrase (scored by correlation); a *judge* answers yes/no
for detection and fuzzing (Paulo et al. 2024). Every role has an LLM version and a rule-based one,
and baseline explanations give each score a floor.

LLM backends share one interface (`Backend.chat`): the local JAX model (`LocalBackend`, the
offline default), any OpenAI-compatible server (`OpenAICompatible`: OpenAI, Gemini, vLLM,
llama.cpp), and `CachedBackend`, which stores every request/reply on disk so notebooks replay
without the backend. `ChatServer` serves any backend over the OpenAI protocol.

    backend = make_backend("local")  # = CachedBackend(LocalBackend("smollm2-135m"))
    ex = select_examples(acts, token_strs, latent=7)
    s = split(ex)
    expl = LLMExplainer(backend).explain(s.explain, ex.max_act)
    sims = LLMSimulator(backend).simulate(expl, s.score)
    simulation_scores(sims, s.score)  # {"top_and_random": ..., "top": ..., "random": ...}
"""

from interp.autointerp.backend import (
                                       Backend,
                                       BackendError,
                                       Completion,
                                       Message,
                                       Sampling,
                                       TokenLogprob,
                                       complete,
                                       first_token_probs,
)
from interp.autointerp.explain import (
                                       LLMExplainer,
                                       TopTokensExplainer,
                                       other_latent_explanations,
                                       random_explanation,
                                       top_tokens,
)
from interp.autointerp.factory import make_backend
from interp.autointerp.latents import (
                                       LatentActivations,
                                       context_frequency,
                                       excerpts,
                                       latent_activations,
                                       sample_latents,
)
from interp.autointerp.local import LocalBackend, chatml
from interp.autointerp.openai_http import OpenAICompatible
from interp.autointerp.pipeline import score_explanation, score_latents
from interp.autointerp.prompts import (
                                       detection_messages,
                                       explainer_messages,
                                       fuzzing_messages,
                                       parse_explanation,
                                       parse_simulation,
                                       parse_yes_no,
                                       simulation_messages,
                                       simulation_transcript,
                                       simulation_transcript_batch,
)
from interp.autointerp.records import (
                                       LatentExamples,
                                       Record,
                                       Split,
                                       discretise,
                                       select_examples,
                                       split,
                                       token_strings,
)
from interp.autointerp.scoring import (
                                       Item,
                                       LexicalJudge,
                                       LLMJudge,
                                       auroc,
                                       balanced_accuracy,
                                       correlation_by_source,
                                       detection_items,
                                       fuzzing_items,
                                       pearson,
                                       score_items,
                                       simulation_scores,
)
from interp.autointerp.server import ChatServer
from interp.autointerp.simulate import LexicalSimulator, LLMSimulator
from interp.autointerp.stats import (
                                       fill_constant_predictions,
                                       paired_difference,
                                       spearman,
                                       spearman_interval,
)
from interp.autointerp.transcripts import CachedBackend, TranscriptCorrupt, TranscriptMiss

__all__ = [
    "Backend", "BackendError", "Completion", "Message", "Sampling", "TokenLogprob", "complete",
    "first_token_probs", "LLMExplainer", "TopTokensExplainer", "other_latent_explanations",
    "random_explanation", "top_tokens", "LocalBackend", "chatml", "OpenAICompatible",
    "score_explanation", "score_latents", "detection_messages", "explainer_messages",
    "fuzzing_messages", "parse_explanation", "parse_simulation", "parse_yes_no",
    "simulation_messages", "simulation_transcript", "simulation_transcript_batch",
    "LatentExamples", "Record", "Split",
    "discretise", "select_examples", "split", "token_strings", "Item", "LexicalJudge", "LLMJudge",
    "auroc", "balanced_accuracy", "detection_items", "fuzzing_items", "pearson", "score_items",
    "simulation_scores", "ChatServer", "LexicalSimulator", "LLMSimulator", "CachedBackend",
    "TranscriptCorrupt", "TranscriptMiss", "make_backend", "LatentActivations",
    "context_frequency", "excerpts", "latent_activations", "sample_latents",
    "correlation_by_source", "paired_difference", "spearman", "spearman_interval",
    "fill_constant_predictions",
]
