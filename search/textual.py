"""Plain-text analysis for grounding answers: sentences with their offsets, stemmed terms, exact tokens.

Terms are stemmed with Snowball's English stemmer and filtered by PostgreSQL's English stop list, the same
analysis `to_tsvector('english', ...)` applies, so a term here matches the lexemes that full-text search
and `LexemeFrequency` count.
"""

from __future__ import annotations

import re
import threading
import unicodedata
from dataclasses import dataclass
from functools import lru_cache

import snowballstemmer

# PostgreSQL's tsearch_data/english.stop (the Snowball list), which the 'english' configuration drops.
_STOP_WORDS = """
    i me my myself we our ours ourselves you your yours yourself yourselves he him his himself she her hers
    herself it its itself they them their theirs themselves what which who whom this that these those am is
    are was were be been being have has had having do does did doing a an the and but if or because as until
    while of at by for with about against between into through during before after above below to from up
    down in out on off over under again further then once here there when where why how all any both each
    few more most other some such no nor not only own same so than too very s t can will just don should
    now"""
STOP_WORDS = frozenset(_STOP_WORDS.split())
# Words that carry no claim of their own in a question or an answer ("how many", "please", "tell me"), and
# the connectives that frame a question rather than say what it is about ("unless I say otherwise", "or
# else", "instead"): closed-class words that fuller stop lists (SMART's) drop and the Snowball one keeps.
_FILLER_WORDS = """
    also would could may might must shall us let get got please tell know want need like use used using
    many much one ones thing things way ways one's yes
    unless otherwise else instead whether although though however therefore thus hence besides
    anyway rather"""
FILLER_WORDS = frozenset(_FILLER_WORDS.split())

_WORD = re.compile(r"[^\W_](?:[\w'’.\-/]*[^\W_])?", re.UNICODE)
_SENTENCE_END = re.compile(r"(?<=[.!?])[\"')\]]*\s+(?=[\"'(\[<]?[A-Z0-9`*<-])")
_BLOCK_BREAK = re.compile(r"\n\s*\n")
# A line that starts a unit of its own even without a blank line before it: a list item, a table row,
# a heading, or a line of a definition list.
_LINE_START = re.compile(r"^\s*(?:[-*•+]\s|\d{1,3}[.)]\s|\||#{1,6}\s|[A-Z][\w ]{0,40}:\s)")
# Long sentences (tables flattened by a PDF, run-on lists) are cut at their clause breaks.
MAX_SENTENCE_CHARS = 400
NUMBER = re.compile(r"(?<![\w.])\d+(?:[.,]\d+)*(?![\w])")
_THOUSANDS = re.compile(r"(?<=\d),(?=\d{3}\b)")


@dataclass(frozen=True)
class Span:
    """A sentence of `text`: `text[start:end]`."""

    start: int
    end: int
    text: str


# A Snowball stemmer keeps its working state on the object, so two threads sharing one corrupt each other's
# words (an IndexError under load): each thread gets its own.
_local = threading.local()


def _stemmer() -> snowballstemmer.stemmer:
    stemmer = getattr(_local, "stemmer", None)
    if stemmer is None:
        stemmer = _local.stemmer = snowballstemmer.stemmer("english")
    return stemmer


def normalise(text: str) -> str:
    """NFKC, so full-width and ligature forms compare equal to their plain ones."""
    return unicodedata.normalize("NFKC", text)


def words(text: str) -> list[str]:
    """Tokens as written: words, numbers, and code-like tokens (`bzip2recover`, `%f/%t`, `-s`, `v1.2`)."""
    return _WORD.findall(normalise(text))


def without_words(text: str, drop: set[str]) -> str:
    """`text` with each token whose lower case is in `drop` blanked out."""
    flat = normalise(text)
    return _WORD.sub(lambda match: " " if match.group(0).lower() in drop else match.group(0), flat)


@lru_cache(maxsize=65536)
def stem(word: str) -> str:
    return str(_stemmer().stemWord(word.lower().strip("'’")))


def terms(text: str) -> list[str]:
    """Stemmed content terms in order of appearance, without stop and filler words."""
    return list(_terms(text))


# The same passages come back for many questions (and their sentences are checked against every answer
# that cites them): their analysis is kept, the last few thousand texts of it.
@lru_cache(maxsize=4096)
def _terms(text: str) -> tuple[str, ...]:
    found: list[str] = []
    for word in words(text):
        for part in re.split(r"[.\-/'’]", word.lower()) if not any(c.isdigit() for c in word) else [word]:
            if part and part not in STOP_WORDS and part not in FILLER_WORDS and len(part) > 1:
                found.append(stem(part) if not any(c.isdigit() for c in part) else part.lower())
    return tuple(found)


def number_forms(token: str) -> set[str]:
    """A number as it may be written: `900,000` is also `900000`; `900k` is also `900000`."""
    lowered = _THOUSANDS.sub("", token.lower())
    forms = {lowered}
    match = re.fullmatch(r"(\d+)\s*([km])b?", lowered)
    if match:
        forms.add(str(int(match.group(1)) * (1000 if match.group(2) == "k" else 1_000_000)))
    return forms


def exact_tokens(text: str) -> set[str]:
    """What a claim must take verbatim from its source: numbers, names, identifiers, paths and options.

    A changed number or name is the error that does most harm, and embeddings hardly see it, so these are
    matched exactly (case-insensitively, thousands separators ignored).
    """
    tokens: set[str] = set()
    flat = normalise(text)
    for match in NUMBER.finditer(flat):
        tokens.add(_THOUSANDS.sub("", match.group(0)).rstrip(".,"))
    for match in _WORD.finditer(flat):
        bare = match.group(0)
        before = flat[: match.start()].rstrip(" \t\"'(*`[")
        sentence_start = not before or before[-1] in ".!?:;\n-•|"
        is_code = bool(re.search(r"[_/%]|\w\.\w|[a-z][A-Z]|\d", bare)) and not NUMBER.fullmatch(bare)
        is_acronym = len(bare) > 1 and bare.isupper() and bare.isalpha()
        is_name = bare[:1].isupper() and not sentence_start and bare.lower() not in STOP_WORDS
        if is_code or is_acronym or is_name:
            tokens.add(bare.lower())
    return {token for token in tokens if token}


def contains_exact(haystack: str, token: str) -> bool:
    """`token` in `haystack` as a whole token, case-insensitively, numbers in any of their forms."""
    flat = _THOUSANDS.sub("", normalise(haystack).lower())
    token = _THOUSANDS.sub("", token.lower())
    numeric = bool(NUMBER.fullmatch(token))
    for form in number_forms(token) if token[:1].isdigit() else {token}:
        # A number may carry a unit ("1350k", "60-day"); a word must stand alone.
        # A number may not continue one ("1.350" is not "350"); a word may follow a dot (".ninja_log").
        before, after = (r"(?<![\w.])", r"(?![\d]|[.,]\d)") if numeric else (r"(?<![\w])", r"(?![\w])")
        if re.search(rf"{before}{re.escape(form)}{after}", flat):
            return True
    # `900000` also as "900 k" / "900k" in the source.
    if token.isdigit() and len(token) > 3 and token.endswith("000"):
        short = token[:-3]
        if re.search(rf"(?<![\w]){short}\s?k(?:b|bytes)?(?![\w])", flat):
            return True
    return False


def sentences(text: str) -> list[Span]:
    """Sentences (and list items, table rows, headings) of `text` with their offsets into it."""
    return list(_sentences(text))


@lru_cache(maxsize=2048)
def _sentences(text: str) -> tuple[Span, ...]:
    spans: list[Span] = []
    for block_start, block in _blocks(text):
        for unit_start, unit in _lines_as_units(block):
            for start, end in _split_sentences(unit):
                for piece_start, piece_end in _cut_long(unit, start, end):
                    chunk = unit[piece_start:piece_end]
                    stripped = chunk.strip()
                    if not stripped or not any(character.isalnum() for character in stripped):
                        continue
                    offset = block_start + unit_start + piece_start + (len(chunk) - len(chunk.lstrip()))
                    spans.append(Span(start=offset, end=offset + len(stripped), text=stripped))
    return tuple(spans)


def _blocks(text: str) -> list[tuple[int, str]]:
    blocks: list[tuple[int, str]] = []
    position = 0
    for match in _BLOCK_BREAK.finditer(text):
        blocks.append((position, text[position : match.start()]))
        position = match.end()
    blocks.append((position, text[position:]))
    return blocks


def _lines_as_units(block: str) -> list[tuple[int, str]]:
    """Join a block's lines into units: a hard-wrapped paragraph is one unit, each list item its own."""
    units: list[tuple[int, str]] = []
    position = 0
    start = 0
    after_row = False
    for line in block.splitlines(keepends=True):
        if position > start and (_LINE_START.match(line) or after_row):
            units.append((start, block[start:position]))
            start = position
        after_row = line.lstrip().startswith("|")
        position += len(line)
    units.append((start, block[start:position]))
    return units


def _split_sentences(unit: str) -> list[tuple[int, int]]:
    bounds: list[tuple[int, int]] = []
    start = 0
    for match in _SENTENCE_END.finditer(unit):
        previous = unit[max(start, match.start() - 4) : match.start()]
        # "e.g. Foo", "Fig. 3", "v. 2": an abbreviation, not the end of a sentence.
        if re.search(r"(?:\b[a-z]\.[a-z]\.|\b(?:e\.g|i\.e|etc|vs|Fig|No|cf|Dr|Mr|Ms)\.)$", previous):
            continue
        bounds.append((start, match.start()))
        start = match.end()
    bounds.append((start, len(unit)))
    return bounds


def _cut_long(unit: str, start: int, end: int) -> list[tuple[int, int]]:
    pieces: list[tuple[int, int]] = []
    while end - start > MAX_SENTENCE_CHARS:
        window = unit[start : start + MAX_SENTENCE_CHARS]
        cut = max(window.rfind("; "), window.rfind(": "), window.rfind(", "), window.rfind(" "))
        if cut < MAX_SENTENCE_CHARS // 3:
            cut = MAX_SENTENCE_CHARS
        pieces.append((start, start + cut + 1))
        start += cut + 1
    pieces.append((start, end))
    return pieces
