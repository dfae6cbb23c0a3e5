"""PowerPoint (.pptx, python-pptx): one section per slide (its number as the page, its title as heading)."""

from __future__ import annotations

from io import BytesIO

import pptx
from pptx.shapes.base import BaseShape

from . import Limits, ParsedDocument, ParseError, Section, check_zip, title_from_filename


def _shape_texts(shape: BaseShape) -> list[str]:
    texts: list[str] = []
    if shape.has_text_frame:
        texts.extend(p.text.strip() for p in shape.text_frame.paragraphs if p.text.strip())  # type: ignore[attr-defined]
    if getattr(shape, "has_table", False):
        for row in shape.table.rows:  # type: ignore[attr-defined]
            line = " | ".join(cell.text.strip() for cell in row.cells if cell.text.strip())
            if line:
                texts.append(line)
    for child in getattr(shape, "shapes", []):
        texts.extend(_shape_texts(child))
    return texts


def parse(data: bytes, *, filename: str, limits: Limits) -> ParsedDocument:
    check_zip(data, limits=limits, kind="PowerPoint")
    try:
        presentation = pptx.Presentation(BytesIO(data))
    except Exception as exc:  # python-pptx raises assorted KeyError/ValueError/XML errors on broken parts
        raise ParseError(
            f"The PowerPoint file could not be read ({type(exc).__name__}: {exc})."[:300]
            + " Save it again as .pptx and re-upload it."
        ) from exc
    sections = []
    for number, slide in enumerate(presentation.slides, start=1):
        title_shape = slide.shapes.title
        heading = title_shape.text_frame.text.strip() if title_shape is not None else ""
        texts: list[str] = []
        for shape in slide.shapes:
            if title_shape is not None and shape.shape_id == title_shape.shape_id:
                continue
            texts.extend(_shape_texts(shape))
        if slide.has_notes_slide and slide.notes_slide.notes_text_frame is not None:
            notes = slide.notes_slide.notes_text_frame.text.strip()
            if notes:
                texts.append(notes)
        if not texts and heading:
            texts = [heading]
        sections.append(
            Section(text="\n\n".join(texts), heading_path=(heading,) if heading else (), page=number)
        )
    title = (presentation.core_properties.title or "").strip()
    return ParsedDocument(
        title=title or title_from_filename(filename),
        content_type="application/vnd.openxmlformats-officedocument.presentationml.presentation",
        sections=sections,
    )
