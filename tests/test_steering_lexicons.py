"""interp.steering.lexicons: whole-word lexicon counts and hits."""

import numpy as np
import pytest

from interp.steering import lexicons


def test_lexicons_count_whole_words():
    texts = ["The bride married the groom at the wedding.", "Wedded bliss; weddingsx", ""]
    np.testing.assert_array_equal(lexicons.count(texts, "wedding"), [4, 0, 0])
    assert lexicons.hits([" Wedding ", "cake"], "wedding")
    assert not lexicons.hits(["cake"], "wedding")
    with pytest.raises(ValueError, match="unknown lexicon"):
        lexicons.count(texts, "joy")
