"""Word (.docx, python-docx): headings (Title, Heading 1–9) open sections; tables become Markdown tables."""

from __future__ import annotations

import re
from io import BytesIO

import docx
from docx.table import Table
from docx.text.paragraph import Paragraph

from . import Limits, ParsedDocument, ParseError, Section, check_zip, title_from_filename
from .tables import markdown_table, rows_as_lines

_HEADING_STYLE = re.compile(r"^heading (\d)$", re.IGNORECASE)


def _heading_level(paragraph: Paragraph) -> int | None:
    name = (paragraph.style.name if paragraph.style is not None else "") or ""
    if name.lower() == "title":
        return 0
    match = _HEADING_STYLE.match(name)
    return int(match.group(1)) if match else None


def _table_rows(table: Table) -> list[list[str]]:
    """Each row's cells in grid order; a cell merged across columns keeps its text in its first column."""
    rows = []
    for row in table.rows:
        cells: list[str] = []
        previous = None
        for cell in row.cells:
            cells.append("" if cell._tc is previous else cell.text)
            previous = cell._tc
        rows.append(cells)
    return rows


def parse(data: bytes, *, filename: str, limits: Limits) -> ParsedDocument:
    check_zip(data, limits=limits, kind="Word")
    try:
        document = docx.Document(BytesIO(data))
    except Exception as exc:  # python-docx raises bare KeyError/ValueError/lxml errors on broken parts
        raise ParseError(
            f"The Word file could not be read ({type(exc).__name__}: {exc})."[:300]
            + " Open it in Word or LibreOffice, save it again as .docx and re-upload it."
        ) from exc
    sections: list[Section] = []
    stack: list[tuple[int, str]] = []
    paragraphs: list[str] = []
    title = (document.core_properties.title or "").strip()
    first_heading = ""

    def flush() -> None:
        if paragraphs:
            sections.append(Section(text="\n\n".join(paragraphs), heading_path=tuple(t for _, t in stack)))
        paragraphs.clear()

    for block in document.iter_inner_content():
        if isinstance(block, Table):
            rows = _table_rows(block)
            table = markdown_table(rows)
            if table is not None:
                paragraphs.append(table)
            else:
                paragraphs.extend(rows_as_lines(rows))
            continue
        text = block.text.strip()
        if not text:
            continue
        level = _heading_level(block)
        if level is None:
            paragraphs.append(text)
            continue
        if level == 0:
            title = title or text
            continue
        flush()
        while stack and stack[-1][0] >= level:
            stack.pop()
        stack.append((level, re.sub(r"\s+", " ", text)))
        first_heading = first_heading or stack[-1][1]
    flush()
    return ParsedDocument(
        title=title or first_heading or title_from_filename(filename),
        content_type="application/vnd.openxmlformats-officedocument.wordprocessingml.document",
        sections=sections,
    )
