"""Tables as Markdown tables, so that a row keeps its columns' names wherever it lands.

A row read as loose words ("London 180 EUR") cannot answer "which city has the highest limit?"; as a row of a
table under its header it can, and the model, the full-text index and the reader all see the same thing.
The chunker repeats a table's header at the top of every chunk that starts inside it (`table_header`).
"""

from __future__ import annotations

import re
from collections.abc import Sequence

# A table whose rows have a single non-empty column is a layout device (a boxed note, a code listing), not
# data; a lone row is a header with nothing under it, or a layout row. Both read better as paragraphs.
MIN_COLUMNS = 2
MIN_ROWS = 2
_SEPARATOR_ROW = re.compile(r"^\|(?:\s*:?-{3,}:?\s*\|)+$")


def _cell(text: str) -> str:
    return " ".join(text.split()).replace("|", "\\|")


def _row(cells: Sequence[str]) -> str:
    return "| " + " | ".join(cells) + " |"


def markdown_table(rows: Sequence[Sequence[str]], *, has_header: bool = True) -> str | None:
    """The rows as a Markdown table, the first as its header (or, where the source marks none, under an
    empty header, which Markdown requires); None when they are not tabular data."""
    cleaned = [[_cell(cell) for cell in row] for row in rows]
    cleaned = [row for row in cleaned if any(row)]
    if len(cleaned) < MIN_ROWS:
        return None
    if not has_header:
        cleaned.insert(0, [""] * max(len(row) for row in cleaned))
    width = max(len(row) for row in cleaned)
    padded = [row + [""] * (width - len(row)) for row in cleaned]
    body = padded if has_header else padded[1:]
    columns = [index for index in range(width) if any(row[index] for row in body)]
    if len(columns) < MIN_COLUMNS:
        return None
    table = [[row[index] for index in columns] for row in padded]
    return "\n".join([_row(table[0]), _row(["---"] * len(columns)), *(_row(row) for row in table[1:])])


def rows_as_lines(rows: Sequence[Sequence[str]]) -> list[str]:
    """Rows that are not a table: each row's non-empty cells, once each, as one line."""
    lines = []
    for row in rows:
        cells = dict.fromkeys(" ".join(cell.split()) for cell in row)
        line = " | ".join(cell for cell in cells if cell)
        if line:
            lines.append(line)
    return lines


def table_header(paragraph: str) -> str | None:
    """The header row and separator row of a Markdown table paragraph; None when it is not a table, or when
    its header is empty (nothing to repeat)."""
    lines = paragraph.split("\n", 2)
    is_table = len(lines) >= 2 and lines[0].startswith("|") and _SEPARATOR_ROW.match(lines[1].strip())
    if is_table and lines[0].replace("|", "").strip():
        return f"{lines[0]}\n{lines[1]}"
    return None
