"""From retrieved passages to a grounded answer: the evidence gate, the extractive answer, the model's
context, and the check of the model's answer against the passages it cites (thresholds: search.grounding).
"""

from __future__ import annotations

import math
import re
from collections.abc import Sequence
from dataclasses import dataclass, field, replace

from ingest.parsers.tables import table_header
from search import grounding, textual
from search.grounding import TermWeights, Window
from search.retrieval import RetrievedChunk

# At most this many sentences make the extractive answer (the 1-3: enough for a fact and its
# qualifier, short enough to read before the model's first token).
EXTRACT_SENTENCES = 3
# Sentences embedded per question for the extractive answer: the best by their words, so that the embedding
# call stays one small batch (its cost is what the extractive answer waits for).
EXTRACT_CANDIDATES = 8
# A further sentence joins the extractive answer only when it scores nearly as well as the best one.
EXTRACT_RELATIVE_SCORE = 0.85
EMBED_CHARS = 300
# Of a long passage the model sees the sentences around its best ones, at most this many characters
# (about 160 tokens: the best sentence with the one before and after it, what one fact and its context take).
CONTEXT_CHARS_PER_PASSAGE = 480
CITATION = re.compile(r"\[\s*([^\[\]]{0,20}?)\s*\]")
UNVERIFIED_NOTE = (
    "The model's wording could not be checked against the documents, so these are the passages' own words."
)
QUOTES_NOTE = "From the documents:"
MODEL_UNAVAILABLE_NOTE = "The model could not write an answer just now; these are the passages' own words."


def cite(sentence: str, number: int) -> str:
    """`sentence` with its citation before its closing punctuation: "It is 30 days [1]."."""
    sentence = sentence.rstrip()
    stop = len(sentence.rstrip(".!?:;"))
    return f"{sentence[:stop]} [{number}]{sentence[stop:]}"


@dataclass(frozen=True)
class Candidate:
    """A passage that passed the evidence gate, numbered as the prompt and the sources show it."""

    number: int
    passage: RetrievedChunk
    evidence: grounding.PassageEvidence

    @property
    def context(self) -> str:
        return f"{self.passage.document_title} {self.passage.heading_path}"


@dataclass(frozen=True)
class ScoredSentence:
    number: int
    span: textual.Span
    coverage: float
    similarity: float | None = None
    # What the sentence says read on its own (a table row under its header), which is what is embedded.
    reading: str = ""

    @property
    def score(self) -> float:
        if self.similarity is None:
            return self.coverage
        return (self.coverage + max(self.similarity, 0.0)) / 2


@dataclass(frozen=True)
class Extract:
    """The sentences of the passages that best answer the question, each with its passage's number."""

    sentences: tuple[ScoredSentence, ...]
    # Whether these sentences are evidence for the question by the gate's own bar (half the question's
    # weight, or the best as close in meaning as an answering passage), so that they may stand as the answer
    # when the model's wording fails its check (and they hold the kind of answer asked for).
    answers: bool

    def text(self) -> str:
        return " ".join(
            cite(" ".join(sentence.span.text.split()), sentence.number) for sentence in self.sentences
        )


def gate(
    *, question: TermWeights, passages: Sequence[RetrievedChunk], similarities: dict[int, float], limit: int
) -> list[Candidate]:
    """The passages that are evidence for the question, in retrieval order, numbered from 1."""
    kept: list[Candidate] = []
    for passage in passages:
        evidence = grounding.passage_evidence(
            question=question,
            passage_text=passage.text,
            context=f"{passage.document_title} {passage.heading_path}",
            similarity=similarities.get(passage.chunk_id),
        )
        if evidence.relevant:
            kept.append(Candidate(number=len(kept) + 1, passage=passage, evidence=evidence))
        if len(kept) == limit:
            break
    return kept


@dataclass(frozen=True)
class Quotable:
    """A sentence an extractive answer may quote, and what it says read on its own."""

    span: textual.Span
    # A table row is read under its table's header ("| -5 | 1350k |" means nothing without "| Flag |
    # Decompress -s usage |"); any other sentence is read as written.
    reading: str


def quotable_sentences(text: str) -> list[Quotable]:
    """The sentences of a passage that an extractive answer may quote: those of three words or more (a table
    row with its header's)."""
    spans = textual.sentences(text)
    headers = _table_headers(text, spans)
    quotable: list[Quotable] = []
    header = None
    for index, span in enumerate(spans):
        if index in headers:
            header = headers[index].split("\n", 1)[0]
        elif not span.text.startswith("|"):
            header = None
        reading = f"{header}\n{span.text}" if header and index not in headers else span.text
        if len(textual.words(reading)) >= 3:
            quotable.append(Quotable(span=span, reading=reading))
    return quotable


def sentence_scores(*, question: TermWeights, candidates: Sequence[Candidate]) -> list[ScoredSentence]:
    """Every sentence of the candidates, scored by the share of the question's weight it holds."""
    scored: list[ScoredSentence] = []
    for candidate in candidates:
        context_terms = set(textual.terms(candidate.context))
        for sentence in quotable_sentences(candidate.passage.text):
            found = set(textual.terms(sentence.reading)) | context_terms
            scored.append(
                ScoredSentence(
                    number=candidate.number,
                    span=sentence.span,
                    coverage=question.coverage(found),
                    reading=sentence.reading,
                )
            )
    return scored


def extract_candidates(scored: Sequence[ScoredSentence]) -> list[ScoredSentence]:
    ranked = sorted(scored, key=lambda sentence: (-sentence.coverage, sentence.number, sentence.span.start))
    return ranked[:EXTRACT_CANDIDATES]


def embed_input(reading: str) -> str:
    return reading[:EMBED_CHARS]


def cosine(left: Sequence[float], right: Sequence[float]) -> float:
    dot = sum(a * b for a, b in zip(left, right, strict=True))
    norm = math.sqrt(sum(a * a for a in left)) * math.sqrt(sum(b * b for b in right))
    return dot / norm if norm else 0.0


def extract_choose(
    *,
    question: TermWeights,
    candidates: Sequence[ScoredSentence],
    similarities: Sequence[float] | None,
    passages: Sequence[Candidate],
) -> Extract | None:
    """Pick 1-EXTRACT_SENTENCES sentences by words and, where embedded, meaning; None when none qualifies."""
    if not candidates:
        return None
    scored = [
        replace(sentence, similarity=similarities[index] if similarities is not None else None)
        for index, sentence in enumerate(candidates)
    ]
    ranked = sorted(scored, key=lambda sentence: (-sentence.score, sentence.number, sentence.span.start))
    best = ranked[0]
    if best.score <= 0:
        return None
    chosen = [best] + [
        sentence
        for sentence in ranked[1:EXTRACT_SENTENCES]
        if sentence.score >= EXTRACT_RELATIVE_SCORE * best.score
    ]
    # Read in document order within a passage, passages in the order they are numbered.
    chosen.sort(key=lambda sentence: (sentence.number, sentence.span.start))
    by_number = {candidate.number: candidate for candidate in passages}
    found: set[str] = set()
    for sentence in chosen:
        found |= set(textual.terms(sentence.span.text)) | set(
            textual.terms(by_number[sentence.number].context)
        )
    # Quoted sentences are held to the bar a passage meets to be evidence, not to a claim's: a claim's bar
    # (MIN_CLAIM_COVERAGE, PARAPHRASE_SIMILARITY) leaves room for a model's rewording, which a quote has not.
    answers = question.coverage(found) >= grounding.MIN_QUESTION_COVERAGE or (
        best.similarity is not None and best.similarity >= grounding.MIN_DENSE_SIMILARITY
    )
    return Extract(sentences=tuple(chosen), answers=answers)


def _table_headers(text: str, spans: Sequence[textual.Span]) -> dict[int, str]:
    """The header rows of the Markdown tables in `text`, by sentence index, with their separator row."""
    headers = {}
    for index, span in enumerate(spans):
        if span.text.startswith("|") and (header := table_header(text[span.start :])) is not None:
            headers[index] = header
    return headers


def trimmed_text(candidate: Candidate, scored: Sequence[ScoredSentence]) -> str:
    """The passage as the model sees it: whole when short, else its best sentences with their neighbours.

    A table's rows stay rows, one a line, under the table's header (which is always kept), so that a row
    still says which column each value is in."""
    text = candidate.passage.text
    if len(text) <= CONTEXT_CHARS_PER_PASSAGE:
        return text
    spans = textual.sentences(text)
    headers = _table_headers(text, spans)
    own = {sentence.span.start: sentence.score for sentence in scored if sentence.number == candidate.number}
    order = sorted(range(len(spans)), key=lambda index: (-own.get(spans[index].start, 0.0), index))
    keep: set[int] = set(headers)
    used = sum(len(header) + 1 for header in headers.values())
    for index in order:
        window = [i for i in (index - 1, index, index + 1) if 0 <= i < len(spans) and i not in keep]
        cost = sum(len(spans[i].text) + 1 for i in window)
        if keep - set(headers) and used + cost > CONTEXT_CHARS_PER_PASSAGE:
            break
        keep.update(window)
        used += cost
    pieces: list[str] = []
    previous = -2
    for index in sorted(keep):
        if index != previous + 1 and pieces:
            pieces.append("…")
        pieces.append(headers.get(index, spans[index].text))
        previous = index
    joined = pieces[:1]
    for before, piece in zip(pieces, pieces[1:], strict=False):
        joined.append(("\n" if piece.startswith("|") or before.startswith("|") else " ") + piece)
    return "".join(joined)


# Verifying the model's answer -------------------------------------------------------------------------


@dataclass
class Claim:
    text: str
    cited: list[int]
    check: grounding.ClaimCheck | None = None
    number: int | None = None


@dataclass
class Verification:
    """The model's answer after its check: the sentences kept, with the passage each is cited to."""

    claims: list[Claim] = field(default_factory=list)
    kept: list[Claim] = field(default_factory=list)
    refused: bool = False

    @property
    def unsupported(self) -> int:
        return len(self.claims) - len(self.kept)

    def text(self) -> str:
        return " ".join(cite(claim.text, claim.number) for claim in self.kept if claim.number is not None)

    def cited_numbers(self) -> list[int]:
        return list(dict.fromkeys(claim.number for claim in self.kept if claim.number is not None))


def citations(text: str, *, passages: int) -> tuple[str, list[int]]:
    """The sentence without its bracketed markers, and the valid passage numbers it cites, in order.

    `[2]`, `[2, 3]` and `[2][3]` cite; `[0]`, `[99]`, `[1-3]` or `[a]` cite nothing and are removed.
    """
    numbers: list[int] = []

    def take(match: re.Match[str]) -> str:
        inside = match.group(1)
        if re.fullmatch(r"\d{1,3}(?:\s*,\s*\d{1,3})*", inside):
            numbers.extend(int(part) for part in inside.split(",") if 1 <= int(part) <= passages)
            return ""
        # Citation-shaped but invalid ("[1-3]", "[a]", "[]"): removed; other bracketed text is the model's.
        return "" if re.fullmatch(r"[\d\s,;:\-–—]*|[A-Za-z]\d*", inside) else match.group(0)

    bare = CITATION.sub(take, text)
    bare = re.sub(r"\s+([.,;:!?])(?=\s|$)", r"\1", bare)  # "30 days [1]." → "30 days.", not ".bz2"
    return " ".join(bare.split()), list(dict.fromkeys(numbers))


def _clean_sentence(text: str) -> str:
    """A sentence without its list or heading marker and without markup (which the page never renders)."""
    text = re.sub(r"<[^>]*>", " ", text)
    return re.sub(r"^(?:[-*•+]\s+|\d{1,3}[.)]\s+|#+\s+)", "", text.strip()).strip()


def verify(
    *,
    answer: str,
    candidates: Sequence[Candidate],
    weights_for: dict[str, TermWeights],
    question: TermWeights | None = None,
    question_text: str = "",
) -> Verification:
    """Check each sentence against the passages it cites (then the others); keep the supported ones.

    `weights_for` maps each sentence's citation-free text to its term weights (built by the caller, who
    reads the terms' frequencies in one query). A sentence that its cited passage does not support but
    another does is cited to that one; one that no passage supports is dropped, and so is a refusal.
    """
    result = Verification()
    by_number = {candidate.number: candidate for candidate in candidates}
    windows_of = {
        number: grounding.windows(number, candidate.passage.text, context=candidate.context)
        for number, candidate in by_number.items()
    }
    for span in textual.sentences(answer):
        text, cited = citations(_clean_sentence(span.text), passages=len(candidates))
        if grounding.is_refusal(text):
            result.refused = True
            continue
        if not text or not grounding.has_content(text):
            continue
        if question_text and not grounding.has_news(text, question_text=question_text):
            continue  # the question said back: nothing to check, nothing gained
        claim = Claim(text=text, cited=cited)
        result.claims.append(claim)
        weights = weights_for.get(text, TermWeights(weights={}))
        for numbers in (cited, [number for number in by_number if number not in cited]):
            pool = [window for number in numbers for window in windows_of.get(number, [])]
            if not pool:
                continue
            check = grounding.claim_check(
                text, pool, weights=weights, question=question, question_text=question_text
            )
            if claim.check is None or (check.grounded and not claim.check.grounded):
                claim.check = check
            if check.grounded:
                break
        if claim.check is not None and claim.check.grounded and claim.check.window is not None:
            claim.number = claim.check.window.passage
            result.kept.append(claim)
    return result


@dataclass(frozen=True)
class Undecided:
    """A claim whose words fell short in its best window but whose exact tokens are all there: the
    embedding model decides whether it paraphrases the window and whether the window is about the question.
    """

    claim: Claim
    window: Window
    needs_paraphrase: bool
    needs_about: bool


def undecided(verification: Verification) -> list[Undecided]:
    return [
        Undecided(
            claim=claim,
            window=claim.check.window,
            needs_paraphrase=not claim.check.supported,
            needs_about=claim.check.about < grounding.MIN_QUESTION_COVERAGE,
        )
        for claim in verification.claims
        if claim not in verification.kept
        and claim.check is not None
        and claim.check.window is not None
        and not claim.check.missing_exact
    ]


def accept(verification: Verification, accepted: Sequence[Undecided]) -> None:
    """Keep the claims the embedding check accepted, in answer order."""
    for item in accepted:
        item.claim.number = item.window.passage
    keep = {id(claim) for claim in verification.kept} | {id(item.claim) for item in accepted}
    verification.kept = [claim for claim in verification.claims if id(claim) in keep]


def quotes_beside(verification: Verification, extract: Extract | None) -> dict[int, str]:
    """The extract's sentences that the model's kept sentences do not already say, cited, by passage.

    The model's checked sentences are its wording of the passages, often shorter than what was asked (a
    small model answers one half of a two-part question, or a neighbouring fact that passes the check but
    does not answer). The extractive answer, which the reader saw while the model wrote, is the passages'
    own best sentences for the question: it stays under the model's answer, so that replacing the stream
    never takes away the sentence that answered. A sentence whose words the model's answer all has is not
    repeated.
    """
    if extract is None:
        return {}
    said = {term for claim in verification.kept for term in textual.terms(claim.text)}
    quotes: dict[int, list[str]] = {}
    for sentence in extract.sentences:
        text = " ".join(sentence.span.text.split())
        if set(textual.terms(text)) <= said:
            continue  # every content word of it is in the model's answer already
        quotes.setdefault(sentence.number, []).append(cite(text, sentence.number))
    return {number: " ".join(texts) for number, texts in quotes.items()}
