"""A backend for any OpenAI-compatible chat-completions server, over plain HTTP (stdlib only).

Works with OpenAI, Gemini's OpenAI-compatible endpoint
(`https://generativelanguage.googleapis.com/v1beta/openai/`, key in `GEMINI_API_KEY`), vLLM
(`http://host:8000/v1`), llama.cpp's `llama-server` (`http://host:8080/v1`) and this package's
`interp.autointerp.server`.

Why these rules:
* The API key is read from the named environment variable at request time and never stored on
  the object, so it cannot leak through `repr`, pickling, the transcript cache (whose key is
  built from `kind`, `model` and the request only) or error messages (server replies quoted in
  errors are scrubbed of the key).
* Transient failures (connection refused or reset, timeouts, HTTP 408/409/429/5xx) are retried a
  bounded number of times with exponential backoff (honouring `Retry-After`); anything else
  (HTTP 4xx, a reply that is not chat-completions JSON) fails at once with a `BackendError`
  naming the URL, the status and what was wrong.
"""

from __future__ import annotations

import dataclasses
import http.client
import json
import os
import time
import urllib.error
import urllib.request
from collections.abc import Sequence

from interp.autointerp.backend import (
    BackendError,
    Completion,
    Message,
    Sampling,
    TokenLogprob,
    as_messages,
)

RETRY_STATUS = frozenset({408, 409, 429, 500, 502, 503, 504})


@dataclasses.dataclass(frozen=True)
class OpenAICompatible:
    """`base_url` ends before `/chat/completions` (e.g. `http://127.0.0.1:8000/v1`)."""

    base_url: str
    model: str
    api_key_env: str | None = "OPENAI_API_KEY"  # the variable's NAME; None: send no key
    timeout: float = 60.0  # seconds per attempt
    max_retries: int = 4  # extra attempts after the first, for transient failures only
    backoff: float = 1.0  # first wait in seconds; doubles each retry
    backoff_max: float = 30.0
    send_seed: bool = True  # some servers reject `seed`
    kind: str = dataclasses.field(default="openai-compatible", init=False)

    def __post_init__(self):
        if not self.base_url.startswith(("http://", "https://")):
            raise ValueError(f"base_url must start with http:// or https://, got {self.base_url!r}")
        if self.max_retries < 0 or self.timeout <= 0 or self.backoff < 0:
            raise ValueError("need max_retries >= 0, timeout > 0 and backoff >= 0")

    @property
    def url(self) -> str:
        return self.base_url.rstrip("/") + "/chat/completions"

    def _key(self) -> str | None:
        if self.api_key_env is None:
            return None
        key = os.environ.get(self.api_key_env)
        if not key:
            raise BackendError(f"environment variable {self.api_key_env} is not set: export the "
                               f"API key for {self.base_url} there (or pass api_key_env=None for "
                               "a server that needs no key)")
        return key

    def _scrub(self, text: str, key: str | None) -> str:
        return text.replace(key, "[API key]") if key else text

    def request_body(self, messages: Sequence[Message], sampling: Sampling) -> dict:
        body = {"model": self.model, "messages": [m.to_json() for m in as_messages(messages)],
                "max_tokens": sampling.max_tokens, "temperature": sampling.temperature}
        if self.send_seed:
            body["seed"] = sampling.seed
        if sampling.top_logprobs is not None:
            body["logprobs"] = True
            body["top_logprobs"] = sampling.top_logprobs
        return body

    def chat(self, messages: Sequence[Message], sampling: Sampling) -> Completion:
        key = self._key()
        data = json.dumps(self.request_body(messages, sampling)).encode()
        headers = {"Content-Type": "application/json", "Accept": "application/json"}
        if key:
            headers["Authorization"] = f"Bearer {key}"
        last, retry_after = "", None
        for attempt in range(self.max_retries + 1):
            if attempt:
                time.sleep(self._wait(attempt, retry_after))
            req = urllib.request.Request(self.url, data=data, headers=headers, method="POST")
            try:
                with urllib.request.urlopen(req, timeout=self.timeout) as resp:
                    raw = resp.read()
                return self._parse(raw, key)
            except urllib.error.HTTPError as e:
                body = self._scrub(e.read(2000).decode("utf-8", "replace"), key)
                last = f"HTTP {e.code} {e.reason}: {body.strip()[:500]}"
                retry_after = e.headers.get("Retry-After") if e.headers else None
                if e.code not in RETRY_STATUS:
                    raise BackendError(f"{self.url} refused the request ({last})") from None
            except (urllib.error.URLError, http.client.HTTPException, ConnectionError,
                    TimeoutError) as e:
                reason = getattr(e, "reason", e)
                if isinstance(reason, TimeoutError):
                    last = f"no reply within {self.timeout:g} s (timed out)"
                else:
                    last = f"cannot reach the server: {self._scrub(str(reason), key)}"
                retry_after = None
        raise BackendError(f"{self.url} failed after {self.max_retries + 1} attempts; last error: "
                           f"{last}")

    def _wait(self, attempt: int, retry_after: str | None) -> float:
        wait = min(self.backoff * 2 ** (attempt - 1), self.backoff_max)
        if retry_after:
            try:
                wait = min(max(wait, float(retry_after)), self.backoff_max)
            except ValueError:
                pass
        return wait

    def _parse(self, raw: bytes, key: str | None) -> Completion:
        def bad(why: str) -> BackendError:
            snippet = self._scrub(raw[:300].decode("utf-8", "replace"), key)
            return BackendError(f"{self.url} returned a reply that is not a chat completion "
                                f"({why}); it began: {snippet!r}")

        try:
            d = json.loads(raw)
        except (json.JSONDecodeError, UnicodeDecodeError):
            raise bad("invalid JSON") from None
        if not isinstance(d, dict):
            raise bad("JSON is not an object")
        if "error" in d and "choices" not in d:
            raise bad(f"error object: {self._scrub(str(d['error'])[:300], key)}")
        try:
            choice = d["choices"][0]
            text = choice["message"]["content"]
        except (KeyError, IndexError, TypeError):
            raise bad("no choices[0].message.content") from None
        if text is None:
            text = ""
        if not isinstance(text, str):
            raise bad("message content is not a string")
        logprobs = None
        lp = choice.get("logprobs")
        if isinstance(lp, dict) and lp.get("content") is not None:
            try:
                logprobs = tuple(
                    TokenLogprob(t["token"], float(t["logprob"]),
                                 {a["token"]: float(a["logprob"])
                                  for a in t.get("top_logprobs") or []})
                    for t in lp["content"])
            except (KeyError, TypeError, ValueError):
                raise bad("malformed logprobs") from None
        usage = d.get("usage") or {}
        return Completion(text, choice.get("finish_reason") or "stop", logprobs,
                          usage.get("prompt_tokens"), usage.get("completion_tokens"))
