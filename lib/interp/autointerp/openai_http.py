"""A backend for any OpenAI-compatible chat-completions server, over plain HTTP (stdlib only).

Works with OpenAI, Gemini's OpenAI-compatible endpoint
(`https://generativelanguage.googleapis.com/v1beta/openai/`, key in `GEMINI_API_KEY`), vLLM
(`http://host:8000/v1`), llama.cpp's `llama-server` (`http://host:8080/v1`) and this package's
`interp.autointerp.server`.

Why these rules:
* The API key is read from the named environment variable at request time and never stored on
  the object, so it cannot leak through `repr`, pickling, the transcript cache (whose key is
  built from `kind`, `model` and the request only) or error messages (server replies quoted in
  errors are scrubbed of the key). While a request runs the key is held in a `str` whose `repr`
  is `'[API key]'`, so even tracebacks that print every frame's locals (`pytest -l`, IPython's
  verbose mode) do not show it. A reply that contains the key verbatim (a server echoing the
  request headers) is refused, never returned or cached.
* Redirects (HTTP 3xx) are refused, with an error naming the status and the target origin,
  rather than followed with the key stripped: a chat-completions endpoint has no reason to
  redirect a POST; urllib would replay it as a GET without the body, so the reply could not be
  the answer to the request; and a reply from another server must not enter the transcript cache
  as this model's. Refusing needs no judgement of which origins are safe, and the fix (set
  `base_url` to the final address) is one edit.
* `timeout` is a deadline for a whole attempt (connect, send, status line, headers and the full
  body), not a per-read socket timeout: every read gets only the time left, so a server that
  drips a byte at a time cannot hold a request past it. Replies over `MAX_REPLY_BYTES` are
  refused.
* Transient failures (connection refused or reset, timeouts, HTTP 408/409/429/5xx) are retried a
  bounded number of times with exponential backoff (honouring `Retry-After`), each attempt with a
  fresh deadline; anything else (HTTP 3xx/4xx, a reply that is not chat-completions JSON) fails at
  once with a `BackendError` naming the URL, the status and what was wrong.
"""

from __future__ import annotations

import dataclasses
import http.client
import io
import json
import os
import time
import urllib.error
import urllib.parse
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
MAX_REPLY_BYTES = 64 << 20  # far above any chat completion, even with top_logprobs=20
READ_CHUNK = 1 << 16


class _Redacted(str):
    """A secret string (the key, the Authorization header) whose repr never shows it."""

    def __repr__(self) -> str:
        return "'[API key]'"


# -- the per-attempt deadline ------------------------------------------------------------------

class _DeadlineReader(io.RawIOBase):
    """Reads a socket giving each read only the time left before `deadline` (time.monotonic)."""

    def __init__(self, sock, deadline: float):
        self._sock, self._deadline = sock, deadline
        self._raw = sock.makefile("rb", buffering=0)  # counted by the socket: keeps it open

    def readable(self) -> bool:
        return True

    def readinto(self, buffer) -> int:
        left = self._deadline - time.monotonic()
        if left <= 0:
            raise TimeoutError("the deadline passed while reading the reply")
        self._sock.settimeout(left)
        return self._raw.readinto(buffer)

    def fileno(self) -> int:
        return self._raw.fileno()

    def close(self) -> None:
        if not self.closed:
            self._raw.close()
        super().close()


class _DeadlineSocket:
    """A connected socket whose `makefile` (all http.client reads through) obeys a deadline."""

    def __init__(self, sock, deadline: float):
        self._sock, self._deadline = sock, deadline

    def makefile(self, mode="r", *args, **kwargs):
        if mode != "rb":
            return self._sock.makefile(mode, *args, **kwargs)
        return io.BufferedReader(_DeadlineReader(self._sock, self._deadline))

    def __getattr__(self, name):
        return getattr(self._sock, name)


class _DeadlineConnection:
    """Mixin for http.client connections: after connecting, the rest of the attempt (sending,
    reading) gets only the time left before `self.deadline`."""

    deadline: float

    def connect(self):
        super().connect()
        left = self.deadline - time.monotonic()
        if left <= 0:
            raise TimeoutError("the deadline passed while connecting")
        self.sock.settimeout(left)
        self.sock = _DeadlineSocket(self.sock, self.deadline)


class _DeadlineHTTPConnection(_DeadlineConnection, http.client.HTTPConnection):
    pass


class _DeadlineHTTPSConnection(_DeadlineConnection, http.client.HTTPSConnection):
    pass


class _DeadlineOpen:
    """Mixin for urllib handlers: open with a deadline connection; the deadline rides on the
    Request (`req.deadline`), since one opener serves one request."""

    connection_class: type

    def do_open(self, http_class, req, **kwargs):
        def connection(*args, **kw):
            conn = self.connection_class(*args, **kw)
            conn.deadline = req.deadline
            return conn

        return super().do_open(connection, req, **kwargs)


class _DeadlineHTTPHandler(_DeadlineOpen, urllib.request.HTTPHandler):
    connection_class = _DeadlineHTTPConnection


class _DeadlineHTTPSHandler(_DeadlineOpen, urllib.request.HTTPSHandler):
    connection_class = _DeadlineHTTPSConnection


class _RefuseRedirects(urllib.request.HTTPRedirectHandler):
    """Never follow a redirect: every 3xx reaches the caller as an HTTPError (see top)."""

    def redirect_request(self, req, fp, code, msg, headers, newurl):
        return None


def _opener() -> urllib.request.OpenerDirector:
    # built per request so that proxy settings (*_PROXY variables) are read when used, as urlopen
    return urllib.request.build_opener(_RefuseRedirects, _DeadlineHTTPHandler,
                                       _DeadlineHTTPSHandler)


def _origin(url: str) -> str:
    """scheme://host[:port] of a URL, without user, path or query (which could hold secrets)."""
    try:
        parts = urllib.parse.urlsplit(url)
        host, port = parts.hostname or "", parts.port
    except ValueError:
        return "an unparseable address"
    if ":" in host:
        host = f"[{host}]"
    return f"{parts.scheme}://{host}" + (f":{port}" if port is not None else "")


def _read_capped(resp) -> bytes | None:
    """The whole body, or None when it is longer than MAX_REPLY_BYTES."""
    chunks, size = [], 0
    while chunk := resp.read(READ_CHUNK):
        size += len(chunk)
        if size > MAX_REPLY_BYTES:
            return None
        chunks.append(chunk)
    return b"".join(chunks)


@dataclasses.dataclass(frozen=True)
class OpenAICompatible:
    """`base_url` ends before `/chat/completions` (e.g. `http://127.0.0.1:8000/v1`)."""

    base_url: str
    model: str
    api_key_env: str | None = "OPENAI_API_KEY"  # the variable's NAME; None: send no key
    timeout: float = 60.0  # deadline in seconds for one whole attempt (connect to last byte)
    max_retries: int = 4  # extra attempts after the first, for transient failures only
    backoff: float = 1.0  # first wait in seconds; doubles each retry
    backoff_max: float = 30.0
    send_seed: bool = True  # some servers reject `seed`
    kind: str = dataclasses.field(default="openai-compatible", init=False)

    def __post_init__(self):
        if not self.base_url.startswith(("http://", "https://")):
            raise ValueError(f"base_url must start with http:// or https://, got {self.base_url!r}")
        if "@" in urllib.parse.urlsplit(self.base_url).netloc:  # not shown: it may hold a password
            raise ValueError("base_url must not contain a user or password: put the API key in "
                             "the environment variable named by api_key_env")
        if self.max_retries < 0 or self.timeout <= 0 or self.backoff < 0:
            raise ValueError("need max_retries >= 0, timeout > 0 and backoff >= 0")

    @property
    def url(self) -> str:
        return self.base_url.rstrip("/") + "/chat/completions"

    def _key(self) -> _Redacted | None:
        if self.api_key_env is None:
            return None
        key = _Redacted((os.environ.get(self.api_key_env) or "").strip())
        if not key:
            raise BackendError(f"environment variable {self.api_key_env} is not set: export the "
                               f"API key for {self.base_url} there (or pass api_key_env=None for "
                               "a server that needs no key)")
        if not (key.isascii() and key.isprintable()) or any(c.isspace() for c in key):
            raise BackendError(f"environment variable {self.api_key_env} holds characters an API "
                               "key cannot have (non-ASCII, spaces or control characters): check "
                               "its value")
        return key

    @staticmethod
    def _scrub(text: str, key: str | None) -> str:
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
            headers["Authorization"] = _Redacted(f"Bearer {key}")
        last, retry_after = "", None
        for attempt in range(self.max_retries + 1):
            if attempt:
                time.sleep(self._wait(attempt, retry_after))
            try:
                raw = self._post(data, headers, key)
            except urllib.error.HTTPError as e:
                last = self._scrub(f"HTTP {e.code} {e.reason}: {self._error_body(e, key)}", key)
                retry_after = e.headers.get("Retry-After") if e.headers else None
                if 300 <= e.code < 400:
                    raise BackendError(self._redirect_refused(e, key)) from None
                if e.code not in RETRY_STATUS:
                    raise BackendError(f"{self.url} refused the request ({last})") from None
            except (urllib.error.URLError, http.client.HTTPException, ConnectionError,
                    TimeoutError) as e:
                last, retry_after = self._transport_error(e, key), None
            else:
                return self._parse(raw, key)
        raise BackendError(f"{self.url} failed after {self.max_retries + 1} attempts; last error: "
                           f"{last}")

    def _post(self, data: bytes, headers: dict, key: str | None) -> bytes:
        """One attempt within `timeout`: the 2xx reply's body, scrubbed of the key.

        Raises HTTPError for any other status (redirects included), TimeoutError past the
        deadline, BackendError for a reply too large or holding the key."""
        req = urllib.request.Request(self.url, data=data, headers=headers, method="POST")
        req.deadline = time.monotonic() + self.timeout
        with _opener().open(req, timeout=self.timeout) as resp:
            body = _read_capped(resp)
        if body is None:
            raise BackendError(f"{self.url} sent a reply of more than {MAX_REPLY_BYTES} bytes, "
                               "far more than any chat completion: check base_url")
        body, held_key = self._scrub_reply(body, key)  # from here on no frame holds the key
        if held_key:
            raise BackendError(f"{self.url} sent a reply that contains the API key (a server or "
                               "proxy echoing the request headers?); refused, so that it is "
                               "neither returned nor cached: check the server")
        return body

    def _scrub_reply(self, body: bytes, key: str | None) -> tuple[bytes, bool]:
        if not key or key.encode() not in body:
            return body, False
        return body.replace(key.encode(), b"[API key]"), True

    def _error_body(self, e: urllib.error.HTTPError, key: str | None) -> str:
        """The start of an error reply's body, scrubbed; read within the attempt's deadline."""
        try:
            text = e.read(2000).decode("utf-8", "replace")
        except (OSError, http.client.HTTPException):
            text = "(body not received before the deadline)"
        finally:
            e.close()
        return self._scrub(text, key).strip()[:500]

    def _redirect_refused(self, e: urllib.error.HTTPError, key: str | None) -> str:
        location = e.headers.get("Location") if e.headers else None
        target = (_origin(urllib.parse.urljoin(self.url, location)) if location
                  else "nowhere (no Location header)")
        return self._scrub(
            f"{self.url} answered HTTP {e.code} {e.reason}, a redirect to {target}; redirects "
            "are refused, so that the API key never goes to another server and the request is "
            "never replayed as a GET: set base_url to the address the server redirects to, if "
            "you trust it", key)

    def _transport_error(self, e: BaseException, key: str | None) -> str:
        reason = getattr(e, "reason", e)
        if isinstance(reason, TimeoutError):
            return f"no complete reply within the {self.timeout:g} s deadline (timed out)"
        return f"cannot reach the server: {self._scrub(str(reason), key)}"

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
