"""Hardening of the OpenAI-compatible HTTP client: redirects, the total deadline, the API key.

Every server here is a real one on loopback (127.0.0.1, a free port chosen by the OS), run in
threads and shut down in a `finally`, so a failing test cannot leave one behind. Dripping servers
stop by themselves after 30 s at most, which bounds the run time even when the client is broken.
"""

import contextlib
import http.server
import json
import socket
import threading
import time
import traceback

import pytest

from interp import autointerp as A
from interp.autointerp import openai_http
from interp.autointerp.backend import Sampling

SECRET = "sk-test-NEVER-SHOW-THIS-1234567890"
KEY_ENV = "INTERP_TEST_HTTP_KEY"
DRIP_SECONDS = 30.0
DRIP_EVERY = 0.25


def msgs():
    return [A.Message("user", "one two")]


def chat_completion(text: str) -> bytes:
    return json.dumps({"choices": [{"message": {"role": "assistant", "content": text},
                                    "finish_reason": "stop"}]}).encode()


@contextlib.contextmanager
def loopback(respond):
    """An HTTP server on 127.0.0.1 answering GET and POST with `respond(handler, seen)`.

    `seen` lists every request received as `(method, path, headers)`; `stop` (set on exit) tells
    slow responders to give up."""
    seen, stop = [], threading.Event()

    class Handler(http.server.BaseHTTPRequestHandler):
        def log_message(self, *args):
            pass

        def do_GET(self):
            self.answer()

        def do_POST(self):
            self.rfile.read(int(self.headers.get("Content-Length") or 0))
            self.answer()

        def answer(self):
            seen.append((self.command, self.path, dict(self.headers)))
            try:
                respond(self, seen)
            except (BrokenPipeError, ConnectionResetError):  # the client gave up: expected
                pass

    httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    httpd.stop = stop
    httpd.seen = seen
    httpd.origin = f"http://127.0.0.1:{httpd.server_address[1]}"
    httpd.url = httpd.origin + "/v1"
    thread = threading.Thread(target=httpd.serve_forever, args=(0.05,), daemon=True)
    thread.start()
    try:
        yield httpd
    finally:
        stop.set()
        httpd.shutdown()
        httpd.server_close()
        thread.join(5)


def send(handler, status: int, body: bytes, headers=()):
    handler.send_response(status)
    for name, value in headers:
        handler.send_header(name, value)
    handler.send_header("Content-Length", str(len(body)))
    handler.end_headers()
    handler.wfile.write(body)


def drip(handler, data: bytes):
    """Write `data` one byte every DRIP_EVERY seconds, for DRIP_SECONDS at most."""
    end = time.monotonic() + DRIP_SECONDS
    for byte in data:
        if time.monotonic() > end or handler.server.stop.wait(DRIP_EVERY):
            return
        handler.wfile.write(bytes([byte]))
        handler.wfile.flush()


def keyed_client(url, monkeypatch, **kw):
    monkeypatch.setenv(KEY_ENV, SECRET)
    kw.setdefault("backoff", 0.01)
    return A.OpenAICompatible(url, "m", api_key_env=KEY_ENV, **kw)


def shown(error: BaseException) -> str:
    """Everything a user could see of an error: str, repr, and the traceback with the locals
    of every frame (what `pytest -l`, IPython's verbose mode or rich tracebacks print)."""
    tb = traceback.TracebackException.from_exception(error, capture_locals=True)
    return "\n".join([str(error), repr(error), *tb.format()])


# -- 1. redirects ------------------------------------------------------------------------------

@pytest.mark.parametrize("status", [301, 302, 303, 307, 308])
def test_a_redirect_to_another_origin_never_receives_the_key_and_is_not_cached(
        status, tmp_path, monkeypatch):
    def elsewhere(handler, seen):  # origin B: would happily answer, and records what it got
        send(handler, 200, chat_completion("from the other origin"))

    with loopback(elsewhere) as b:
        def redirect(handler, seen):  # origin A: the configured server, redirecting to B
            send(handler, status, b"moved", [("Location", b.url + "/chat/completions")])

        with loopback(redirect) as a:
            cached = A.CachedBackend(keyed_client(a.url, monkeypatch), tmp_path)
            with pytest.raises(A.BackendError, match=f"HTTP {status}") as e:
                cached.chat(msgs(), Sampling())
            assert len(a.seen) == 1  # not retried
            assert a.seen[0][2]["Authorization"] == f"Bearer {SECRET}"  # A did get the key
    assert not [h for _, _, h in b.seen if "Authorization" in h]
    assert b.seen == []  # B was never contacted at all
    assert not list(tmp_path.rglob("*.json"))  # nothing cached
    message = str(e.value)
    assert b.origin in message and a.url in message and "redirect" in message
    assert "base_url" in message  # says what to do
    assert SECRET not in shown(e.value)


# -- 2. the deadline ---------------------------------------------------------------------------

def drip_body(handler, seen):
    body = b"x" * 1000
    handler.send_response(200)
    handler.send_header("Content-Length", str(len(body)))
    handler.end_headers()
    handler.wfile.flush()
    drip(handler, body)


def drip_headers(handler, seen):
    drip(handler, b"HTTP/1.1 200 OK\r\nX-Slow: " + b"y" * 1000 + b"\r\n\r\n{}")


@pytest.mark.parametrize("respond", [drip_body, drip_headers], ids=["body", "headers"])
def test_a_dripping_server_hits_the_total_deadline(respond, monkeypatch):
    with loopback(respond) as srv:
        c = keyed_client(srv.url, monkeypatch, timeout=1.0, max_retries=0)
        start = time.monotonic()
        with pytest.raises(A.BackendError, match=r"1 s deadline") as e:
            c.chat(msgs(), Sampling())
        took = time.monotonic() - start
    assert 0.9 < took < 5.0
    assert "timed out" in str(e.value) and srv.url in str(e.value)
    assert SECRET not in shown(e.value)


def test_each_retry_gets_its_own_deadline_and_the_call_stays_bounded(monkeypatch):
    with loopback(drip_body) as srv:
        c = keyed_client(srv.url, monkeypatch, timeout=1.0, max_retries=1)
        start = time.monotonic()
        with pytest.raises(A.BackendError, match=r"failed after 2 attempts.*1 s deadline"):
            c.chat(msgs(), Sampling())
        took = time.monotonic() - start
        assert len(srv.seen) == 2
    assert 1.8 < took < 5.0


def test_a_reply_too_large_to_be_a_chat_completion_is_refused(monkeypatch):
    monkeypatch.setattr(openai_http, "MAX_REPLY_BYTES", 10_000)
    with loopback(lambda h, seen: send(h, 200, b" " * 20_000 + chat_completion("ok"))) as srv:
        c = keyed_client(srv.url, monkeypatch)
        with pytest.raises(A.BackendError, match="more than 10000 bytes") as e:
            c.chat(msgs(), Sampling())
        assert len(srv.seen) == 1
    assert SECRET not in shown(e.value)


# -- 3. the key is never shown -----------------------------------------------------------------

def echo_headers_in_error(handler, seen):
    send(handler, 401, json.dumps({"error": {"message": "bad key",
                                             "headers": dict(handler.headers)}}).encode())


def echo_key_as_reply(handler, seen):
    send(handler, 200, chat_completion("your key is " + handler.headers["Authorization"]))


def echo_key_in_logprobs(handler, seen):
    token = handler.headers["Authorization"]
    send(handler, 200, json.dumps({"choices": [{
        "message": {"content": "ok"},
        "logprobs": {"content": [{"token": token, "logprob": -0.1, "top_logprobs": []}]}}]}
    ).encode())


def redirect_with_key_in_location(handler, seen):
    location = "http://127.0.0.1:9/?leak=" + handler.headers["Authorization"].split()[-1]
    send(handler, 302, b"", [("Location", location)])


@pytest.mark.parametrize("respond, message", [
    (echo_headers_in_error, "HTTP 401"),
    (echo_key_as_reply, "contains the API key"),
    (echo_key_in_logprobs, "contains the API key"),
    (redirect_with_key_in_location, "HTTP 302"),
    (drip_body, "deadline"),
])
def test_errors_never_show_the_key(respond, message, tmp_path, monkeypatch):
    with loopback(respond) as srv:
        c = keyed_client(srv.url, monkeypatch, timeout=1.0, max_retries=0)
        cached = A.CachedBackend(c, tmp_path)
        with pytest.raises(A.BackendError, match=message) as e:
            cached.chat(msgs(), Sampling(top_logprobs=1))
    assert SECRET not in shown(e.value)
    assert not list(tmp_path.rglob("*.json"))  # a reply holding the key is never cached
    for text in (repr(c), repr(cached), str(vars(c))):
        assert SECRET not in text


def test_a_server_that_is_down_gives_an_error_without_the_key(monkeypatch):
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        url = f"http://127.0.0.1:{s.getsockname()[1]}/v1"  # closed below: nothing listens
    c = keyed_client(url, monkeypatch, max_retries=1)
    with pytest.raises(A.BackendError, match="cannot reach the server") as e:
        c.chat(msgs(), Sampling())
    assert SECRET not in shown(e.value)


def test_a_key_with_a_trailing_newline_works_and_a_malformed_one_is_not_shown(monkeypatch):
    with A.ChatServer(Reverse(), api_key=SECRET) as srv:
        c = A.OpenAICompatible(srv.base_url, "m", api_key_env=KEY_ENV)
        monkeypatch.setenv(KEY_ENV, SECRET + "\n")  # as `export KEY=$(cat key.txt)` can leave it
        assert c.chat(msgs(), Sampling()).text == "two one"
        for malformed in range(len(MALFORMED_KEYS)):  # (no local of this frame holds a key)
            monkeypatch.setenv(KEY_ENV, MALFORMED_KEYS[malformed])
            with pytest.raises(A.BackendError, match=f"{KEY_ENV} holds characters") as e:
                c.chat(msgs(), Sampling())
            assert SECRET not in shown(e.value)


MALFORMED_KEYS = ("sk-two\nlines-" + SECRET, SECRET + " extra", SECRET + "\u00e9")


class Reverse:
    kind, model = "reverse", "m"

    def chat(self, messages, sampling):
        return A.Completion(" ".join(reversed(messages[-1].content.split())))


def test_a_base_url_with_a_password_is_refused_without_showing_it():
    with pytest.raises(ValueError, match="must not contain a user or password") as e:
        A.OpenAICompatible("https://me:" + SECRET + "@api.example.com/v1", "m")
    assert SECRET not in str(e.value)
