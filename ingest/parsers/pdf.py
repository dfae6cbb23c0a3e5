"""PDF (pypdf): one section per page, carrying its page number."""

from __future__ import annotations

from io import BytesIO

from pypdf import PdfReader
from pypdf.errors import DependencyError, FileNotDecryptedError, PdfReadError, PdfStreamError

from . import Limits, ParsedDocument, ParseError, Section, title_from_filename

_DAMAGED = "The PDF is damaged or incomplete ({detail}). Export or download it again and re-upload it."


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
        sections = [
            Section(text=page.extract_text() or "", page=number)
            for number, page in enumerate(reader.pages, start=1)
        ]
        title = str(reader.metadata.get("/Title") or "") if reader.metadata else ""
    except ParseError:
        raise
    except FileNotDecryptedError as exc:
        raise ParseError("The PDF is password-protected. Remove the password and upload it again.") from exc
    except (PdfReadError, PdfStreamError, ValueError, KeyError, TypeError, AttributeError) as exc:
        raise ParseError(_DAMAGED.format(detail=f"{type(exc).__name__}: {exc}"[:200])) from exc
    return ParsedDocument(
        title=title or title_from_filename(filename), content_type="application/pdf", sections=sections
    )


def _unlock(reader: PdfReader) -> bool:
    """Open a PDF that has only an owner password (an empty user password); False if it needs one."""
    try:
        return bool(reader.decrypt(""))
    except DependencyError as exc:
        raise ParseError(
            "The PDF is encrypted with AES, which this server cannot open. Save an unencrypted copy and "
            "upload that."
        ) from exc
