"""An answer's Markdown as safe HTML, its `[n]` citations linked to the passages they cite."""

from __future__ import annotations

import re
from collections.abc import Mapping
from functools import lru_cache

import markdown  # type: ignore[import-untyped]
import nh3
from django.urls import reverse
from django.utils.html import escape
from django.utils.safestring import SafeString, mark_safe

ALLOWED_TAGS = {
    "a", "p", "br", "hr", "strong", "em", "b", "i", "code", "pre", "blockquote", "ul", "ol", "li",
    "h3", "h4", "h5", "h6", "table", "thead", "tbody", "tr", "th", "td", "sup",
}  # fmt: skip
# No `class` anywhere: a link the model (or a passage it quoted) writes must not look like a citation.
ALLOWED_ATTRIBUTES = {"a": {"href", "title"}, "th": {"align"}, "td": {"align"}}
# `[1]`, `[2, 3]` or `[2][3]`: the model cites passage numbers in square brackets.
_CITATION = re.compile(r"\[(\d{1,2}(?:\s*,\s*\d{1,2})*)\]")
_TAG = re.compile(r"(<[^>]*>)")


def answer_html(text: str, *, passage_urls: Mapping[int, str]) -> SafeString:
    """Render Markdown and sanitise everything the model wrote, then link citations of known passages.

    Sanitising comes before the citation links, so only this function can make a `cite` link: nothing in
    the model's output (or in a passage it quoted) can add a script, an event handler, a javascript: URL or
    a link dressed as a citation. Citations are linked in text only, never inside a tag or another link.
    The last few hundred are kept: a shared answer is shown to everyone who asked it, in the same words.
    """
    return _answer_html(text, tuple(sorted(passage_urls.items())))


@lru_cache(maxsize=512)
def _answer_html(text: str, passage_urls_items: tuple[tuple[int, str], ...]) -> SafeString:
    passage_urls = dict(passage_urls_items)
    html = markdown.markdown(text, extensions=["fenced_code", "tables", "sane_lists"], output_format="html")
    html = nh3.clean(
        html,
        tags=ALLOWED_TAGS,
        attributes=ALLOWED_ATTRIBUTES,
        url_schemes={"http", "https", "mailto"},
        link_rel="noopener noreferrer nofollow",
    )

    def link(match: re.Match[str]) -> str:
        numbers = [int(part) for part in match.group(1).split(",")]
        if not all(number in passage_urls for number in numbers):
            return match.group(0)
        return "".join(
            f'<a class="cite" href="{escape(passage_urls[number])}" '
            f'title="Open passage {number}">[{number}]</a>'
            for number in numbers
        )

    parts = _TAG.split(html)
    in_link = 0
    for index, part in enumerate(parts):
        if index % 2:
            if re.match(r"<a[\s>]", part):
                in_link += 1
            elif part.startswith("</a"):
                in_link = max(in_link - 1, 0)
        elif not in_link:
            parts[index] = _CITATION.sub(link, part)
    # Every part is nh3's output or a link built here from an escaped URL of ours.
    return mark_safe("".join(parts))  # noqa: S308


def passage_url(chunk_id: int, *, highlight: tuple[int | None, int | None] | None = None) -> str:
    """The passage's page; `highlight` (offsets into the chunk's text) marks one sentence of it."""
    url = reverse("search:passage", kwargs={"chunk_id": chunk_id})
    if highlight is not None and highlight[0] is not None and highlight[1] is not None:
        url += f"?hl={int(highlight[0])}-{int(highlight[1])}"
    return url + "#passage"
