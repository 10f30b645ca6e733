"""Small display helpers for the notebooks: results as Markdown tables.

The book renders Markdown outputs as MyST (`nb_render_markdown_format: myst` in
`_config.yml`), so these become real tables; its build checks that none is left as text.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np


def format_cell(value) -> str:
    """Floats to 3 significant digits; anything else as text, with '|' escaped for Markdown.

    A newline would end the table row, so text is kept on one line.
    """
    if isinstance(value, (float, np.floating)):
        return f"{value:.3g}"
    return str(value).replace("|", "\\|").replace("\n", " ")


def markdown_table(rows: Sequence[dict], columns: Sequence[str]) -> str:
    """A list of dicts as a Markdown table of `columns` (a missing key gives an empty cell)."""
    lines = ["| " + " | ".join(format_cell(c) for c in columns) + " |",
             "|" + "---|" * len(columns)]
    lines += ["| " + " | ".join(format_cell(r.get(c, "")) for c in columns) + " |" for r in rows]
    return "\n".join(lines)


def show_table(rows: Sequence[dict], columns: Sequence[str]) -> None:
    """Display `markdown_table(rows, columns)` in a notebook."""
    from IPython.display import Markdown, display

    display(Markdown(markdown_table(rows, columns)))
