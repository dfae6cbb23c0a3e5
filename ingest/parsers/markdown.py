"""Markdown: ATX (`#`) and setext (`===`) headings open sections; code fences are kept whole."""

from __future__ import annotations

import re

from . import Limits, ParsedDocument, Section, decode_text, title_from_filename

_ATX = re.compile(r"^ {0,3}(#{1,6})\s+(.*?)\s*#*\s*$")
_SETEXT = re.compile(r"^ {0,3}(=+|-+)\s*$")
_FENCE = re.compile(r"^ {0,3}(```|~~~)")
_FRONT_MATTER = re.compile(r"\A---\n(.*?)\n---\n", re.DOTALL)
_FRONT_MATTER_TITLE = re.compile(r"^title:\s*(.+?)\s*$", re.MULTILINE)


def _heading_text(raw: str) -> str:
    text = re.sub(r"[*_`]+", "", raw)
    text = re.sub(r"\[([^\]]*)\]\([^)]*\)", r"\1", text)
    return re.sub(r"\s+", " ", text).strip()


def parse(data: bytes, *, filename: str, limits: Limits) -> ParsedDocument:
    source = decode_text(data).replace("\r\n", "\n").replace("\r", "\n")
    front_matter = _FRONT_MATTER.match(source)
    metadata_title = ""
    if front_matter:
        found = _FRONT_MATTER_TITLE.search(front_matter.group(1))
        metadata_title = found.group(1).strip("\"'").strip() if found else ""
        source = source[front_matter.end() :]
    lines = source.split("\n")
    sections: list[Section] = []
    stack: list[tuple[int, str]] = []
    body: list[str] = []
    in_fence: str | None = None
    # A level-1 heading that opens the file is the document's title; failing one, the first heading.
    document_title = ""
    first_heading = ""

    def flush() -> None:
        text = "\n".join(body).strip()
        if text:
            sections.append(Section(text=text, heading_path=tuple(title for _, title in stack)))
        body.clear()

    def open_heading(level: int, title: str) -> None:
        nonlocal document_title, first_heading
        if level == 1 and not document_title and not sections and not "".join(body).strip():
            document_title = title
        first_heading = first_heading or title
        flush()
        while stack and stack[-1][0] >= level:
            stack.pop()
        stack.append((level, title))

    for index, line in enumerate(lines):
        fence = _FENCE.match(line)
        if in_fence:
            body.append(line)
            if fence and fence.group(1) == in_fence:
                in_fence = None
            continue
        if fence:
            in_fence = fence.group(1)
            body.append(line)
            continue
        atx = _ATX.match(line)
        if atx and _heading_text(atx.group(2)):
            open_heading(len(atx.group(1)), _heading_text(atx.group(2)))
            continue
        setext = _SETEXT.match(line)
        previous = body[-1] if body else ""
        starts_paragraph = len(body) < 2 or not body[-2].strip()
        if setext and previous.strip() and starts_paragraph and index > 0:
            body.pop()
            open_heading(1 if setext.group(1).startswith("=") else 2, _heading_text(previous))
            continue
        body.append(line)
    flush()

    return ParsedDocument(
        title=metadata_title or document_title or first_heading or title_from_filename(filename),
        content_type="text/markdown",
        sections=sections,
    )
