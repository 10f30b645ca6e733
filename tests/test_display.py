import numpy as np

from interp import display


def test_markdown_table_formats_and_escapes():
    rows = [{"a": 0.123456, "b": "x|y"}, {"a": np.float32(2.0)}]
    assert display.markdown_table(rows, ["a", "b"]).splitlines() == [
        "| a | b |", "|---|---|", "| 0.123 | x\\|y |", "| 2 |  |"]
