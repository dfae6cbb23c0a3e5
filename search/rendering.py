"""An answer's Markdown as safe HTML, its `[n]` citations linked to the passages they cite."""

from __future__ import annotations

import re
from collections.abc import Mapping

import markdown  # type: ignore[import-untyped]
import nh3
from django.urls import reverse
from django.utils.safestring import SafeString, mark_safe

ALLOWED_TAGS = {
    "a", "p", "br", "hr", "strong", "em", "b", "i", "code", "pre", "blockquote", "ul", "ol", "li",
    "h3", "h4", "h5", "h6", "table", "thead", "tbody", "tr", "th", "td", "sup",
}  # fmt: skip
ALLOWED_ATTRIBUTES = {"a": {"href", "title", "class"}, "th": {"align"}, "td": {"align"}}
# `[1]`, `[2, 3]` or `[2][3]`: the model cites passage numbers in square brackets.
_CITATION = re.compile(r"\[(\d{1,2}(?:\s*,\s*\d{1,2})*)\]")


def answer_html(text: str, *, passage_urls: Mapping[int, str]) -> SafeString:
    """Render Markdown, link citations of known passages, then sanitise everything the model wrote.

    Sanitising comes last, so nothing in the model's output (or in a passage it quoted) can add a
    script, an event handler or a javascript: URL, whatever the citation step produced.
    """
    html = markdown.markdown(text, extensions=["fenced_code", "tables", "sane_lists"], output_format="html")

    def link(match: re.Match[str]) -> str:
        numbers = [int(part) for part in match.group(1).split(",")]
        if not all(number in passage_urls for number in numbers):
            return match.group(0)
        return "".join(
            f'<a class="cite" href="{passage_urls[number]}" title="Open passage {number}">[{number}]</a>'
            for number in numbers
        )

    html = _CITATION.sub(link, html)
    # nh3 runs last, over the whole string, so its output is safe by construction.
    return mark_safe(  # noqa: S308
        nh3.clean(
            html,
            tags=ALLOWED_TAGS,
            attributes=ALLOWED_ATTRIBUTES,
            url_schemes={"http", "https", "mailto"},
            link_rel="noopener noreferrer nofollow",
        )
    )


def passage_url(chunk_id: int) -> str:
    return reverse("search:passage", kwargs={"chunk_id": chunk_id}) + "#passage"
