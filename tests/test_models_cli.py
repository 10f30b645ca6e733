"""`python -m interp.models` and the sampling library refuse bad input with one clear line."""

import dataclasses
import json
import re
import subprocess
import sys

import pytest

from interp import models
from interp.models import sampling


def run_cli(*args, timeout=120):
    return subprocess.run([sys.executable, "-m", "interp.models", *args], capture_output=True,
                          timeout=timeout)


LONG_PROMPT = "x" * 600  # tiny-llama: one token per byte, context 512

BAD_INVOCATIONS = {
    "empty prompt (topk)": (["topk", "tiny-llama", ""], "encodes to no tokens"),
    "empty prompt (generate)": (["generate", "tiny-llama", ""], "encodes to no tokens"),
    "k zero": (["topk", "tiny-llama", "ab", "--k", "0"], r"--k must be in 1..260"),
    "k above vocab": (["topk", "tiny-llama", "ab", "--k", "261"], r"--k must be in 1..260"),
    "prompt longer than context": (["topk", "tiny-llama", LONG_PROMPT],
                                   "prompt is 600 tokens, more than tiny-llama's context of 512"),
    "non-UTF-8 prompt": (["topk", "tiny-llama", b"caf\xe9 \xff"], "prompt is not valid UTF-8"),
    "non-UTF-8 model name": (["info", b"tiny-\xff"], "model name is not valid UTF-8"),
    "NaN temperature": (["generate", "tiny-llama", "ab", "--temperature", "nan"],
                        "temperature must be a finite number >= 0"),
    "infinite temperature": (["generate", "tiny-llama", "ab", "--temperature", "inf"],
                             "temperature must be a finite number >= 0"),
    "negative temperature": (["generate", "tiny-llama", "ab", "--temperature=-0.5"],
                             "temperature must be a finite number >= 0"),
    "NaN frequency penalty": (["generate", "tiny-llama", "ab", "--frequency-penalty", "nan"],
                              "frequency_penalty must be a finite number"),
    "prompt + new tokens longer than context": (
        ["generate", "tiny-llama", "ab", "--max-new-tokens", "511"],
        "prompt is 2 tokens \\+ 511 new tokens, more than tiny-llama's context of 512"),
    "seed beyond 64 bits": (["generate", "tiny-llama", "ab", "--seed", str(2**64)],
                            "seed must be an integer"),
}


@pytest.mark.parametrize("case", sorted(BAD_INVOCATIONS))
def test_bad_arguments_exit_2_with_one_line_and_no_traceback(case):
    args, message = BAD_INVOCATIONS[case]
    out = run_cli(*args)
    err = out.stderr.decode("utf-8", "backslashreplace")
    assert out.returncode == 2, err[-2000:]
    assert "Traceback" not in err and len(err.strip().splitlines()) == 1, err[-2000:]
    assert err.startswith("error: ")
    assert re.search(message, err), err
    assert out.stdout == b""


def test_good_topk_still_works_at_the_edges():
    out = run_cli("topk", "tiny-llama", "x" * 512, "--k", "260")  # full context, full vocab
    assert out.returncode == 0, out.stderr.decode()[-2000:]
    got = json.loads(out.stdout)
    assert len(got["ids"]) == 512 and len(got["topk"]) == 512
    assert sorted(got["topk"][0]) == list(range(260))


@pytest.fixture(scope="module")
def tiny():
    return models.load("tiny-llama")


@pytest.mark.parametrize("knobs, message", [
    (dict(temperature=float("nan")), "temperature"),
    (dict(temperature=float("inf")), "temperature"),
    (dict(temperature=-1.0), "temperature"),
    (dict(top_p=float("nan")), "top_p"),
    (dict(frequency_penalty=float("nan")), "frequency_penalty"),
    (dict(frequency_penalty=float("-inf")), "frequency_penalty"),
    (dict(max_new_tokens=-1), "max_new_tokens"),
    (dict(seed=2**64), "seed"),
])
def test_sampling_refuses_non_finite_and_out_of_range_knobs(tiny, knobs, message):
    with pytest.raises(ValueError, match=message):
        sampling.generate(tiny.arch, tiny.params, tiny.cfg, [[1, 2, 3]], **knobs)


def test_sampling_refuses_empty_out_of_vocabulary_and_too_long_prompts(tiny):
    with pytest.raises(ValueError, match="non-empty"):
        sampling.generate(tiny.arch, tiny.params, tiny.cfg, [[]])
    with pytest.raises(ValueError, match=r"outside 0..259 .*max 260"):
        sampling.generate(tiny.arch, tiny.params, tiny.cfg, [[1, 260]])
    with pytest.raises(ValueError, match=r"outside 0..259 .*min -1"):
        sampling.generate(tiny.arch, tiny.params, tiny.cfg, [[-1, 2]])
    with pytest.raises(ValueError, match="exceeds the model's context length of 512"):
        sampling.generate(tiny.arch, tiny.params, tiny.cfg, [[1] * 500], max_new_tokens=13)


def test_a_prompt_that_exactly_fills_an_odd_context_is_generated(tiny):
    """The KV cache is rounded up to a multiple of 64 positions, but never past the context:
    60 + 10 tokens fit a 70-token context and must not be refused."""
    cfg = dataclasses.replace(tiny.cfg, context_length=70)
    new = sampling.generate(tiny.arch, tiny.params, cfg, [[65] * 60], max_new_tokens=10)[0]
    assert len(new) == 10 and all(0 <= i < cfg.vocab_size for i in new)


@pytest.mark.parametrize("ids,k,message", [
    ([], 3, "non-empty"),
    ([1] * 513, 3, "context"),                   # tiny-llama's context is 512
    ([1, 2], 0, r"k must be an integer in 1\.\.260"),
    ([1, 2], 261, r"k must be an integer in 1\.\.260"),
])
def test_model_topk_refuses_what_the_cli_refuses(tiny, ids, k, message):
    """The library call, not only the CLI, refuses an empty or over-long prompt and a bad k."""
    with pytest.raises(ValueError, match=message):
        tiny.topk(ids, k)
    assert tiny.topk([1, 2], 260).shape == (2, 260)  # the edges themselves are fine
