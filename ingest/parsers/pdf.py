"""PDF (pypdf): one section per page, carrying its page number; a page without a text layer is OCRed."""

from __future__ import annotations

import logging
import math
import re
from collections import Counter
from io import BytesIO
from typing import Any

from pypdf import PageObject, PdfReader
from pypdf.errors import DependencyError, FileNotDecryptedError, PdfReadError, PdfStreamError

from . import Limits, ParsedDocument, ParseError, Section, title_from_filename
from .ocr import OcrUnavailable, page_images_text, text_is_garbage
from .pdf_tables import tables_marked

logger = logging.getLogger(__name__)

_DAMAGED = "The PDF is damaged or incomplete ({detail}). Export or download it again and re-upload it."
# Titles that PDF writers fill in by themselves, which name no document.
_PLACEHOLDER_TITLE = re.compile(
    r"^(untitled.*|document\d*|microsoft (word|powerpoint) - .*|.*\.(docx?|pptx?|tex|dvi|pdf|txt))$",
    re.IGNORECASE,
)
# The first page's largest text is its heading only if it is this much larger than most of the rest.
HEADING_SIZE_RATIO = 1.2
MAX_TITLE_CHARS = 200


def parse(data: bytes, *, filename: str, limits: Limits) -> ParsedDocument:
    if b"%%EOF" not in data[-2048:]:
        raise ParseError(_DAMAGED.format(detail="it has no end-of-file marker, so it was probably cut off"))
    try:
        reader = PdfReader(BytesIO(data))
        if reader.is_encrypted and not _unlock(reader):
            raise ParseError(
                "The PDF is password-protected. Remove the password (for example, print it to a new PDF) "
                "and upload it again."
            )
        if len(reader.pages) > limits.max_pages:
            raise ParseError(
                f"The PDF has {len(reader.pages):,} pages; at most {limits.max_pages:,} are allowed. "
                "Split it into smaller files."
            )
        notes: list[str] = []
        sections = [
            Section(text=_page_text(page, number=number, limits=limits, notes=notes), page=number)
            for number, page in enumerate(reader.pages, start=1)
        ]
        title = _metadata_title(reader) or (_first_page_heading(reader.pages[0]) if reader.pages else "")
    except ParseError:
        raise
    except FileNotDecryptedError as exc:
        raise ParseError("The PDF is password-protected. Remove the password and upload it again.") from exc
    except (PdfReadError, PdfStreamError, ValueError, KeyError, TypeError, AttributeError) as exc:
        raise ParseError(_DAMAGED.format(detail=f"{type(exc).__name__}: {exc}"[:200])) from exc
    return ParsedDocument(
        title=title or title_from_filename(filename),
        content_type="application/pdf",
        sections=sections,
        notes=notes,
    )


def _page_text(page: PageObject, *, number: int, limits: Limits, notes: list[str]) -> str:
    """The page's text layer; for a page without one, or with a garbage one over images (a scan), the text of
    its images, read by OCR. What could not be read is added to `notes`, in words for the documents page."""
    text = page.extract_text() or ""
    garbage = text_is_garbage(text)
    if garbage and not (limits.ocr_languages and page.images):
        logger.warning("page %d: its text layer is garbled and it has no image that OCR could read", number)
        notes.append(
            f"Page {number}: its text is garbled (a font without a character map) and cannot be searched. "
            "Export the PDF again with fonts embedded, or print it to a new PDF."
        )
    if text.strip() and not (garbage and limits.ocr_languages and page.images):
        return _tables_marked(page, text, number=number)
    if not page.images:
        return text
    if not limits.ocr_languages:
        notes.append(f"Page {number}: a scan, not read because OCR is turned off (RAGSITE_OCR_LANGUAGES).")
        return text
    try:
        read = page_images_text(page, languages=limits.ocr_languages)
    except OcrUnavailable as exc:
        logger.warning("page %d has no usable text layer and was not OCRed: %s", number, exc)
        notes.append(f"Page {number}: a scan, not read: {exc}")
        return text
    if not read.strip():
        logger.warning("page %d is an image whose text OCR could not read", number)
        notes.append(
            f"Page {number}: a scan whose text OCR could not read (too faint, too small or not text); "
            "it cannot be searched. A cleaner scan at 300 dpi reads best."
        )
    return read if read.strip() else text


def _tables_marked(page: PageObject, text: str, *, number: int) -> str:
    """The page's text with the tables its layout shows written as Markdown tables."""
    try:
        layout = page.extract_text(extraction_mode="layout") or ""
    except Exception as exc:  # pypdf's layout mode fails on some fonts: the plain text is still right
        logger.info("page %d: tables not looked for, layout extraction failed: %s", number, exc)
        return text
    return tables_marked(text, layout)


def _metadata_title(reader: PdfReader) -> str:
    title = str(reader.metadata.get("/Title") or "").strip() if reader.metadata else ""
    return "" if _PLACEHOLDER_TITLE.match(title) else title


def _first_page_heading(page: PageObject) -> str:
    """The first page's largest text (its first run of lines in that size), if it stands out from the rest."""
    runs: list[tuple[float, str]] = []

    def visit(text: str, cm: list[float], tm: list[float], font: Any, font_size: float) -> None:
        if text.strip():
            # The size on the page: the font size scaled by the text and current transformation matrices.
            scale = math.hypot(tm[2] * cm[0] + tm[3] * cm[2], tm[2] * cm[1] + tm[3] * cm[3])
            runs.append((round(font_size * (scale or 1), 1), text.strip()))

    page.extract_text(visitor_text=visit)
    if not runs:
        return ""
    sizes: Counter[float] = Counter()
    for size, text in runs:
        sizes[size] += len(text)
    largest = max(sizes)
    del sizes[largest]
    if not sizes or largest < HEADING_SIZE_RATIO * sizes.most_common(1)[0][0]:
        return ""
    first = next(index for index, (size, _) in enumerate(runs) if size == largest)
    lines = []
    for size, text in runs[first:]:
        if size != largest:
            break
        lines.append(text)
    heading = " ".join(lines)[:MAX_TITLE_CHARS]
    return heading if re.search(r"[^\W\d_]{2}", heading) else ""  # words, not a big page number


def _unlock(reader: PdfReader) -> bool:
    """Open a PDF that has only an owner password (an empty user password); False if it needs one."""
    try:
        return bool(reader.decrypt(""))
    except DependencyError as exc:
        raise ParseError(
            "The PDF is encrypted with AES, which this server cannot open. Save an unencrypted copy and "
            "upload that."
        ) from exc
