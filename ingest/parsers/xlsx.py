"""Excel (.xlsx, openpyxl): one section per sheet, each row as `column: value` pairs."""

from __future__ import annotations

from io import BytesIO

import openpyxl

from . import Limits, ParsedDocument, ParseError, Section, check_zip, title_from_filename
from .csv import rows_as_paragraphs


def parse(data: bytes, *, filename: str, limits: Limits) -> ParsedDocument:
    check_zip(data, limits=limits, kind="Excel")
    try:
        workbook = openpyxl.load_workbook(BytesIO(data), read_only=True, data_only=True)
    except Exception as exc:  # openpyxl raises assorted KeyError/ValueError/XML errors on broken parts
        raise ParseError(
            f"The Excel file could not be read ({type(exc).__name__}: {exc})."[:300]
            + " Save it again as .xlsx and re-upload it."
        ) from exc
    sections = []
    for sheet in workbook.worksheets:
        rows = [
            ["" if value is None else str(value) for value in row]
            for row in sheet.iter_rows(values_only=True)
        ]
        text = rows_as_paragraphs([row for row in rows if any(cell.strip() for cell in row)])
        sections.append(Section(text=text, heading_path=(sheet.title,)))
    title = (workbook.properties.title or "").strip()
    workbook.close()
    return ParsedDocument(
        title=title or title_from_filename(filename),
        content_type="application/vnd.openxmlformats-officedocument.spreadsheetml.sheet",
        sections=sections,
    )
