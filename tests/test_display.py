import numpy as np

from interp import display


def test_markdown_table_formats_and_escapes():
    rows = [{"a": 0.123456, "b": "x|y"}, {"a": np.float32(2.0)}]
    assert display.markdown_table(rows, ["a", "b"]).splitlines() == [
        "| a | b |", "|---|---|", "| 0.123 | x\\|y |", "| 2 |  |"]


def test_markdown_table_keeps_each_row_on_one_line():
    table = display.markdown_table([{"a": "two\nlines"}], ["a"])
    assert table.splitlines() == ["| a |", "|---|", "| two lines |"]


def test_markdown_table_escapes_pipes_in_column_names():
    # a norm written ||h|| in a header split it into extra columns (the steering page)
    table = display.markdown_table([{"||h||": 1.5}], ["||h||"])
    assert table.splitlines() == ["| \\|\\|h\\|\\| |", "|---|", "| 1.5 |"]
