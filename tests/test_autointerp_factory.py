"""interp.autointerp.factory: make_backend's checks and offline local replay without loading."""

import pytest

from interp import autointerp as A


def test_make_backend_validates_and_replays_local_without_loading(tmp_path):
    with pytest.raises(ValueError, match="unknown backend kind 'gpt'"):
        A.make_backend("gpt")
    with pytest.raises(ValueError, match="base_url"):
        A.make_backend("openai", model="m")
    b = A.make_backend("local", cache_dir=tmp_path, offline=True)  # does not load SmolLM2
    assert "not loaded" in repr(b) and A.LLMSimulator(b).method == "logprobs"
    with pytest.raises(A.TranscriptMiss):
        A.complete(b, [A.Message("user", "hi")])
