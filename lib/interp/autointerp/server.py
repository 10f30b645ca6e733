"""A small OpenAI-compatible chat-completions server for any backend (stdlib `http.server`).

Why: it lets any OpenAI client (the `openai` package, curl, `OpenAICompatible` here, other
auto-interp tools such as delphi) talk to the local JAX model, and it gives the HTTP backend a
real server to be tested against on loopback, with no model compile and no network.

    with ChatServer(LocalBackend("smollm2-135m")) as srv:      # 127.0.0.1, a free port
        client = OpenAICompatible(srv.base_url, "smollm2-135m", api_key_env=None)

CLI: `python -m interp.autointerp --model smollm2-135m --port 8000`.

Endpoints: `POST /v1/chat/completions` (messages, max_tokens, temperature, seed, logprobs,
top_logprobs; `n` > 1 and streaming are refused with HTTP 400), `GET /v1/models`. Errors use
OpenAI's `{"error": {"message", "type"}}` shape. Requests are served one at a time (a lock around
the backend), which is what a single local model can do anyway. An optional `api_key` makes the
server demand `Authorization: Bearer <key>` (HTTP 401 otherwise), to test key handling.
"""

from __future__ import annotations

import argparse
import hmac
import json
import threading
import time
import uuid
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

from interp.autointerp.backend import Backend, BackendError, Sampling, as_messages

MAX_BODY = 8 << 20


class _Refused(Exception):
    def __init__(self, status: int, message: str, kind: str = "invalid_request_error"):
        super().__init__(message)
        self.status, self.message, self.kind = status, message, kind


def parse_request(body: dict) -> tuple[tuple, Sampling]:
    """Validate a chat-completions request body; `_Refused` (HTTP 400) names the bad field."""
    if not isinstance(body, dict):
        raise _Refused(400, "request body must be a JSON object")
    if body.get("stream"):
        raise _Refused(400, "stream=true is not supported by this server")
    if body.get("n", 1) != 1:
        raise _Refused(400, "only n=1 is supported by this server")
    try:
        messages = as_messages(body.get("messages") or [])
    except (TypeError, ValueError) as e:
        raise _Refused(400, f"messages: {e}") from None
    try:
        max_tokens = body.get("max_completion_tokens", body.get("max_tokens", 256))
        top = body.get("top_logprobs")
        if body.get("logprobs") and top is None:
            top = 0
        sampling = Sampling(max_tokens=max_tokens, temperature=float(body.get("temperature", 1.0)),
                            seed=int(body.get("seed") or 0),
                            top_logprobs=top if body.get("logprobs") else None)
    except (TypeError, ValueError) as e:
        raise _Refused(400, str(e)) from None
    return messages, sampling


def completion_json(c, model: str) -> dict:
    """A backend `Completion` as an OpenAI chat.completion object."""
    logprobs = None
    if c.logprobs is not None:
        def entry(tok, lp):
            return {"token": tok, "logprob": lp, "bytes": list(tok.encode())}

        logprobs = {"content": [{**entry(t.token, t.logprob),
                                 "top_logprobs": [entry(k, v) for k, v in t.top.items()]}
                                for t in c.logprobs]}
    prompt, done = c.prompt_tokens or 0, c.completion_tokens or 0
    return {"id": f"chatcmpl-{uuid.uuid4().hex[:24]}", "object": "chat.completion",
            "created": int(time.time()), "model": model,
            "choices": [{"index": 0, "message": {"role": "assistant", "content": c.text},
                         "finish_reason": c.finish_reason, "logprobs": logprobs}],
            "usage": {"prompt_tokens": prompt, "completion_tokens": done,
                      "total_tokens": prompt + done}}


class ChatServer:
    """Serve `backend` on `http://host:port/v1` from a background thread (a context manager)."""

    def __init__(self, backend: Backend, *, host: str = "127.0.0.1", port: int = 0,
                 api_key: str | None = None, quiet: bool = True):
        self.backend, self.api_key, self.quiet = backend, api_key, quiet
        self.lock = threading.Lock()
        self.requests = 0
        self.httpd = ThreadingHTTPServer((host, port), self._handler())
        self.httpd.daemon_threads = True
        self.thread: threading.Thread | None = None

    def __repr__(self) -> str:
        return f"ChatServer({self.backend!r}, {self.base_url})"

    @property
    def port(self) -> int:
        return self.httpd.server_address[1]

    @property
    def base_url(self) -> str:
        return f"http://{self.httpd.server_address[0]}:{self.port}/v1"

    def start(self) -> ChatServer:
        self.thread = threading.Thread(target=self.httpd.serve_forever, args=(0.05,), daemon=True,
                                       name=f"chat-server-{self.port}")
        self.thread.start()
        return self

    def close(self) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()
        if self.thread is not None:
            self.thread.join(timeout=5)

    def __enter__(self) -> ChatServer:
        return self.start()

    def __exit__(self, *exc) -> None:
        self.close()

    def serve_forever(self) -> None:
        try:
            self.httpd.serve_forever()
        finally:
            self.httpd.server_close()

    def _handler(self):
        server = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, fmt, *args):  # requests are never logged with headers
                if not server.quiet:
                    super().log_message(fmt, *args)

            def _send(self, status: int, obj: dict) -> None:
                data = json.dumps(obj).encode()
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            def _error(self, status: int, message: str, kind: str) -> None:
                self._send(status, {"error": {"message": message, "type": kind}})

            def _authorised(self) -> bool:
                if server.api_key is None:
                    return True
                got = self.headers.get("Authorization", "")
                if hmac.compare_digest(got.encode(), f"Bearer {server.api_key}".encode()):
                    return True
                self._error(401, "missing or wrong API key", "authentication_error")
                return False

            def do_GET(self):
                if self.path.rstrip("/") != "/v1/models":
                    return self._error(404, f"no route GET {self.path}", "not_found_error")
                if self._authorised():
                    self._send(200, {"object": "list", "data": [
                        {"id": server.backend.model, "object": "model", "owned_by": "interp"}]})

            def do_POST(self):
                if self.path.rstrip("/") != "/v1/chat/completions":
                    return self._error(404, f"no route POST {self.path}", "not_found_error")
                if not self._authorised():
                    return
                try:
                    n = int(self.headers.get("Content-Length") or 0)
                    if not 0 < n <= MAX_BODY:
                        raise _Refused(400 if n <= 0 else 413, f"bad Content-Length {n}")
                    try:
                        body = json.loads(self.rfile.read(n))
                    except (json.JSONDecodeError, UnicodeDecodeError):
                        raise _Refused(400, "request body is not valid JSON") from None
                    messages, sampling = parse_request(body)
                    with server.lock:
                        server.requests += 1
                        c = server.backend.chat(messages, sampling)
                    self._send(200, completion_json(c, server.backend.model))
                except _Refused as e:
                    self._error(e.status, e.message, e.kind)
                except (BackendError, ValueError) as e:
                    self._error(400 if isinstance(e, ValueError) else 502, str(e),
                                "invalid_request_error" if isinstance(e, ValueError)
                                else "backend_error")
                except Exception as e:  # noqa: BLE001  (the client gets a 500, the server lives)
                    self._error(500, f"{type(e).__name__}: {e}", "server_error")

        return Handler


def main(argv=None) -> None:
    ap = argparse.ArgumentParser(prog="python -m interp.autointerp",
                                 description=__doc__.splitlines()[0])
    ap.add_argument("--model", default="smollm2-135m", help="a name for interp.models.load")
    ap.add_argument("--host", default="127.0.0.1")
    ap.add_argument("--port", type=int, default=8000)
    ap.add_argument("--api-key-env", default=None,
                    help="demand the key held in this environment variable")
    args = ap.parse_args(argv)
    # Imported after parsing, so that `--help` and bad arguments answer without loading JAX.
    import os

    from interp.autointerp.local import LocalBackend

    key = os.environ.get(args.api_key_env) if args.api_key_env else None
    if args.api_key_env and not key:
        ap.error(f"environment variable {args.api_key_env} is not set")
    srv = ChatServer(LocalBackend(args.model), host=args.host, port=args.port, api_key=key,
                     quiet=False)
    print(f"serving {args.model} at {srv.base_url} (Ctrl-C to stop)", flush=True)
    try:
        srv.serve_forever()
    except KeyboardInterrupt:
        pass


if __name__ == "__main__":
    main()
