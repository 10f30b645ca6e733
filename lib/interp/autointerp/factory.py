"""Build a backend from plain parameters (what a notebook's `parameters` cell can hold).

    make_backend("local")                                         # SmolLM2-135M-Instruct, cached
    make_backend("openai", model="gemini-2.0-flash", api_key_env="GEMINI_API_KEY",
                 base_url="https://generativelanguage.googleapis.com/v1beta/openai/")

Transcripts are cached by default, so re-executing a notebook replays the recorded replies
(and, with `offline=True`, proves it made no backend call).
"""

from __future__ import annotations

from interp.autointerp.local import LocalBackend
from interp.autointerp.openai_http import OpenAICompatible
from interp.autointerp.transcripts import CachedBackend

KINDS = ("local", "openai")
DEFAULT_LOCAL_MODEL = "smollm2-135m"


def make_backend(kind: str = "local", *, model: str | None = None, base_url: str | None = None,
                 api_key_env: str | None = "OPENAI_API_KEY", cache: bool = True,
                 cache_dir=None, offline: bool | None = None, timeout: float = 60.0,
                 max_retries: int = 4):
    if kind not in KINDS:
        raise ValueError(f"unknown backend kind {kind!r}; choose one of {KINDS}")
    if kind == "local":
        if offline and cache:  # replay only: do not even load the model
            backend = _Unloaded(model or DEFAULT_LOCAL_MODEL)
        else:
            backend = LocalBackend(model or DEFAULT_LOCAL_MODEL)
    else:
        if not base_url or not model:
            raise ValueError("the openai backend needs base_url= (e.g. http://127.0.0.1:8000/v1) "
                             "and model=")
        backend = OpenAICompatible(base_url, model, api_key_env=api_key_env, timeout=timeout,
                                   max_retries=max_retries)
    return CachedBackend(backend, cache_dir, offline=offline) if cache else backend


class _Unloaded:
    """Stands for the local model in offline replay; any real call is a bug (cache misses raise
    first). It offers slot_logprobs so that simulators pick the same method as when recording."""

    kind = "local"

    def __init__(self, model: str):
        self.model = model

    def __repr__(self) -> str:
        return f"LocalBackend(model={self.model!r}, not loaded: offline replay)"

    def chat(self, messages, sampling):
        raise RuntimeError("offline replay reached the local model")

    def slot_logprobs(self, messages, segments, choices):
        raise RuntimeError("offline replay reached the local model")
