"""HTML: the main content only (no scripts, styles, navigation); h1–h6 open sections; data tables become
Markdown tables."""

from __future__ import annotations

import re

from bs4 import BeautifulSoup, Comment, NavigableString, Tag

from . import Limits, ParsedDocument, Section, decode_text, title_from_filename
from .tables import markdown_table

_DROP = [
    "script",
    "style",
    "noscript",
    "template",
    "iframe",
    "svg",
    "canvas",
    "nav",
    "header",
    "footer",
    "aside",
    "form",
    "button",
    "select",
    "object",
    "embed",
    "head",
]
_HEADINGS = {"h1": 1, "h2": 2, "h3": 3, "h4": 4, "h5": 5, "h6": 6}
_CELLS = {"td", "th"}
_BLOCKS = {
    "p",
    "li",
    "pre",
    "blockquote",
    "dt",
    "dd",
    "figcaption",
    "caption",
    "tr",
    "div",
    "section",
    "article",
    "main",
    "ul",
    "ol",
    "dl",
    "table",
    "tbody",
    "thead",
    "figure",
    "br",
    "hr",
}


def _clean(text: str) -> str:
    text = re.sub(r"(\s*\|\s*)+$", "", text)
    return re.sub(r"[ \t\r\f\v]+", " ", re.sub(r"\s*\n\s*", "\n", text)).strip()


def _heading(tag: Tag) -> str:
    # A pilcrow left at the end is a permalink of a generator other than Sphinx's (which `parse` drops).
    return _clean(tag.get_text(" ")).rstrip("¶").rstrip()


# A cell spanning more columns than this is malformed markup, not a wider table.
MAX_COLSPAN = 64


def _data_table(table: Tag) -> str | None:
    """A table of data as a Markdown table; None for a layout table (one that holds tables, or one column)."""
    if table.find("table") is not None:
        return None
    rows: list[list[str]] = []
    has_header = False
    for row in table.find_all("tr"):
        cells: list[str] = []
        found = row.find_all(list(_CELLS), recursive=False)
        if not rows:
            # A header is marked as one: a row of <th> cells, or a row in <thead>.
            has_header = bool(found) and (
                all(cell.name == "th" for cell in found) or row.find_parent("thead") is not None
            )
        for cell in found:
            span = str(cell.get("colspan") or "1")
            columns = min(int(span), MAX_COLSPAN) if span.isdigit() else 1
            cells.append(_clean(cell.get_text(" ")))
            cells.extend([""] * (columns - 1))
        rows.append(cells)
    return markdown_table(rows, has_header=has_header)


class _Walker:
    def __init__(self) -> None:
        self.sections: list[Section] = []
        self.stack: list[tuple[int, str]] = []
        self.paragraphs: list[str] = []
        self.inline: list[str] = []

    def end_paragraph(self) -> None:
        text = _clean("".join(self.inline))
        if text:
            self.paragraphs.append(text)
        self.inline.clear()

    def end_section(self) -> None:
        self.end_paragraph()
        if self.paragraphs:
            path = tuple(title for _, title in self.stack)
            self.sections.append(Section(text="\n\n".join(self.paragraphs), heading_path=path))
        self.paragraphs.clear()

    def walk(self, node: Tag) -> None:
        for child in node.children:
            if isinstance(child, Comment):
                continue
            if isinstance(child, NavigableString):
                if type(child) is NavigableString:
                    self.inline.append(str(child))
                continue
            if not isinstance(child, Tag):
                continue
            if child.name in _HEADINGS:
                title = _heading(child)
                if title:
                    self.end_section()
                    level = _HEADINGS[child.name]
                    while self.stack and self.stack[-1][0] >= level:
                        self.stack.pop()
                    self.stack.append((level, title))
            elif child.name == "pre":
                self.end_paragraph()
                text = child.get_text().strip("\n")
                if text.strip():
                    self.paragraphs.append(text)
            elif child.name == "table" and (table := _data_table(child)) is not None:
                self.end_paragraph()
                caption = child.find("caption")
                if isinstance(caption, Tag) and (text := _clean(caption.get_text(" "))):
                    self.paragraphs.append(text)
                self.paragraphs.append(table)
            elif child.name in _CELLS:
                self.walk(child)
                self.inline.append(" | ")
            elif child.name in _BLOCKS:
                self.end_paragraph()
                self.walk(child)
                self.end_paragraph()
            else:
                self.walk(child)


def parse(data: bytes, *, filename: str, limits: Limits) -> ParsedDocument:
    soup = BeautifulSoup(decode_text(data), "lxml")
    title_tag = soup.find("title")
    title = _clean(title_tag.get_text(" ")) if title_tag else ""
    for tag in soup.find_all(_DROP):
        tag.decompose()
    for tag in soup.select("[hidden]"):
        tag.decompose()
    # Sphinx's and MkDocs' permalinks ("¶" after each heading, caption and API signature) are not text.
    for tag in soup.select("a.headerlink"):
        tag.decompose()
    root = soup.find("main") or soup.select_one('[role="main"]') or soup.find("article") or soup.body or soup
    walker = _Walker()
    if isinstance(root, Tag):
        walker.walk(root)
    walker.end_section()
    if not title:
        h1 = soup.find("h1")
        title = _heading(h1) if isinstance(h1, Tag) else ""
    return ParsedDocument(
        title=title or title_from_filename(filename), content_type="text/html", sections=walker.sections
    )
