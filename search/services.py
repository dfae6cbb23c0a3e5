"""Answering questions over the documents a caller may read, and recording conversations and feedback."""

from __future__ import annotations

import asyncio
import logging
import math
import uuid
from collections.abc import AsyncIterator, Sequence
from dataclasses import asdict, dataclass, replace
from datetime import datetime
from typing import Any, Literal

from django.conf import settings
from django.db import connection, transaction
from django.utils import timezone

from ingest.models import Chunk
from ops import inference
from ops.db import db_sync_to_async
from retrievers.selectors import embedding_slot_active
from search import answers, grounding, prompting, sentence_vectors, textual
from search.grounding import TermWeights
from search.model_queue import model_turn
from search.models import Conversation, Feedback, Message
from search.retrieval import vector_literal
from search.selectors import RetrievedChunk, chunk_search, lexeme_frequencies

logger = logging.getLogger(__name__)

NOT_FOUND_ANSWER = (
    "I could not find anything that answers this in the documents you can read. "
    "Try other words, or ask an administrator whether the right documents are uploaded."
)
EXCERPT_CHARS = 300
# The answer service reads at most this much of a question (the ask form and the widget refuse longer ones).
MAX_QUESTION_CHARS = 2000
# Of a longer question only this much is embedded: all-MiniLM-L6-v2 reads at most 256 tokens, and 600
# characters stay below that even at 2.5 characters a token (code, numbers).
EMBED_QUESTION_CHARS = 600


@dataclass(frozen=True)
class SourceRef:
    """A passage given to the model as `[number]`; `excerpt` is a short, plain-text preview of `text`.

    `cited` marks a passage the final answer cites; `highlight_start`/`highlight_end` (offsets into `text`)
    mark the sentence an extractive answer quotes from it.
    """

    number: int
    chunk_id: int
    document_id: int
    document_title: str
    heading_path: str
    page: int | None
    excerpt: str
    text: str
    char_start: int
    char_end: int
    cited: bool = False
    highlight_start: int | None = None
    highlight_end: int | None = None

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> SourceRef:
        fields = cls.__dataclass_fields__
        return cls(**{name: data[name] for name in fields if name in data})


@dataclass(frozen=True)
class AnswerEvent:
    """One step of an answer: its sources, its extractive answer, a piece of its text, a busy wait, a
    failure, or its end.

    `text` is the token for "token", a person-readable message for "busy" and "error", the extractive answer
    for "extract" (its `sources` are the quoted sentences' passages, with the sentence highlighted), the final
    answer for "done" (its `sources` cited first, marked `cited`; none for a refusal, which sets `refused`),
    and for "sources" the question as searched (a follow-up rewritten to stand alone). "sources" comes once,
    before "extract" and any token; "busy" may come before or after it; "error" or "done" ends the stream.
    """

    kind: Literal["sources", "extract", "token", "busy", "error", "done"]
    text: str = ""
    sources: tuple[SourceRef, ...] = ()
    retry_after: float | None = None
    refused: bool = False
    # For "done": how the answer was made ("model", "extract", "refusal") and what its check found.
    origin: str = ""
    model_sentences: int = 0
    unsupported_sentences: int = 0
    prompt_tokens: int = 0
    # For "done" after the model wrote: its reply before the check (kept for measurement and the logs).
    model_answer: str = ""


def _setting(name: str, default: Any) -> Any:
    return getattr(settings, name, default)


def _busy_retries() -> int:
    return int(_setting("RAGSITE_ANSWER_BUSY_RETRIES", 3))


def _retry_wait(retry_after: float) -> float:
    """Honour the service's Retry-After, within bounds that keep a page from hanging."""
    return min(max(retry_after, 0.2), float(_setting("RAGSITE_ANSWER_MAX_RETRY_WAIT_S", 10.0)))


def _busy_event(*, retry_after: float, attempt: int, retries: int) -> AnswerEvent:
    return AnswerEvent(
        kind="busy",
        text=f"The model service is busy, retrying in {math.ceil(retry_after)} s "
        f"(attempt {attempt} of {retries})…",
        retry_after=retry_after,
    )


def _busy_error() -> AnswerEvent:
    return AnswerEvent(
        kind="error",
        text="The model service is still busy after several retries. Please ask again in a minute.",
    )


def _excerpt(text: str) -> str:
    flat = " ".join(text.split())
    if len(flat) <= EXCERPT_CHARS:
        return flat
    return flat[:EXCERPT_CHARS].rsplit(" ", 1)[0] + " …"


def _source_ref(number: int, passage: RetrievedChunk, **extra: Any) -> SourceRef:
    return SourceRef(
        number=number,
        chunk_id=passage.chunk_id,
        document_id=passage.document_id,
        document_title=passage.document_title,
        heading_path=passage.heading_path,
        page=passage.page,
        excerpt=_excerpt(passage.text),
        text=passage.text,
        char_start=passage.char_start,
        char_end=passage.char_end,
        **extra,
    )


def _similarities(
    *, chunk_ids: Sequence[int], query_embedding: list[float], embedding_column: str
) -> dict[int, float]:
    """Cosine similarity of each chunk to the query (hybrid retrieval's score is a fusion, not a distance)."""
    if not chunk_ids:
        return {}
    # In SQL and unordered: the ORM's query (compiled, sorted as the model orders) took 0.75 ms of CPU; 0.46.
    column = connection.ops.quote_name(embedding_column)
    with connection.cursor() as cursor:
        cursor.execute(
            f"SELECT id, {column} <=> %s::vector FROM {Chunk._meta.db_table} WHERE id = ANY(%s)",
            [vector_literal(query_embedding), list(chunk_ids)],
        )
        return {chunk_id: 1.0 - float(distance) for chunk_id, distance in cursor.fetchall()}


def _weights(
    texts: Sequence[str], *, collection_ids: Sequence[int], questions: bool = False
) -> dict[str, TermWeights]:
    """The term weights of each text over the chunks of `collection_ids` (those searched), their frequencies
    read in one query."""
    lexemes = {term for text in texts for term in textual.terms(text)}
    frequencies, all_chunks = lexeme_frequencies(lexemes=sorted(lexemes), collection_ids=collection_ids)
    return {
        text: grounding.term_weights(text, frequencies=frequencies, all_chunks=all_chunks, question=questions)
        for text in texts
    }


@dataclass(frozen=True)
class Evidence:
    question: TermWeights
    candidates: list[answers.Candidate]


def _evidence(
    *, collection_ids: Sequence[int], query: str, query_embedding: list[float], embedding_column: str
) -> Evidence:
    """Retrieve, then keep the passages that are evidence for the question (search.grounding's gate)."""
    retrieved = chunk_search(
        collection_ids=list(collection_ids),
        query=query,
        query_embedding=query_embedding,
        k=int(_setting("RAGSITE_RETRIEVAL_K", 10)),
        embedding_column=embedding_column,
    )
    similarities = _similarities(
        chunk_ids=[passage.chunk_id for passage in retrieved],
        query_embedding=query_embedding,
        embedding_column=embedding_column,
    )
    question = _weights([query], collection_ids=collection_ids, questions=True)[query]
    return Evidence(
        question=question,
        candidates=answers.gate(
            question=question,
            passages=retrieved,
            similarities=similarities,
            limit=int(_setting("RAGSITE_ANSWER_MAX_PASSAGES", 3)),
        ),
    )


async def question_rewrite(*, question: str, history: Sequence[tuple[str, str]], request_id: str) -> str:
    """A follow-up as a standalone question; the question itself when the model cannot help right now."""
    if not history:
        return question
    try:
        reply = await inference.chat_complete(
            messages=prompting.rewrite_messages(question=question, history=history),
            max_tokens=96,
            temperature=0.0,
            request_id=f"{request_id}-rewrite",
        )
    except inference.InferenceError as exc:
        logger.info("question rewrite skipped: %s", exc.message)
        return question
    return prompting.rewritten_question(reply=reply, question=question)


def refusal_event(**extra: Any) -> AnswerEvent:
    return AnswerEvent(kind="done", text=NOT_FOUND_ANSWER, refused=True, origin="refusal", **extra)


async def _pool_similarities(
    *,
    pool: Sequence[answers.ScoredSentence],
    candidates: Sequence[answers.Candidate],
    query_embedding: list[float],
    model: str,
) -> list[float] | None:
    """Each pooled sentence's cosine to the question: stored ahead (search.sentence_vectors) where it was,
    else embedded now; None when the model service cannot embed the rest (the extract is scored by words)."""
    chunk_of = {candidate.number: candidate.passage.chunk_id for candidate in candidates}
    stored = await db_sync_to_async(sentence_vectors.sentence_similarities)(
        chunk_ids=sorted({chunk_of[sentence.number] for sentence in pool}),
        model_id=model,
        query_embedding=query_embedding,
    )
    found = [stored.get((chunk_of[sentence.number], sentence.span.start)) for sentence in pool]
    missing = [index for index, similarity in enumerate(found) if similarity is None]
    if missing:
        try:
            vectors = await inference.aembed(
                [answers.embed_input(pool[i].reading) for i in missing], model=model
            )
        except inference.InferenceError as exc:
            logger.info("extractive answer scored by words only: %s", exc.message)
            return None
        for index, vector in zip(missing, vectors, strict=True):
            found[index] = answers.cosine(query_embedding, vector)
    return [similarity for similarity in found if similarity is not None]


async def _extract(
    *, evidence: Evidence, query_embedding: list[float], model: str
) -> tuple[answers.Extract | None, list[answers.ScoredSentence]]:
    """The extractive answer, and every sentence's score (by words; by meaning too where embedded)."""
    scored = answers.sentence_scores(question=evidence.question, candidates=evidence.candidates)
    pool = answers.extract_candidates(scored)
    similarities: list[float] | None = None
    if pool:
        similarities = await _pool_similarities(
            pool=pool, candidates=evidence.candidates, query_embedding=query_embedding, model=model
        )
    extract = answers.extract_choose(
        question=evidence.question, candidates=pool, similarities=similarities, passages=evidence.candidates
    )
    if similarities is not None:
        embedded = {
            (sentence.number, sentence.span.start): similarity
            for sentence, similarity in zip(pool, similarities, strict=True)
        }
        scored = [
            replace(sentence, similarity=embedded.get((sentence.number, sentence.span.start)))
            for sentence in scored
        ]
    return extract, scored


def _extract_sources(extract: answers.Extract, refs: dict[int, SourceRef]) -> tuple[SourceRef, ...]:
    return tuple(
        replace(
            refs[sentence.number],
            cited=True,
            highlight_start=sentence.span.start,
            highlight_end=sentence.span.end,
        )
        for sentence in extract.sentences
    )


def _final_sources(cited: Sequence[int], refs: dict[int, SourceRef]) -> tuple[SourceRef, ...]:
    """Cited passages first, in the order the answer first cites them, then the others."""
    first = [replace(refs[number], cited=True) for number in cited if number in refs]
    return tuple(first + [ref for number, ref in refs.items() if number not in cited])


async def _verify(
    *,
    answer: str,
    collection_ids: Sequence[int],
    candidates: Sequence[answers.Candidate],
    model: str,
    question: TermWeights,
    question_text: str,
    query_embedding: list[float],
) -> answers.Verification:
    sentences = [
        answers.citations(span.text, passages=len(candidates))[0] for span in textual.sentences(answer)
    ]
    weights = await db_sync_to_async(_weights)(
        [text for text in sentences if text], collection_ids=collection_ids
    )
    verification = answers.verify(
        answer=answer,
        candidates=candidates,
        weights_for=weights,
        question=question,
        question_text=question_text,
    )
    pending = answers.undecided(verification)
    if not pending:
        return verification
    texts: list[str] = []
    for item in pending:
        texts.append(item.window.text[: answers.EMBED_CHARS])
        if item.needs_paraphrase:
            texts.append(item.claim.text[: answers.EMBED_CHARS])
    try:
        vectors = iter(await inference.aembed(texts, model=model))
    except inference.InferenceError as exc:
        logger.info("the embedding check of %d sentences was skipped: %s", len(pending), exc.message)
        return verification
    accepted = []
    for item in pending:
        window = next(vectors)
        paraphrase = (
            answers.cosine(next(vectors), window) >= grounding.PARAPHRASE_SIMILARITY
            if item.needs_paraphrase
            else True
        )
        about = (
            answers.cosine(query_embedding, window) >= grounding.MIN_DENSE_SIMILARITY
            if item.needs_about
            else True
        )
        if paraphrase and about:
            accepted.append(item)
    answers.accept(verification, accepted)
    return verification


async def answer_stream(
    *,
    collection_ids: Sequence[int],
    question: str,
    history: Sequence[tuple[str, str]] = (),
    request_id: str,
) -> AsyncIterator[AnswerEvent]:
    """Answer `question` from the passages of `collection_ids` only, streaming its events.

    The caller decides which collections the asker may read (`collection_ids_readable_by` for staff, the
    key's collections for the widget); nothing outside them is retrieved, shown or sent to the model.
    Passages that are not evidence for the question are dropped; with none left the answer is a refusal
    and no model is asked. Otherwise the extractive answer comes first, then the model's tokens, then the
    final answer: the model's sentences that its passages support, or the extractive answer when none is,
    or a refusal. A busy model service is retried after its Retry-After a bounded number of times, each
    wait announced by a "busy" event; every failure ends in an "error" event, never an exception.
    """
    question = question.strip()[:MAX_QUESTION_CHARS]
    retries = _busy_retries()
    standalone = await question_rewrite(question=question, history=history, request_id=request_id)

    if not collection_ids or not grounding.has_content(standalone):
        yield AnswerEvent(kind="sources", text=standalone)
        yield refusal_event()
        return
    # The question is embedded by the model whose vectors retrieval reads, both taken from one look.
    slot = await db_sync_to_async(embedding_slot_active)()
    for attempt in range(retries + 1):
        try:
            query_embedding = (
                await inference.aembed([standalone[:EMBED_QUESTION_CHARS]], model=slot.model_id)
            )[0]
            break
        except inference.InferenceBusy as exc:
            if attempt == retries:
                yield _busy_error()
                return
            wait = _retry_wait(exc.retry_after)
            yield _busy_event(retry_after=wait, attempt=attempt + 1, retries=retries)
            await asyncio.sleep(wait)
        except inference.InferenceError as exc:
            yield AnswerEvent(kind="error", text=exc.message)
            return
    evidence = await db_sync_to_async(_evidence)(
        collection_ids=collection_ids,
        query=standalone,
        query_embedding=query_embedding,
        embedding_column=slot.column,
    )
    if not evidence.candidates:
        # Nothing is about the question: say so without asking the model, which would only guess.
        yield AnswerEvent(kind="sources", text=standalone)
        yield refusal_event()
        return

    refs = {
        candidate.number: _source_ref(candidate.number, candidate.passage)
        for candidate in evidence.candidates
    }
    yield AnswerEvent(kind="sources", text=standalone, sources=tuple(refs.values()))
    extract, scored = await _extract(evidence=evidence, query_embedding=query_embedding, model=slot.model_id)
    if extract is not None:
        yield AnswerEvent(kind="extract", text=extract.text(), sources=_extract_sources(extract, refs))

    answer_tokens = int(_setting("RAGSITE_ANSWER_MAX_TOKENS", 256))
    prompt = prompting.answer_prompt(
        question=standalone,
        passages=[
            prompting.PromptPassage(
                number=candidate.number,
                label=prompting.passage_label(candidate.passage),
                text=answers.trimmed_text(candidate, scored),
            )
            for candidate in evidence.candidates
        ],
        context_tokens=int(_setting("RAGSITE_CHAT_CONTEXT_TOKENS", 4096)),
        answer_tokens=answer_tokens,
    )
    prompt_tokens = sum(prompting.estimate_tokens(message["content"]) for message in prompt.messages)
    in_prompt = [candidate for candidate in evidence.candidates if candidate.number in prompt.numbers]

    def fallback(note: str) -> AnswerEvent | None:
        if extract is None or not extract.answers:
            return None
        if not grounding.has_answer_type(extract.text(), question=standalone):
            return None  # the passages' sentences do not hold what was asked for (a name, a year, ...)
        numbers = list(dict.fromkeys(sentence.number for sentence in extract.sentences))
        return AnswerEvent(
            kind="done",
            text=f"*{note}*\n\n{extract.text()}",
            sources=_final_sources(numbers, refs),
            origin="extract",
            prompt_tokens=prompt_tokens,
        )

    parts: list[str] = []
    # The answers the most people wait for go to the model first (search.model_queue).
    async with model_turn(slots=await inference.chat_slots()) as turn:
        if not turn:
            yield fallback(answers.MODEL_UNAVAILABLE_NOTE) or _busy_error()
            return
        for attempt in range(retries + 1):
            try:
                async for delta in inference.chat_stream(
                    messages=prompt.messages, max_tokens=answer_tokens, temperature=0.0, request_id=request_id
                ):
                    parts.append(delta)
                    yield AnswerEvent(kind="token", text=delta)
                break
            except inference.InferenceBusy as exc:
                # A busy answer is refused before its first token, so a retry never repeats text.
                if parts or attempt == retries:
                    yield fallback(answers.MODEL_UNAVAILABLE_NOTE) or _busy_error()
                    return
                wait = _retry_wait(exc.retry_after)
                yield _busy_event(retry_after=wait, attempt=attempt + 1, retries=retries)
                await asyncio.sleep(wait)
            except inference.InferenceError as exc:
                yield fallback(answers.MODEL_UNAVAILABLE_NOTE) or AnswerEvent(kind="error", text=exc.message)
                return
    answer = "".join(parts).strip()
    if not answer:
        yield fallback(answers.MODEL_UNAVAILABLE_NOTE) or AnswerEvent(
            kind="error", text="The model returned an empty answer. Please ask again."
        )
        return
    verification = await _verify(
        answer=answer,
        collection_ids=collection_ids,
        candidates=in_prompt,
        model=slot.model_id,
        question=evidence.question,
        question_text=standalone,
        query_embedding=query_embedding,
    )
    checked: dict[str, Any] = {
        "model_sentences": len(verification.claims),
        "unsupported_sentences": verification.unsupported,
        "prompt_tokens": prompt_tokens,
        "model_answer": answer,
    }
    quotes = answers.quotes_beside(verification, extract) if verification.kept else {}
    text = verification.text()
    if quotes:
        text = f"{text}\n\n*{answers.QUOTES_NOTE}* {' '.join(quotes.values())}"
    if verification.kept and not grounding.has_answer_type(text, question=standalone):
        # Every kept sentence is in the passages, yet none holds what the question asks for ("who" without
        # a name, "what year" without a year): true sentences about the topic, not an answer.
        yield refusal_event(**checked)
    elif verification.kept:
        yield AnswerEvent(
            kind="done",
            text=text,
            sources=_final_sources(list(dict.fromkeys(verification.cited_numbers() + list(quotes))), refs),
            origin="model",
            **checked,
        )
    elif not verification.refused and (done := fallback(answers.UNVERIFIED_NOTE)) is not None:
        yield replace(done, **checked)
    else:
        yield refusal_event(**checked)


# Conversations and feedback -------------------------------------------------------------------------


def conversation_ask(
    *, user: Any, question: str, conversation: Conversation | None = None, wait_until: datetime | None = None
) -> Message:
    """Record a question as the next, still unanswered turn of `conversation` (a new one when None);
    `wait_until`: when its answer stops waiting for a turn (`Message.wait_until`)."""
    question = question.strip()
    with transaction.atomic():
        if conversation is None:
            conversation = Conversation.objects.create(user=user, title=_title(question))
        else:
            conversation.save(update_fields=["updated_at"])
        return Message.objects.create(
            conversation=conversation, question=question, request_id=uuid.uuid4().hex, wait_until=wait_until
        )


def _title(question: str) -> str:
    flat = " ".join(question.split())
    return flat if len(flat) <= 80 else flat[:80].rsplit(" ", 1)[0] + " …"


def message_claim(*, message: Message) -> bool:
    """Move a pending turn to streaming; False when another request already answers (or answered) it."""
    claimed = Message.objects.filter(id=message.id, status=Message.Status.PENDING).update(
        status=Message.Status.STREAMING
    )
    if claimed:
        message.status = Message.Status.STREAMING
    return bool(claimed)


def message_record_answer(
    *, message: Message, standalone_question: str, answer: str, sources: Sequence[SourceRef]
) -> Message:
    message.standalone_question = standalone_question
    message.answer = answer
    message.sources = [source.as_dict() for source in sources]
    message.status = Message.Status.ANSWERED
    message.error = ""
    message.answered_at = timezone.now()
    message.save(update_fields=["standalone_question", "answer", "sources", "status", "error", "answered_at"])
    return message


def message_record_failure(
    *, message: Message, error: str, standalone_question: str = "", sources: Sequence[SourceRef] = ()
) -> Message:
    """A turn that could not be answered keeps the reason, which the page shows instead of an answer."""
    message.standalone_question = standalone_question
    message.sources = [source.as_dict() for source in sources]
    message.status = Message.Status.FAILED
    message.error = error
    message.answered_at = timezone.now()
    message.save(update_fields=["standalone_question", "sources", "status", "error", "answered_at"])
    return message


def feedback_record(*, user: Any, message: Message, rating: str, comment: str = "") -> Feedback:
    """Store (or change) the verdict on an answered turn, with the question, answer and passages it judged."""
    if message.status != Message.Status.ANSWERED:
        raise ValueError("Only an answered question can be rated.")
    feedback, _created = Feedback.objects.update_or_create(
        message=message,
        defaults={
            "user": user,
            "rating": rating,
            "comment": comment.strip(),
            "question": message.question,
            "standalone_question": message.standalone_question,
            "answer": message.answer,
            "passages": message.sources,
        },
    )
    return feedback
