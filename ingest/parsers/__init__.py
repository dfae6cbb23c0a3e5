"""Text and structure out of an uploaded file; the format is chosen by content (magic bytes), not name.

Each format is one module with `parse(data, *, filename, limits) -> ParsedDocument`; adding a format means
adding a module and a line to `_detect_format`.
"""

from __future__ import annotations

import importlib
import re
import zipfile
from collections.abc import Callable
from dataclasses import dataclass, field
from io import BytesIO
from pathlib import PurePath

SECTION_SEPARATOR = "\n\n"


class ParseError(Exception):
    """The file cannot be turned into text; `message` tells a person what is wrong and what to do."""

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message


@dataclass(frozen=True)
class Section:
    """A run of text under one heading path (and on one page, where the format has pages)."""

    text: str
    heading_path: tuple[str, ...] = ()
    page: int | None = None


@dataclass(frozen=True)
class Limits:
    """Bounds on what a parser may unpack (against zip bombs and runaway files), and whether it may OCR."""

    max_unpacked_bytes: int = 200 * 1024 * 1024
    max_pages: int = 5000
    # Tesseract's languages for pages that are images of text ("eng", "eng+deu"); "" turns OCR off.
    ocr_languages: str = "eng"


@dataclass
class ParsedDocument:
    title: str
    content_type: str
    sections: list[Section] = field(default_factory=list)
    # What a person should know about parts that could not be read (a page OCR could not read), in words.
    notes: list[str] = field(default_factory=list)

    @property
    def text(self) -> str:
        """The extracted text: sections joined by a blank line; chunk offsets index into it."""
        return SECTION_SEPARATOR.join(section.text for section in self.sections)


MIME_TYPES = {
    "pdf": "application/pdf",
    "docx": "application/vnd.openxmlformats-officedocument.wordprocessingml.document",
    "xlsx": "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet",
    "pptx": "application/vnd.openxmlformats-officedocument.presentationml.presentation",
    "html": "text/html",
    "markdown": "text/markdown",
    "csv": "text/csv",
    "text": "text/plain",
}

# Formats we recognise but cannot read, so that the message names what the file really is.
_FOREIGN_MAGIC: list[tuple[bytes, str]] = [
    (b"\x89PNG", "a PNG image"),
    (b"\xff\xd8\xff", "a JPEG image"),
    (b"GIF8", "a GIF image"),
    (b"\x1f\x8b", "a gzip archive"),
    (b"7z\xbc\xaf", "a 7-Zip archive"),
    (b"Rar!", "a RAR archive"),
    (b"\x7fELF", "a Linux program"),
    (b"MZ", "a Windows program"),
    (b"\xd0\xcf\x11\xe0", "an old Microsoft Office file (.doc/.xls/.ppt)"),
    (b"{\\rtf", "an RTF document"),
    (b"ID3", "an MP3 file"),
    (b"OggS", "an Ogg audio file"),
    (b"SQLite format 3", "an SQLite database"),
]
_SUPPORTED = "PDF, Word (.docx), PowerPoint (.pptx), Excel (.xlsx), CSV, HTML, Markdown or plain text"


def title_from_filename(filename: str) -> str:
    stem = PurePath(filename).stem.replace("_", " ").replace("-", " ").strip()
    return re.sub(r"\s+", " ", stem) or "Untitled"


def decode_text(data: bytes) -> str:
    """Text from bytes: UTF-8 (with or without BOM) or UTF-16 with BOM, else Windows-1252."""
    if data.startswith((b"\xff\xfe", b"\xfe\xff")):
        return data.decode("utf-16")
    try:
        return data.decode("utf-8-sig")
    except UnicodeDecodeError:
        return data.decode("cp1252", errors="replace")


def _looks_binary(data: bytes) -> bool:
    head = data[:8192]
    if head.startswith((b"\xff\xfe", b"\xfe\xff")):
        return False
    if b"\x00" in head:
        return True
    control = sum(1 for byte in head if byte < 32 and byte not in (9, 10, 12, 13))
    return control > len(head) * 0.02


def check_zip(data: bytes, *, limits: Limits, kind: str) -> zipfile.ZipFile:
    """Open an Office file's ZIP container, refusing one that unpacks to more than the limit."""
    try:
        archive = zipfile.ZipFile(BytesIO(data))
    except zipfile.BadZipFile as exc:
        raise ParseError(
            f"The {kind} file is damaged or incomplete ({exc}). "
            "Save it again from its program and re-upload it."
        ) from exc
    unpacked = sum(info.file_size for info in archive.infolist())
    if unpacked > limits.max_unpacked_bytes:
        raise ParseError(
            f"The {kind} file would unpack to {unpacked / 2**20:,.0f} MiB, more than the "
            f"{limits.max_unpacked_bytes / 2**20:,.0f} MiB allowed (it may be a zip bomb). "
            "Split it into smaller files or remove embedded media."
        )
    return archive


def _zip_kind(data: bytes) -> str:
    try:
        names = set(zipfile.ZipFile(BytesIO(data)).namelist())
    except zipfile.BadZipFile as exc:
        raise ParseError(
            f"The file is a damaged ZIP container ({exc}). If it is a Word, Excel or PowerPoint file, "
            "save it again and re-upload it."
        ) from exc
    if "word/document.xml" in names:
        return "docx"
    if "xl/workbook.xml" in names:
        return "xlsx"
    if "ppt/presentation.xml" in names:
        return "pptx"
    raise ParseError(f"The file is a ZIP archive, not a document. Upload {_SUPPORTED} files, not archives.")


_HTML_START = re.compile(
    rb"^\s*(<!--.*?-->\s*)*<(!doctype\s+html|html|head|body)[\s>]", re.IGNORECASE | re.DOTALL
)
_MARKDOWN_SIGNS = re.compile(r"^(#{1,6}\s+\S|```|~~~|\S.*\n(=+|-+)\s*$)", re.MULTILINE)


def _text_kind(text: str) -> str:
    if _looks_like_csv(text):
        return "csv"
    if _MARKDOWN_SIGNS.search(text):
        return "markdown"
    return "text"


def _looks_like_csv(text: str) -> bool:
    lines = [line for line in text.splitlines()[:50] if line.strip()]
    if len(lines) < 2:
        return False
    for delimiter in (",", ";", "\t"):
        counts = {line.count(delimiter) for line in lines}
        if len(counts) == 1 and counts.pop() >= 1:
            return True
    return False


def detect_format(data: bytes) -> str:
    """The format of `data` from its content; raises ParseError for empty, binary or unsupported files."""
    if not data.strip():
        raise ParseError("The file is empty. Upload the document itself, not an empty file.")
    head = data[:1024]
    if b"%PDF-" in head:
        return "pdf"
    if data.startswith(b"PK\x03\x04"):
        return _zip_kind(data)
    for magic, name in _FOREIGN_MAGIC:
        if data.startswith(magic):
            raise ParseError(f"The file is {name}, which has no text to index. Upload {_SUPPORTED} files.")
    if _looks_binary(data):
        raise ParseError(
            "The file is binary, not text, whatever its name says. "
            f"Upload {_SUPPORTED} files (check that it was not renamed from another format)."
        )
    if _HTML_START.match(data[:4096]) or re.search(rb"<html[\s>]", data[:4096], re.IGNORECASE):
        return "html"
    return _text_kind(decode_text(data[:65536]))


# Each format's parser module, imported on first use: together they pull in pypdf, python-docx, openpyxl,
# python-pptx and lxml, about a second of imports that a process reading only text need not pay.
_PARSER_MODULES = ("pdf", "docx", "xlsx", "pptx", "html", "markdown", "csv", "text")


def _parser_for(kind: str) -> Callable[..., ParsedDocument]:
    if kind not in _PARSER_MODULES:
        raise KeyError(kind)
    module = importlib.import_module(f"{__name__}.{kind}")
    parse_format: Callable[..., ParsedDocument] = module.parse
    return parse_format


def parsers_preload() -> None:
    """Import every format's parser now (a Celery worker does so before it forks its pool processes)."""
    for kind in _PARSER_MODULES:
        _parser_for(kind)


def _parse_as(kind: str, data: bytes, *, filename: str, limits: Limits) -> ParsedDocument:
    parsed = _parser_for(kind)(data, filename=filename, limits=limits)
    parsed.content_type = MIME_TYPES[kind]
    parsed.title = re.sub(r"\s+", " ", parsed.title).strip()[:500] or title_from_filename(filename)
    parsed.sections = [
        Section(text=s.text.strip(), heading_path=tuple(h for h in s.heading_path if h), page=s.page)
        for s in parsed.sections
        if s.text.strip()
    ]
    return parsed


def parse(data: bytes, *, filename: str, limits: Limits | None = None) -> ParsedDocument:
    """Parse a file of any supported format into titled sections; raises ParseError with a useful message."""
    kind = detect_format(data)
    limits = limits or Limits()
    parsed = _parse_as(kind, data, filename=filename, limits=limits)
    if not parsed.sections and kind == "markdown":
        # Text that only looked like Markdown: a file of headings alone, or one long line that opens with
        # "# " (a comment, a hashtag). Its words are the content; they are not lost.
        parsed = _parse_as("text", data, filename=filename, limits=limits)
    if not parsed.sections:
        raise ParseError(
            "No text could be extracted from the file. If it is a scanned document, OCR could not read "
            "its pages (a scan of at least 200 dpi reads best; OCR is off where RAGSITE_OCR_LANGUAGES is "
            "empty or Tesseract is not installed); otherwise check that it is not blank."
        )
    return parsed
