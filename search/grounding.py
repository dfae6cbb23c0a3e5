"""Is an answer grounded? Evidence that passages are about a question, and claims checked against passages.

Every threshold here is a share of information (IDF mass) or a similarity with a stated meaning, not a
constant fitted to one set of questions:

- A term's weight is its BM25 IDF over the chunks (`LexemeFrequency`), the weight keyword retrieval gives it.
  A term no chunk holds gets the highest weight: a question that rests on a word the documents never use
  ("SHA-256", "Canberra") is about something they do not contain.
- `MIN_QUESTION_COVERAGE`: a passage is evidence when it holds at least half of the question's weighted
  terms: the majority of what the question asks about, so that one shared common word is never enough.
- `MIN_DENSE_SIMILARITY`: or when its embedding is as close to the question's as a passage that answers it.
  For all-MiniLM-L6-v2, question/answer pairs of its training data mostly score above 0.5 and unrelated
  texts near 0 to 0.2 (its cosine is not calibrated beyond that); 0.5 sits between, on the side of refusing.
- `MIN_CLAIM_COVERAGE`: a claim is supported by a place of a passage (a window of up to three sentences)
  when every number, name and identifier of the claim is there and at least two thirds of its weighted terms
  are: a third is left for rewording (a small model writes "you have to report" for "must be reported",
  and such words are common, so light), never for the claim's rare words.
- `PARAPHRASE_SIMILARITY`: or, with its exact tokens all there, when its embedding is as close to the window
  as a paraphrase is: sentence pairs that STS-B rates "mostly equivalent" score above about 0.75 with MiniLM.
- The answer's type (`answer_type`): a question that asks "who", "what year", "which months" or "how many"
  is answered only by a text with a name, a year, a month or a quantity in it. Passages can be about a
  question (its words, its topic) without holding what it asks for: "Who chairs the committee?" over a
  passage on the committee's agenda. This is the classic answer-type check of question answering; no
  threshold, only the kinds of token each question word asks for.
"""

from __future__ import annotations

import math
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

from search import textual

# IDF is an estimate: below this many chunks, counts are too few to tell a rare word from a common one
# (in a collection of two chunks every word is "in half of them"), so frequencies are read as if the
# collection had at least this many chunks, the others holding none of the terms. No term is then weighted
# near zero just because a tiny collection repeats it; past this size nothing changes.
MIN_IDF_CHUNKS = 1000
MIN_QUESTION_COVERAGE = 0.5
MIN_DENSE_SIMILARITY = 0.5
MIN_CLAIM_COVERAGE = 2 / 3
PARAPHRASE_SIMILARITY = 0.75
# Windows of consecutive sentences a claim may draw on: a fact and its qualifier often sit in two sentences.
WINDOW_SENTENCES = 3

# A model's way of saying the passages do not answer.
_REFUSAL = re.compile(
    r"\b(?:(?:do|does|did)\s*(?:not|n['’]t)\s+(?:know|say|mention|contain|specify|provide|state|answer|"
    r"include|cover)|not\s+(?:mentioned|specified|stated|provided|covered|found|answered)|no\s+information|"
    r"cannot\s+(?:find|answer|be\s+answered)|can['’]t\s+(?:find|answer)|unable\s+to\s+(?:find|answer)|"
    r"there\s+is\s+no\s+mention)\b",
    re.IGNORECASE,
)


@dataclass(frozen=True)
class TermWeights:
    """The weight (BM25 IDF) of each distinct content term of a text, from the chunks' frequencies."""

    weights: dict[str, float]

    @property
    def total(self) -> float:
        return sum(self.weights.values())

    def coverage(self, found: set[str]) -> float:
        """The share of the weight whose terms are in `found` (0 when there is nothing to weigh)."""
        total = self.total
        if total <= 0:
            return 0.0
        return sum(weight for term, weight in self.weights.items() if term in found) / total


def idf(*, chunks_with_term: int, all_chunks: int) -> float:
    return math.log(1 + (all_chunks - chunks_with_term + 0.5) / (chunks_with_term + 0.5))


# "How long", "how many", "how often": the adjective asks for a quantity; it is not what the question is about
# ("30 days" answers "how long" without the word "long").
_QUANTITY_QUESTION = re.compile(
    r"\bhow\s+(?:long|much|many|often|far|big|large|small|old|soon|quickly|fast|early|late)\b", re.IGNORECASE
)


def term_weights(
    text: str, *, frequencies: Mapping[str, int], all_chunks: int, question: bool = False
) -> TermWeights:
    """The weight of each content term of `text`; a question's "how long"-style words are left out."""
    if question:
        text = _QUANTITY_QUESTION.sub(" ", text)
    all_chunks = max(all_chunks, MIN_IDF_CHUNKS)
    return TermWeights(
        weights={
            term: idf(chunks_with_term=min(frequencies.get(term, 0), all_chunks), all_chunks=all_chunks)
            for term in dict.fromkeys(textual.terms(text))
        }
    )


def found_terms(weights: TermWeights, text: str, terms: set[str] | frozenset[str]) -> set[str]:
    """The weighed terms that `text` (whose terms are `terms`) holds; a number in any of its spellings."""
    found = {term for term in weights.weights if term in terms}
    found |= {
        term
        for term in weights.weights
        if term not in found and any(c.isdigit() for c in term) and textual.contains_exact(text, term)
    }
    return found


def is_refusal(text: str) -> bool:
    """True when `text` says that the passages do not answer (in the model's words)."""
    return bool(_REFUSAL.search(text))


@dataclass(frozen=True)
class PassageEvidence:
    coverage: float
    similarity: float | None

    @property
    def relevant(self) -> bool:
        return self.coverage >= MIN_QUESTION_COVERAGE or (
            self.similarity is not None and self.similarity >= MIN_DENSE_SIMILARITY
        )


def passage_evidence(
    *, question: TermWeights, passage_text: str, context: str, similarity: float | None
) -> PassageEvidence:
    """How much of the question `passage_text` (with its title and headings, `context`) is about."""
    terms = set(textual.terms(passage_text)) | set(textual.terms(context))
    found = found_terms(question, passage_text, terms)
    return PassageEvidence(coverage=question.coverage(found), similarity=similarity)


# Checking claims ---------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Window:
    """Consecutive sentences of one passage, with what a claim is matched against."""

    passage: int
    start: int
    end: int
    text: str
    terms: frozenset[str]


def windows(passage: int, text: str, *, context: str = "") -> list[Window]:
    """Every run of 1 to WINDOW_SENTENCES consecutive sentences of a passage (its labels count as said)."""
    spans = textual.sentences(text) or [textual.Span(0, len(text), text)]
    context_terms = set(textual.terms(context))
    found: list[Window] = []
    for first in range(len(spans)):
        for last in range(first, min(first + WINDOW_SENTENCES, len(spans))):
            start, end = spans[first].start, spans[last].end
            piece = text[start:end]
            found.append(
                Window(
                    passage=passage,
                    start=start,
                    end=end,
                    text=piece,
                    terms=frozenset(set(textual.terms(piece)) | context_terms),
                )
            )
    return found


@dataclass(frozen=True)
class ClaimCheck:
    """A claim's best place among some windows: whether the window states it, and is about the question.

    `supported`: every exact token is there and MIN_CLAIM_COVERAGE of the claim's news; `about`: the share
    of the question's weight the window holds. A claim is grounded when both hold (`grounded`); where the
    words fall short, the caller may ask the embedding model (PARAPHRASE_SIMILARITY, MIN_DENSE_SIMILARITY).
    """

    supported: bool
    window: Window | None
    coverage: float
    missing_exact: tuple[str, ...]
    about: float = 1.0

    @property
    def grounded(self) -> bool:
        return self.supported and self.about >= MIN_QUESTION_COVERAGE


def claim_check(
    claim: str,
    candidates: Sequence[Window],
    *,
    weights: TermWeights,
    question: TermWeights | None = None,
    question_text: str = "",
) -> ClaimCheck:
    """The window that supports `claim` best (by exact tokens, then weighted term coverage).

    What the claim repeats of the question is its framing, not its news: the numbers, names and terms it
    shares with the question are not asked of the window. The window must instead be about the question
    (like a passage at the gate), so that a true sentence about something else ("Priya Raman is Head of IT
    Security" for "Who is the Data Protection Officer?") is not taken for an answer.
    """
    echoed = textual.exact_tokens(question_text)
    # A number the claim repeats from the question is still asked of the window: it is part of what was
    # asked ("version 2"), and a window that holds another number answers another question.
    exact = {
        token
        for token in textual.exact_tokens(claim)
        if token not in echoed or textual.NUMBER.fullmatch(token)
    }
    asked = set(question.weights) if question is not None else set()
    news = TermWeights(
        weights={term: weight for term, weight in weights.weights.items() if term not in asked}
    )
    best = ClaimCheck(supported=False, window=None, coverage=0.0, missing_exact=tuple(sorted(exact)))
    best_key: tuple[bool, bool, int, float] = (False, False, -len(exact) - 1, -1.0)
    for window in candidates:
        missing = tuple(sorted(token for token in exact if not textual.contains_exact(window.text, token)))
        coverage = news.coverage(found_terms(news, window.text, window.terms)) if news.weights else 1.0
        about = (
            question.coverage(found_terms(question, window.text, window.terms))
            if question is not None and question.weights
            else 1.0
        )
        supported = not missing and coverage >= MIN_CLAIM_COVERAGE
        key = (supported and about >= MIN_QUESTION_COVERAGE, supported, -len(missing), coverage + about)
        if key > best_key:
            best_key = key
            best = ClaimCheck(
                supported=supported, window=window, coverage=coverage, missing_exact=missing, about=about
            )
    return best


def has_news(claim: str, *, question_text: str = "") -> bool:
    """A claim says something beyond the question: a term or exact token the question does not have."""
    asked_terms = set(textual.terms(question_text))
    asked_exact = textual.exact_tokens(question_text)
    return bool(set(textual.terms(claim)) - asked_terms or textual.exact_tokens(claim) - asked_exact)


def has_content(claim: str) -> bool:
    """A claim states something: it has a content term or an exact token (not "Here is the answer:")."""
    return bool(textual.terms(claim) or textual.exact_tokens(claim))


# The kind of answer a question asks for ----------------------------------------------------------------

_MONTHS = (
    "january|february|march|april|may|june|july|august|september|october|november|december|"
    "jan|feb|mar|apr|jun|jul|aug|sep|sept|oct|nov|dec"
)
_NUMBER_WORDS = (
    "one|two|three|four|five|six|seven|eight|nine|ten|eleven|twelve|fifteen|twenty|thirty|forty|fifty|sixty|"
    "seventy|eighty|ninety|hundred|thousand|million|billion|half|quarter|once|twice|dozen|single|double"
)
_QUANTITY = re.compile(
    rf"\d|\b(?:{_NUMBER_WORDS}|an?\s+(?:hour|day|week|month|year|minute))\b", re.IGNORECASE
)
_FREQUENCY = re.compile(
    rf"\d|\b(?:{_NUMBER_WORDS}|every|each|daily|weekly|monthly|yearly|annually|hourly|nightly|per)\b",
    re.IGNORECASE,
)
_SOON = re.compile(
    rf"\d|\b(?:{_NUMBER_WORDS}|immediately|straight\s+away|at\s+once|as\s+soon\s+as|promptly|an?\s+hour)\b",
    re.IGNORECASE,
)
_YEAR = re.compile(r"\b(?:1[5-9]\d\d|2[01]\d\d)\b")
_MONTH = re.compile(rf"\b(?:{_MONTHS})\b\.?", re.IGNORECASE)
# Who answers a "who": a name (a capitalised word inside a sentence, after a word or a comma, so not a
# sentence's or a list item's first word; an all-capitals word is more often a department or a format than
# a person, so it is not enough), a @handle, an e-mail address, or a role ("the line manager").
_NAME = re.compile(
    r"(?<=[A-Za-z,;] )[A-Z][a-z][\w'’.-]*|(?<![\w.])@[\w-]+|\b[\w.+-]+@[\w-]+\.[\w.]+|"
    r"\b(?i:manager|officer|head|director|chair(?:man|woman|person)?|secretary|administrator|owner|lead|leader|"
    r"team|desk|department|committee|board|maintainers?|supervisor|author|holder|representative)\b"
)

_ASKS: tuple[tuple[str, re.Pattern[str]], ...] = (
    (
        "year",
        re.compile(
            r"\b(?:what|which)\s+year\b|\bwhen\s+(?:was|were|did)\b.*\b(?:publish|release|found|introduc|creat|writ|sign|start)",
            re.IGNORECASE,
        ),
    ),
    ("month", re.compile(r"\b(?:what|which)\s+months?\b", re.IGNORECASE)),
    (
        "person",
        re.compile(
            r"^\s*(?:and\s+)?who(?:m|se)?\b|[,;:]\s*who(?:m|se)?\b|\b(?:and|or)\s+who(?:m|se)?\b",
            re.IGNORECASE,
        ),
    ),
    ("frequency", re.compile(r"\bhow\s+(?:often|frequently)\b", re.IGNORECASE)),
    ("soon", re.compile(r"\bhow\s+(?:quickly|soon|fast)\b", re.IGNORECASE)),
    (
        "quantity",
        re.compile(
            r"\bhow\s+(?:many|much|long|old|far|big|large|small)\b|"
            # "what port", "which block size", "what's the minimum length": a measure is asked for.
            r"\b(?:what|which)(?:['’]s|\s+is|\s+are)?\s+(?:the\s+)?(?:\w+\s+)?"
            r"(?:port|percentage|number|size|length|limit|amount|capacity|duration|timeout|maximum|minimum)\b",
            re.IGNORECASE,
        ),
    ),
)
_HAS: dict[str, re.Pattern[str]] = {
    "year": _YEAR,
    "month": _MONTH,
    "person": _NAME,
    "frequency": _FREQUENCY,
    "soon": _SOON,
    "quantity": _QUANTITY,
}


def answer_types(question: str) -> list[str]:
    """What kinds of token the question asks for ("person" for who, "year", "month", "quantity", ...).

    A question of two parts ("How quickly must I report it, and which extension do I call?") asks for each
    kind its parts name; a question with no such word ("Which tool should I use?") asks for none.
    """
    return [kind for kind, asks in _ASKS if asks.search(question)]


def has_answer_type(text: str, *, question: str) -> bool:
    """Whether `text` holds a token of every kind `question` asks for that the question itself lacks.

    A name or number the question already states does not count ("Who approves Priya's requests?" is not
    answered by "Priya"), so the tokens are looked for in the text with the question's own words removed.
    """
    kinds = answer_types(question)
    if not kinds:
        return True
    text = re.sub(r"\[\s*\d{1,3}(?:\s*,\s*\d{1,3})*\s*\]", " ", text)  # citation markers are not numbers
    asked = {word.lower() for word in textual.words(question)}
    # Numbers the question states ("compressed with -5", "version 2") are not its answer.
    stated = {word for word in asked if any(character.isdigit() for character in word)}
    if stated:
        text = textual.without_words(text, stated)
    for kind in kinds:
        found = [match.group(0) for match in _HAS[kind].finditer(text)]
        if kind == "person":
            found = [token for token in found if token.strip("@.'’").lower() not in asked]
        if not found:
            return False
    return True
