"""interp.autointerp backends: transcript cache, the OpenAI-compatible HTTP client and server.

The HTTP client is tested against real servers on loopback (127.0.0.1, a free port), never a
mock: `ChatServer` serving (a) `Scripted`, a deterministic pure-Python backend, fast, and (b) the
tiny random-init JAX twin through `LocalBackend`, to check that the served replies and
log-probabilities equal the direct ones. Misbehaving servers (down, HTTP 500, invalid JSON, not
HTTP at all, too slow, echoing the API key) are small real `http.server`/socket servers.
"""

import http.server
import json
import socket
import threading
import time

import numpy as np
import pytest

from interp import autointerp as A
from interp.autointerp.backend import Completion, Sampling, TokenLogprob

SECRET = "sk-test-NEVER-SHOW-THIS-1234567890"


class Scripted:
    """Deterministic backend: the reply is a function of the request; it counts calls."""

    kind, model = "scripted", "scripted-1"

    def __init__(self):
        self.calls = 0

    def chat(self, messages, sampling):
        self.calls += 1
        words = messages[-1].content.split()
        text = " ".join(reversed(words))[: 4 * sampling.max_tokens]
        lps = None
        if sampling.top_logprobs is not None:
            lps = tuple(TokenLogprob(w, -0.5, {w: -0.5, "no": -1.5}) for w in
                        (text.split() or [""])[: sampling.max_tokens])
        return Completion(text, "stop", lps, len(words), len(text.split()))

    def slot_logprobs(self, messages, segments, choices):
        self.calls += 1
        return np.log(np.full((len(segments), len(choices)), 1.0 / len(choices)))


def msgs(text="one two three"):
    return [A.Message("system", "be brief"), A.Message("user", text)]


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


# -- transcript cache --------------------------------------------------------------------------

def test_cache_second_run_issues_no_backend_calls(tmp_path):
    inner = Scripted()
    first = A.CachedBackend(inner, tmp_path)
    replies = [first.chat(msgs(f"q {i}"), Sampling(max_tokens=8, top_logprobs=2)) for i in range(3)]
    slots = first.slot_logprobs(msgs(), ["a", "b"], ["0", "1"])
    assert inner.calls == 4 and first.misses == 4 and first.hits == 0

    again = A.CachedBackend(inner, tmp_path, offline=True)  # a fresh process, no backend allowed
    assert [again.chat(msgs(f"q {i}"), Sampling(max_tokens=8, top_logprobs=2))
            for i in range(3)] == replies
    np.testing.assert_allclose(again.slot_logprobs(msgs(), ["a", "b"], ["0", "1"]), slots)
    assert inner.calls == 4 and again.hits == 4 and again.misses == 0


def test_cache_key_covers_backend_model_prompt_and_sampling(tmp_path):
    inner = Scripted()
    c = A.CachedBackend(inner, tmp_path)
    c.chat(msgs(), Sampling())
    for s in (Sampling(temperature=0.7), Sampling(seed=1), Sampling(max_tokens=9),
              Sampling(top_logprobs=1)):
        c.chat(msgs(), s)
    c.chat(msgs("another prompt"), Sampling())
    other = Scripted()
    other.model = "scripted-2"
    A.CachedBackend(other, tmp_path).chat(msgs(), Sampling())
    assert inner.calls == 6 and other.calls == 1
    files = sorted(tmp_path.rglob("*.json"))
    assert len(files) == 7
    entry = json.loads(files[0].read_text())
    assert set(entry) == {"format", "kind", "model", "request", "reply", "sha256"}


def test_cache_offline_miss_and_corrupt_files_are_clear_errors(tmp_path, monkeypatch):
    monkeypatch.setenv("INTERP_AUTOINTERP_OFFLINE", "1")
    c = A.CachedBackend(Scripted(), tmp_path)
    with pytest.raises(A.TranscriptMiss, match="offline.*scripted:scripted-1"):
        c.chat(msgs(), Sampling())
    online = A.CachedBackend(Scripted(), tmp_path, offline=False)
    online.chat(msgs(), Sampling())
    (path,) = tmp_path.rglob("*.json")
    path.write_text("{ half a file")
    with pytest.raises(A.TranscriptCorrupt, match=str(path)):
        online.chat(msgs(), Sampling())
    path.write_text(json.dumps({"request": {"op": "chat"}, "reply": {"text": "x"}}))
    with pytest.raises(A.TranscriptCorrupt, match="different request"):
        online.chat(msgs(), Sampling())


def test_cached_backend_offers_slot_logprobs_only_if_inner_does(tmp_path):
    class TextOnly:
        kind, model = "t", "t"

        def chat(self, messages, sampling):
            return Completion("x")

    assert not hasattr(A.CachedBackend(TextOnly(), tmp_path), "slot_logprobs")
    assert A.LLMSimulator(A.CachedBackend(TextOnly(), tmp_path)).method == "text"
    assert A.LLMSimulator(A.CachedBackend(Scripted(), tmp_path)).method == "logprobs"


# -- server + HTTP client ----------------------------------------------------------------------

@pytest.fixture
def served():
    backend = Scripted()
    with A.ChatServer(backend) as srv:
        yield backend, srv


def client(srv, **kw):
    kw.setdefault("api_key_env", None)
    kw.setdefault("backoff", 0.01)
    return A.OpenAICompatible(srv.base_url, srv.backend.model, **kw)


def test_http_round_trip_through_the_loopback_server(served):
    backend, srv = served
    assert srv.base_url.startswith("http://127.0.0.1:")
    direct = backend.chat(msgs(), Sampling(max_tokens=8, top_logprobs=2))
    got = client(srv).chat(msgs(), Sampling(max_tokens=8, top_logprobs=2))
    assert got == direct
    assert A.complete(client(srv), msgs("a b")) == "b a"
    p = A.first_token_probs(client(srv), msgs("yes"), [["yes"], ["no"]])
    assert p == pytest.approx([np.exp(-0.5) / (np.exp(-0.5) + np.exp(-1.5)),
                               np.exp(-1.5) / (np.exp(-0.5) + np.exp(-1.5))])


def test_server_speaks_the_openai_wire_format(served):
    import urllib.request

    _, srv = served
    body = {"model": "scripted-1", "messages": [{"role": "user", "content": "x y"}],
            "max_tokens": 5, "logprobs": True, "top_logprobs": 1}
    req = urllib.request.Request(srv.base_url + "/chat/completions", json.dumps(body).encode(),
                                 {"Content-Type": "application/json"})
    with urllib.request.urlopen(req, timeout=5) as r:
        d = json.loads(r.read())
    assert d["object"] == "chat.completion" and d["model"] == "scripted-1"
    ch = d["choices"][0]
    assert ch["message"] == {"role": "assistant", "content": "y x"}
    assert ch["logprobs"]["content"][0]["token"] == "y"
    assert ch["logprobs"]["content"][0]["top_logprobs"][0]["logprob"] == -0.5
    usage = d["usage"]
    assert usage["total_tokens"] == usage["prompt_tokens"] + usage["completion_tokens"]
    with urllib.request.urlopen(srv.base_url + "/models", timeout=5) as r:
        assert json.loads(r.read())["data"][0]["id"] == "scripted-1"


@pytest.mark.parametrize("body, message", [
    ({"messages": [{"role": "wizard", "content": "x"}]}, "role must be one of"),
    ({"messages": []}, "at least one message"),
    ({"messages": [{"role": "user", "content": "x"}], "max_tokens": -3}, "max_tokens"),
    ({"messages": [{"role": "user", "content": "x"}], "stream": True}, "stream"),
    ({"messages": [{"role": "user", "content": "x"}], "n": 3}, "n=1"),
])
def test_server_rejects_bad_requests_with_400(served, body, message):
    import urllib.error
    import urllib.request

    _, srv = served
    req = urllib.request.Request(srv.base_url + "/chat/completions", json.dumps(body).encode())
    with pytest.raises(urllib.error.HTTPError) as e:
        urllib.request.urlopen(req, timeout=5)
    assert e.value.code == 400
    assert message in json.loads(e.value.read())["error"]["message"]


def test_http_client_reports_4xx_without_retrying(served):
    _, srv = served
    wrong_path = A.OpenAICompatible(srv.base_url.replace("/v1", "/v2"), "m", api_key_env=None,
                                    max_retries=3, backoff=0.01)
    with pytest.raises(A.BackendError, match=r"refused the request \(HTTP 404.*no route"):
        wrong_path.chat(msgs(), Sampling())
    with Misbehaving(lambda h, n: reply(h, 400, b'{"error": {"message": "bad model"}}')) as bad:
        c = A.OpenAICompatible(bad.url, "m", api_key_env=None, max_retries=3, backoff=0.01)
        with pytest.raises(A.BackendError, match="HTTP 400.*bad model"):
            c.chat(msgs(), Sampling())
        assert bad.n == 1


def test_api_key_is_sent_but_never_shown(tmp_path, monkeypatch):
    monkeypatch.setenv("INTERP_TEST_KEY", SECRET)
    with A.ChatServer(Scripted(), api_key=SECRET) as srv:
        c = client(srv, api_key_env="INTERP_TEST_KEY")
        cached = A.CachedBackend(c, tmp_path)
        assert cached.chat(msgs("a b"), Sampling()).text == "b a"
        files = [p.read_text() for p in tmp_path.rglob("*.json")]
        assert len(files) == 1
        for text in (repr(c), repr(cached), str(vars(c)), *files):
            assert SECRET not in text
        monkeypatch.setenv("INTERP_TEST_KEY", "sk-wrong")
        with pytest.raises(A.BackendError, match="HTTP 401") as e:
            c.chat(msgs(), Sampling())
        assert "sk-wrong" not in str(e.value)
    monkeypatch.delenv("INTERP_TEST_KEY")
    with pytest.raises(A.BackendError, match="INTERP_TEST_KEY is not set"):
        c.chat(msgs(), Sampling())


# -- misbehaving servers -----------------------------------------------------------------------

class Misbehaving:
    """A real HTTP server on loopback that answers every POST with `respond(handler, n)`."""

    def __init__(self, respond):
        self.n = 0
        outer = self

        class H(http.server.BaseHTTPRequestHandler):
            def log_message(self, *a):
                pass

            def do_POST(self):
                self.rfile_body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
                outer.n += 1
                respond(self, outer.n)

        self.httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), H)
        self.url = f"http://127.0.0.1:{self.httpd.server_address[1]}/v1"

    def __enter__(self):
        threading.Thread(target=self.httpd.serve_forever, args=(0.05,), daemon=True).start()
        return self

    def __exit__(self, *exc):
        self.httpd.shutdown()
        self.httpd.server_close()


def reply(handler, status, body: bytes, headers=()):
    try:
        handler.send_response(status)
        for k, v in headers:
            handler.send_header(k, v)
        handler.send_header("Content-Length", str(len(body)))
        handler.end_headers()
        handler.wfile.write(body)
    except (BrokenPipeError, ConnectionResetError):  # the client gave up (the timeout test)
        pass


def test_server_down_is_a_clear_error_after_bounded_fast_retries():
    url = f"http://127.0.0.1:{free_port()}/v1"  # nothing listens there
    c = A.OpenAICompatible(url, "m", api_key_env=None, max_retries=2, backoff=0.01)
    t = time.perf_counter()
    with pytest.raises(A.BackendError, match=r"failed after 3 attempts.*cannot reach the server"):
        c.chat(msgs(), Sampling())
    assert time.perf_counter() - t < 2.0


def test_http_500_is_retried_then_reported_and_a_transient_one_recovers():
    with Misbehaving(lambda h, n: reply(h, 500, b'{"error": "boom"}')) as bad:
        c = A.OpenAICompatible(bad.url, "m", api_key_env=None, max_retries=2, backoff=0.01)
        with pytest.raises(A.BackendError, match=r"failed after 3 attempts.*HTTP 500.*boom"):
            c.chat(msgs(), Sampling())
        assert bad.n == 3
    ok = json.dumps({"choices": [{"message": {"content": "fine"}, "finish_reason": "stop"}]})

    def flaky(h, n):
        if n < 3:
            reply(h, 503, b"busy", [("Retry-After", "0")])
        else:
            reply(h, 200, ok.encode())

    with Misbehaving(flaky) as srv:
        c = A.OpenAICompatible(srv.url, "m", api_key_env=None, max_retries=3, backoff=0.01)
        assert c.chat(msgs(), Sampling()).text == "fine" and srv.n == 3


@pytest.mark.parametrize("body, message", [
    (b"<html>not json</html>", "invalid JSON"),
    (b'{"choices": []}', "no choices"),
    (b'{"error": {"message": "quota exceeded"}}', "quota exceeded"),
    (b"[1, 2]", "not an object"),
])
def test_garbage_replies_are_clear_errors_without_retry(body, message):
    with Misbehaving(lambda h, n: reply(h, 200, body)) as bad:
        c = A.OpenAICompatible(bad.url, "m", api_key_env=None, max_retries=3, backoff=0.01)
        with pytest.raises(A.BackendError, match=message) as e:
            c.chat(msgs(), Sampling())
        assert "not a chat completion" in str(e.value) and bad.n == 1


def test_a_server_that_is_not_http_and_one_that_is_too_slow():
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    sock.listen()

    def garbage():
        for _ in range(2):
            conn, _ = sock.accept()
            conn.recv(65536)
            conn.sendall(b"\x00\x01garbage\r\n\r\n")
            conn.close()

    threading.Thread(target=garbage, daemon=True).start()
    url = f"http://127.0.0.1:{sock.getsockname()[1]}/v1"
    c = A.OpenAICompatible(url, "m", api_key_env=None, max_retries=1, backoff=0.01)
    with pytest.raises(A.BackendError, match="failed after 2 attempts"):
        c.chat(msgs(), Sampling())
    sock.close()

    with Misbehaving(lambda h, n: (time.sleep(1.0), reply(h, 200, b"{}"))) as slow:
        c = A.OpenAICompatible(slow.url, "m", api_key_env=None, timeout=0.2, max_retries=0)
        with pytest.raises(A.BackendError, match="timed out"):
            c.chat(msgs(), Sampling())


def test_error_bodies_are_scrubbed_of_the_key(monkeypatch):
    monkeypatch.setenv("INTERP_TEST_KEY", SECRET)

    def echo(h, n):  # a (badly behaved) proxy echoing the request headers in its error
        reply(h, 400, json.dumps({"error": dict(h.headers)}).encode())

    with Misbehaving(echo) as bad:
        c = A.OpenAICompatible(bad.url, "m", api_key_env="INTERP_TEST_KEY", backoff=0.01)
        with pytest.raises(A.BackendError, match=r"\[API key\]") as e:
            c.chat(msgs(), Sampling())
        assert SECRET not in str(e.value) and SECRET not in repr(e.value)


def test_judge_falls_back_to_text_when_a_server_refuses_logprobs():
    def no_logprobs(h, n):
        body = json.loads(h.rfile_body)
        if body.get("logprobs"):
            return reply(h, 400, b'{"error": {"message": "logprobs is not supported"}}')
        content = json.dumps({"choices": [{"message": {"content": "Yes."}}]})
        reply(h, 200, content.encode())

    with Misbehaving(no_logprobs) as srv:
        c = A.OpenAICompatible(srv.url, "m", api_key_env=None, backoff=0.01)
        judge = A.LLMJudge(c)
        item = A.Item(A.Record((" a", " cat"), [0.0, 1.0]), True)
        assert judge.judge('the word "cat"', [item, item]).tolist() == [1.0, 1.0]
        assert not judge.use_logprobs and srv.n == 3  # one refused logprobs request, two answers


def test_client_validates_configuration():
    with pytest.raises(ValueError, match="http"):
        A.OpenAICompatible("localhost:8000", "m")
    c = A.OpenAICompatible("http://x/v1/", "gemini-2.0-flash", api_key_env="GEMINI_API_KEY",
                           send_seed=False)
    assert c.url == "http://x/v1/chat/completions"
    assert "seed" not in c.request_body(msgs(), Sampling())
    assert c.request_body(msgs(), Sampling(top_logprobs=3))["logprobs"] is True


# -- the local JAX model behind the server -----------------------------------------------------

@pytest.fixture(scope="module")
def tiny():
    return A.LocalBackend("tiny-llama")


def test_tiny_jax_model_served_over_http_equals_direct(tiny):
    m = [A.Message("user", "hi")]
    s = Sampling(max_tokens=6, top_logprobs=3)
    direct = tiny.chat(m, s)
    assert len(direct.logprobs) == direct.completion_tokens
    for t in direct.logprobs:  # the chosen (greedy) token is the most likely one
        assert t.logprob == pytest.approx(max(t.top.values()), abs=1e-5)
        assert len(t.top) <= 3
    with A.ChatServer(tiny) as srv:
        c = A.OpenAICompatible(srv.base_url, tiny.model, api_key_env=None)
        assert c.chat(m, s) == direct  # exact: the same computation; JSON floats round-trip
    # (every sequence below fits one 64-token bucket: one compiled forward for the whole test)
    lp = tiny.slot_logprobs(m, ["a\t", "0\nb\t"], ["0", "1", "2"])
    assert lp.shape == (2, 3) and np.all(lp < 0)
    ids = tiny.prompt_ids(m) + tiny.lm.tokenizer.encode("a\t")
    full = tiny._log_probs(ids, [len(ids) - 1])
    assert lp[0] == pytest.approx(full[0, [ord("0"), ord("1"), ord("2")]], abs=1e-5)
    one = tiny.chat(m, Sampling(max_tokens=1, top_logprobs=2))  # the one-forward fast path
    # its token is the argmax of a full forward, generation's comes from the KV-cached decoder:
    # on a near tie of the random tiny model they may differ, but only between tied tokens
    top = direct.logprobs[0].top
    assert top[one.logprobs[0].token] == pytest.approx(max(top.values()), abs=1e-5)
    assert one.logprobs[0].logprob == pytest.approx(direct.logprobs[0].logprob, abs=1e-5)
    with pytest.raises(ValueError, match="single-token"):
        tiny.slot_logprobs(m, ["a"], ["10"])
    assert A.chatml(m) == "<|im_start|>user\nhi<|im_end|>\n<|im_start|>assistant\n"


@pytest.mark.slow
def test_smollm2_is_the_offline_default_and_serves_identically():
    """The real SmolLM2-135M-Instruct: chat template, stop token, HTTP serving, digit readout."""
    b = A.LocalBackend("smollm2-135m")
    m = [A.Message("user", "What is the capital of France?")]
    s = Sampling(max_tokens=12)
    direct = b.chat(m, s)
    assert "Paris" in direct.text and "<|im_end|>" not in direct.text
    with A.ChatServer(b) as srv:
        c = A.OpenAICompatible(srv.base_url, b.model, api_key_env=None, timeout=300)
        assert c.chat(m, s).text == direct.text
    one = b.chat(m, Sampling(max_tokens=1, top_logprobs=5))
    assert one.logprobs[0].logprob == pytest.approx(max(one.logprobs[0].top.values()))
    # the all-at-once readout: after "token<tab>", the model puts most of its mass on digits
    rec = A.Record((" The", " cat", " sat"), [0.0, 1.0, 0.0])
    msgs_, segments = A.simulation_transcript('the word "cat"', rec)
    lp = b.slot_logprobs(msgs_, segments, [str(d) for d in range(10)])
    assert lp.shape == (3, 10)
    assert np.all(np.exp(lp).sum(axis=1) > 0.5)


def test_a_flipped_byte_in_a_cached_reply_is_named(tmp_path):
    """A damaged stored reply must not be served as the model's answer."""
    online = A.CachedBackend(Scripted(), tmp_path, offline=False)
    first = online.chat(msgs(), Sampling())
    (path,) = tmp_path.rglob("*.json")
    entry = json.loads(path.read_text())
    entry["reply"]["text"] = entry["reply"]["text"][:-1] + "#"  # one character changed
    path.write_text(json.dumps(entry))
    with pytest.raises(A.TranscriptCorrupt, match=f"{path}.*sha256.*delete it"):
        online.chat(msgs(), Sampling())
    path.unlink()  # the advice works: the next call asks the backend again
    assert online.chat(msgs(), Sampling()).text == first.text


def test_a_cached_reply_from_before_checksums_is_kept_and_upgraded(tmp_path):
    online = A.CachedBackend(Scripted(), tmp_path, offline=False)
    first = online.chat(msgs(), Sampling())
    (path,) = tmp_path.rglob("*.json")
    entry = json.loads(path.read_text())
    del entry["sha256"]
    path.write_text(json.dumps(entry))
    offline = A.CachedBackend(Scripted(), tmp_path, offline=True)
    assert offline.chat(msgs(), Sampling()).text == first.text  # served, not re-asked
    assert "sha256" in json.loads(path.read_text())  # and now checked from here on
