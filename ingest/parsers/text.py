"""Plain text: one section; paragraphs are kept for the chunker to split on."""

from __future__ import annotations

from . import Limits, ParsedDocument, Section, decode_text, title_from_filename


def parse(data: bytes, *, filename: str, limits: Limits) -> ParsedDocument:
    text = decode_text(data).replace("\r\n", "\n").replace("\r", "\n").strip()
    # A short first line standing alone is the document's title.
    first, _, rest = text.partition("\n\n")
    if "\n" not in first and len(first) <= 120 and rest.strip():
        return ParsedDocument(title=first.strip(), content_type="text/plain", sections=[Section(text=rest)])
    return ParsedDocument(
        title=title_from_filename(filename), content_type="text/plain", sections=[Section(text=text)]
    )
