"""CSV: each row becomes a paragraph of `column: value` pairs, so a chunk keeps its column names."""

from __future__ import annotations

import csv
import io

from . import Limits, ParsedDocument, Section, decode_text, title_from_filename


def rows_as_paragraphs(rows: list[list[str]]) -> str:
    """`header: value; …` per row (the first row is the header)."""
    if not rows:
        return ""
    header = [cell.strip() for cell in rows[0]]
    lines = []
    for row in rows[1:]:
        pairs = [
            f"{header[i] if i < len(header) and header[i] else f'column {i + 1}'}: {cell.strip()}"
            for i, cell in enumerate(row)
            if cell.strip()
        ]
        if pairs:
            lines.append("; ".join(pairs))
    if not lines:
        lines = ["; ".join(cell for cell in header if cell)]
    return "\n\n".join(lines)


def parse(data: bytes, *, filename: str, limits: Limits) -> ParsedDocument:
    text = decode_text(data)
    try:
        dialect: type[csv.Dialect] | csv.Dialect = csv.Sniffer().sniff(text[:8192], delimiters=",;\t")
    except csv.Error:
        dialect = csv.excel
    rows = [[str(cell) for cell in row] for row in csv.reader(io.StringIO(text), dialect)]
    title = title_from_filename(filename)
    return ParsedDocument(
        title=title, content_type="text/csv", sections=[Section(text=rows_as_paragraphs(rows))]
    )
