"""Tables in a PDF's text layer, found by their layout and written as Markdown tables.

pypdf's plain extraction writes a table row as one line of its cells joined by single spaces, so the row
`-5 | 4400k | 2100k | 1350k` under `Flag | Compress usage | Decompress usage | Decompress -s usage` reads as
loose words, and a chunk that starts inside the table has no header at all. Its layout mode keeps the
horizontal positions instead: a table's columns line up under each other with at least two spaces between
them. Here a table is

- a run of at least `MIN_ROWS` lines (a tall row leaves blank lines between them) that split at such gaps
  into the same number (at least 2) of cells, whose columns, each the union of its cells' spans, stay apart
  from one another (justified prose also has wide gaps, but they wander from line to line, so its "columns"
  overlap);
- of short cells: a page set in two columns also splits into two aligned cells per line, but a column of
  running text is some 40 characters wide at the least (Bringhurst's measure for multi-column setting),
  while a table cell holds a value or a label: cells that average over `MAX_MEAN_CELL_CHARS` are text;
- not a list, whose markers (•, 1.) make a column of their own, nor a code listing, whose declarations line
  up as well (most of its lines end a statement: `;`, `{`);
- under up to `MAX_HEADER_LINES` lines just above it (one blank line between allowed) whose pieces each fall
  within one column, and its first row where that row looks like a header by the test of Python's
  csv.Sniffer: its header, merged column by column ("Decompress" over "-s usage").

The table replaces the same lines of the plain text, matched word for word, so the rest of the page keeps
pypdf's plain reading order; a table whose lines the plain text does not hold in one run is left as it was.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from .tables import markdown_table

MIN_ROWS = 3
MAX_HEADER_LINES = 2
MAX_MEAN_CELL_CHARS = 30
# A row taller than a line of text shows as blank lines between rows in layout mode.
MAX_BLANK_LINES_BETWEEN_ROWS = 2
_DIGIT = re.compile(r"\d")
# A list's markers line up in a column of their own; a column of nothing else is a list, not a table.
_LIST_MARKER = re.compile(r"^(?:[•◦▪‣∙·*–-]|\(?\d{1,3}[.)]|\(?[a-z][.)])$")
# A code listing aligns its declarations in columns too; lines that end a statement are code, not rows.
_STATEMENT_END = re.compile(r"[;{}(,]\s*$")
# Cells are separated by at least two spaces; a single space joins the words of one cell.
_CELL = re.compile(r"\S+(?: \S+)*")


@dataclass(frozen=True)
class _Piece:
    start: int
    end: int
    text: str


@dataclass(frozen=True)
class _Table:
    first_line: int  # index in the layout lines of its first header (or body) line
    source_lines: tuple[str, ...]  # its non-blank lines, as they read in plain extraction
    markdown: str


def _pieces(line: str) -> list[_Piece]:
    return [_Piece(match.start(), match.end(), match.group()) for match in _CELL.finditer(line)]


def _columns(rows: list[list[_Piece]]) -> list[tuple[int, int]] | None:
    """Each column's span over `rows` (all with as many cells), or None where two columns run together."""
    spans = [
        (min(row[index].start for row in rows), max(row[index].end for row in rows))
        for index in range(len(rows[0]))
    ]
    if any(left[1] >= right[0] for left, right in zip(spans, spans[1:], strict=False)):
        return None
    return spans


def _column_of(piece: _Piece, columns: list[tuple[int, int]]) -> int | None:
    """The column a header piece stands over: the one whose zone (up to halfway to its neighbours) holds the
    piece's middle, as long as the piece does not reach over another column's cells; else None."""
    middle = (piece.start + piece.end) / 2
    bounds = [(left[1] + right[0]) / 2 for left, right in zip(columns, columns[1:], strict=False)]
    owner = sum(1 for bound in bounds if middle >= bound)
    reaches_over = any(
        piece.start < end and start < piece.end
        for index, (start, end) in enumerate(columns)
        if index != owner
    )
    return None if reaches_over else owner


def _header(lines: list[str], first_row: int, columns: list[tuple[int, int]]) -> tuple[int, list[str]]:
    """The header lines above the body row `first_row`: where they start, and the text of each column."""
    cells = [""] * len(columns)
    start = first_row
    index = first_row - 1
    if index >= 0 and not lines[index].strip():
        index -= 1  # one blank line between a header and its rows
    taken = 0
    while index >= 0 and taken < MAX_HEADER_LINES and lines[index].strip():
        pieces = _pieces(lines[index])
        owners = [_column_of(piece, columns) for piece in pieces]
        if any(owner is None for owner in owners):
            break
        for piece, owner in zip(pieces, owners, strict=True):
            assert owner is not None
            cells[owner] = f"{piece.text} {cells[owner]}".strip()
        start = index
        taken += 1
        index -= 1
    return start, cells


def _first_row_is_header(rows: list[list[str]]) -> bool:
    """Python's csv.Sniffer.has_header, in its simplest vote: some column holds digits in every row below
    the first and none in the first (a "Nightly limit" over 180, 250, ...)."""
    return any(
        not _DIGIT.search(rows[0][column]) and all(_DIGIT.search(row[column]) for row in rows[1:])
        for column in range(len(rows[0]))
    )


def _body_end(lines: list[str], start: int, cells: int) -> tuple[int, list[int]]:
    """Where the rows of `cells` cells that begin at `start` end, and the lines that are rows."""
    rows = [start]
    index = start + 1
    while index < len(lines):
        blanks = 0
        while index < len(lines) and not lines[index].strip() and blanks < MAX_BLANK_LINES_BETWEEN_ROWS:
            index += 1
            blanks += 1
        if index < len(lines) and lines[index].strip() and len(_pieces(lines[index])) == cells:
            rows.append(index)
            index += 1
        else:
            break
    return rows[-1] + 1, rows


def _tables(layout: str) -> list[_Table]:
    lines = layout.splitlines()
    found: list[_Table] = []
    index = 0
    while index < len(lines):
        pieces = _pieces(lines[index])
        if len(pieces) < 2:
            index += 1
            continue
        end, row_lines = _body_end(lines, index, len(pieces))
        rows = [_pieces(lines[line]) for line in row_lines]
        columns = _columns(rows) if len(rows) >= MIN_ROWS else None
        texts = [piece.text for row in rows for piece in row]
        code = sum(1 for line in row_lines if _STATEMENT_END.search(lines[line])) * 2 > len(row_lines)
        listed = all(_LIST_MARKER.match(row[0].text) for row in rows)
        if columns is None or code or listed or sum(map(len, texts)) / len(texts) > MAX_MEAN_CELL_CHARS:
            index += 1
            continue
        header_start, header = _header(lines, index, columns)
        body = [[piece.text for piece in row] for row in rows]
        if _first_row_is_header(body):
            header = [f"{above} {cell}".strip() for above, cell in zip(header, body[0], strict=True)]
            body = body[1:]
        markdown = markdown_table([header, *body]) if any(header) else markdown_table(body, has_header=False)
        if markdown is not None:
            source = tuple(" ".join(line.split()) for line in lines[header_start:end] if line.strip())
            found.append(_Table(first_line=header_start, source_lines=source, markdown=markdown))
        index = end
    return found


def tables_marked(plain: str, layout: str) -> str:
    """`plain` (a page's text as pypdf extracts it) with the tables that `layout` shows as Markdown tables."""
    tables = _tables(layout)
    if not tables:
        return plain
    lines = plain.splitlines()
    collapsed = [" ".join(line.split()) for line in lines]
    for table in tables:
        size = len(table.source_lines)
        at = next(
            (
                start
                for start in range(len(lines) - size + 1)
                if tuple(collapsed[start : start + size]) == table.source_lines
            ),
            None,
        )
        if at is None:
            continue
        # A blank line on each side, so that the table is a paragraph of its own for the chunker.
        lines[at : at + size] = ["", table.markdown, ""]
        collapsed[at : at + size] = ["", table.markdown, ""]
    return "\n".join(lines)
