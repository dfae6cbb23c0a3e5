"""Split a parsed document into chunks that follow its structure and fit the embedding model.

Sections (headings, pages) are never merged; inside a section, paragraphs are packed greedily, a paragraph too
long for one chunk is split at sentences, and a sentence too long at token boundaries. Every chunk's embedding
input (its heading path, then its text) is at most `MODEL_MAX_TOKENS` in the model's own tokens, so the
inference API never has to truncate anything. Consecutive chunks of one section overlap by a few sentences.
A table (a Markdown table paragraph) is split between rows, and every chunk that starts inside it begins with
the table's header, so that its rows keep their columns' names.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from .parsers import SECTION_SEPARATOR, ParsedDocument, Section
from .parsers.tables import table_header
from .tokens import MODEL_MAX_TOKENS, count_tokens, count_tokens_batch, encode

HEADING_SEPARATOR = " > "
# The heading path is context, not content: past this many tokens its middle entries are elided.
MAX_HEADING_TOKENS = 64
OVERLAP_TOKENS = 32
_SPECIAL_TOKENS = 2  # [CLS] and [SEP]
_SENTENCE_END = re.compile(r"(?<=[.!?。！？])[\"')\]]*\s+|\n")
_PARAGRAPH_BREAK = re.compile(r"\n\s*\n")


@dataclass(frozen=True)
class ChunkDraft:
    """A chunk before it is embedded; `text` is exactly `parsed.text[char_start:char_end]`, after the header
    of the table it starts inside, if it starts inside one (`chunk_own_text` takes the header off)."""

    ordinal: int
    text: str
    heading_path: tuple[str, ...]
    page: int | None
    char_start: int
    char_end: int
    token_count: int

    @property
    def heading(self) -> str:
        return HEADING_SEPARATOR.join(self.heading_path)

    @property
    def embedding_input(self) -> str:
        """What the model embeds: the heading path (title first), a blank line, the text."""
        return embedding_input(heading=self.heading, text=self.text)


def embedding_input(*, heading: str, text: str) -> str:
    return f"{heading}\n\n{text}" if heading else text


@dataclass(frozen=True)
class _Piece:
    start: int  # offsets into the section's text
    end: int
    tokens: int
    paragraph: int  # index of the paragraph it belongs to


def _heading_path(title: str, section: Section) -> tuple[str, ...]:
    path = [title] if title else []
    path += [h for h in section.heading_path if not path or h != path[-1]]
    while len(path) > 2 and count_tokens(HEADING_SEPARATOR.join(path)) > MAX_HEADING_TOKENS:
        del path[1]
    if path and count_tokens(HEADING_SEPARATOR.join(path)) > MAX_HEADING_TOKENS:
        last = path[-1]
        encoding = encode(last)
        cut = encoding.offsets[min(len(encoding.offsets), MAX_HEADING_TOKENS // 2) - 1][1]
        path[-1] = last[:cut] + "…"
        while len(path) > 1 and count_tokens(HEADING_SEPARATOR.join(path)) > MAX_HEADING_TOKENS:
            del path[0]
    return tuple(path)


def _spans(pattern: re.Pattern[str], text: str, start: int, end: int) -> list[tuple[int, int]]:
    """Non-blank sub-spans of text[start:end] between matches of `pattern`, stripped of whitespace."""
    spans = []
    cursor = start
    for match in pattern.finditer(text, start, end):
        spans.append((cursor, match.start()))
        cursor = match.end()
    spans.append((cursor, end))
    stripped = []
    for a, b in spans:
        piece = text[a:b]
        if piece.strip():
            a += len(piece) - len(piece.lstrip())
            b -= len(piece) - len(piece.rstrip())
            stripped.append((a, b))
    return stripped


def _token_windows(text: str, start: int, end: int, budget: int) -> list[tuple[int, int]]:
    """Cut text[start:end] into runs of at most `budget` tokens, between words where possible."""
    encoding = encode(text[start:end])
    offsets, words = encoding.offsets, encoding.word_ids
    windows = []
    first = 0
    while first < len(offsets):
        stop = min(first + budget, len(offsets))
        if stop < len(offsets):
            cut = stop
            while cut > first + 1 and words[cut] is not None and words[cut] == words[cut - 1]:
                cut -= 1
            stop = cut if cut > first + 1 else stop
        window_end = offsets[stop][0] if stop < len(offsets) else end - start
        windows.append((start + offsets[first][0], start + window_end))
        first = stop
    return [(a, b) for a, b in windows if text[a:b].strip()]


def _pieces(text: str, budget: int) -> list[_Piece]:
    """Paragraphs, or sentences of long paragraphs, or token runs of long sentences, each within budget."""
    paragraphs = _spans(_PARAGRAPH_BREAK, text, 0, len(text))
    spans: list[tuple[int, int, int]] = []
    counts = count_tokens_batch([text[a:b] for a, b in paragraphs])
    for index, ((a, b), tokens) in enumerate(zip(paragraphs, counts, strict=True)):
        if tokens <= budget:
            spans.append((a, b, index))
            continue
        for sa, sb in _spans(_SENTENCE_END, text, a, b):
            spans.append((sa, sb, index))
    counts = count_tokens_batch([text[a:b] for a, b, _ in spans])
    pieces: list[_Piece] = []
    for (a, b, paragraph), tokens in zip(spans, counts, strict=True):
        if tokens <= budget:
            pieces.append(_Piece(a, b, tokens, paragraph))
            continue
        for wa, wb in _token_windows(text, a, b, budget - 4):
            pieces.append(_Piece(wa, wb, count_tokens_batch([text[wa:wb]])[0], paragraph))
    return pieces


def _pack(pieces: list[_Piece], budget: int) -> list[list[_Piece]]:
    """Greedy packing that prefers to end a chunk at a paragraph break, with sentence overlap."""
    paragraph_tokens: dict[int, int] = {}
    for piece in pieces:
        paragraph_tokens[piece.paragraph] = paragraph_tokens.get(piece.paragraph, 0) + piece.tokens
    groups: list[list[_Piece]] = []
    current: list[_Piece] = []
    used = 0
    for piece in pieces:
        new_paragraph = bool(current) and piece.paragraph != current[-1].paragraph
        fits = used + piece.tokens <= budget
        whole_paragraph_fits = used + paragraph_tokens[piece.paragraph] <= budget
        break_early = new_paragraph and not whole_paragraph_fits and used >= budget // 2
        if current and (not fits or break_early):
            groups.append(current)
            overlap: list[_Piece] = []
            if not new_paragraph:
                for previous in reversed(current):
                    if sum(p.tokens for p in overlap) + previous.tokens > OVERLAP_TOKENS:
                        break
                    overlap.insert(0, previous)
                if overlap and sum(p.tokens for p in overlap) + piece.tokens > budget:
                    overlap = []
            current, used = overlap, sum(p.tokens for p in overlap)
        current.append(piece)
        used += piece.tokens
    if current:
        groups.append(current)
    return groups


def _split_group(group: list[_Piece], text: str) -> list[list[_Piece]]:
    if len(group) > 1:
        middle = len(group) // 2
        return [group[:middle], group[middle:]]
    piece = group[0]
    return [
        [_Piece(a, b, count_tokens_batch([text[a:b]])[0], piece.paragraph)]
        for a, b in _token_windows(text, piece.start, piece.end, max(piece.tokens // 2, 1))
    ]


def _repeated_header(text: str, paragraph: tuple[int, int], start: int) -> str:
    """The header of the table paragraph that a chunk starting at `start` is inside of ("" if none)."""
    begin, end = paragraph
    header = table_header(text[begin:end])
    if header is None or start < begin + len(header):
        return ""
    return header + "\n"


def chunk_own_text(*, text: str, char_start: int, char_end: int) -> str:
    """A chunk's own stretch of its document: its text without a repeated table header."""
    return text[len(text) - (char_end - char_start) :] if len(text) >= char_end - char_start else text


def chunk_document(parsed: ParsedDocument) -> list[ChunkDraft]:
    """Chunks of a parsed document in reading order, each within the embedding model's input limit."""
    drafts: list[ChunkDraft] = []
    section_start = 0
    for section in parsed.sections:
        path = _heading_path(parsed.title, section)
        heading = HEADING_SEPARATOR.join(path)
        # The heading, the blank line after it and the special tokens share the model's window with the text.
        budget = MODEL_MAX_TOKENS - _SPECIAL_TOKENS - (count_tokens_batch([heading])[0] + 1 if heading else 0)
        text = section.text
        paragraphs = _spans(_PARAGRAPH_BREAK, text, 0, len(text))  # as `_pieces` numbers them
        pending = _pack(_pieces(text, budget), budget)
        pending.reverse()
        while pending:
            group = pending.pop()
            start, end = group[0].start, group[-1].end
            chunk_text = _repeated_header(text, paragraphs[group[0].paragraph], start) + text[start:end]
            tokens = count_tokens(embedding_input(heading=heading, text=chunk_text))
            if tokens > MODEL_MAX_TOKENS:
                # Rare: the joined text tokenised to more than its pieces did. Split it, never cut it.
                pending.extend(reversed(_split_group(group, text)))
                continue
            drafts.append(
                ChunkDraft(
                    ordinal=len(drafts),
                    text=chunk_text,
                    heading_path=path,
                    page=section.page,
                    char_start=section_start + start,
                    char_end=section_start + end,
                    token_count=tokens,
                )
            )
        section_start += len(text) + len(SECTION_SEPARATOR)
    return drafts
