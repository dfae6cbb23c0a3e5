"""Answering questions over the documents a caller may read, and recording conversations and feedback."""

from __future__ import annotations

import asyncio
import logging
import math
import uuid
from collections.abc import AsyncIterator, Sequence
from dataclasses import asdict, dataclass
from typing import Any, Literal

from django.conf import settings
from django.db import transaction
from django.utils import timezone
from pgvector.django import CosineDistance

from ingest.models import Chunk
from ragsite.db import db_sync_to_async
from retrievers.selectors import embedding_slot_active
from search import inference, prompting
from search.models import Conversation, Feedback, Message
from search.selectors import RetrievedChunk, chunk_search

logger = logging.getLogger(__name__)

NOT_FOUND_ANSWER = (
    "I could not find anything that answers this in the documents you can read. "
    "Try other words, or ask an administrator whether the right documents are uploaded."
)
EXCERPT_CHARS = 300


@dataclass(frozen=True)
class SourceRef:
    """A passage given to the model as `[number]`; `excerpt` is a short, plain-text preview of `text`."""

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

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> SourceRef:
        return cls(**{name: data[name] for name in cls.__dataclass_fields__})


@dataclass(frozen=True)
class AnswerEvent:
    """One step of an answer: its sources, a piece of its text, a busy wait, a failure, or its end.

    `text` is the token for "token", a person-readable message for "busy" and "error", the whole answer
    for "done", and for "sources" the question as searched (a follow-up rewritten to stand alone).
    "sources" comes once, before any token; "busy" may come before or after it; "error" or "done" ends
    the stream.
    """

    kind: Literal["sources", "token", "busy", "error", "done"]
    text: str = ""
    sources: tuple[SourceRef, ...] = ()
    retry_after: float | None = None


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


def _source_refs(passages: Sequence[RetrievedChunk]) -> tuple[SourceRef, ...]:
    return tuple(
        SourceRef(
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
        )
        for number, passage in enumerate(passages, start=1)
    )


def passage_is_relevant(*, passage: RetrievedChunk, similarity: float | None, min_similarity: float) -> bool:
    """Relevant: the passage matches a keyword of the question, or its embedding is close to the question's.

    Full-text matching catches names, codes and rare words that embeddings blur; the similarity threshold
    catches paraphrases. A passage with neither is merely the nearest of unrelated text, and answering from
    it would invite the model to guess.
    """
    if passage.keyword_rank is not None:
        return True
    return similarity is not None and similarity >= min_similarity


def _similarities(
    *, chunk_ids: Sequence[int], query_embedding: list[float], embedding_column: str
) -> dict[int, float]:
    """Cosine similarity of each chunk to the query (hybrid retrieval scores by rank, not by distance)."""
    if not chunk_ids:
        return {}
    rows = (
        Chunk.objects.filter(id__in=chunk_ids)
        .annotate(distance=CosineDistance(embedding_column, query_embedding))
        .values_list("id", "distance")
    )
    return {chunk_id: 1.0 - float(distance) for chunk_id, distance in rows}


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


def _relevant_passages(
    *, collection_ids: Sequence[int], query: str, query_embedding: list[float], embedding_column: str
) -> list[RetrievedChunk]:
    retrieved = chunk_search(
        collection_ids=list(collection_ids),
        query=query,
        query_embedding=query_embedding,
        k=int(_setting("RAGSITE_RETRIEVAL_K", 10)),
        embedding_column=embedding_column,
    )
    without_keyword = [passage.chunk_id for passage in retrieved if passage.keyword_rank is None]
    similarities = _similarities(
        chunk_ids=without_keyword, query_embedding=query_embedding, embedding_column=embedding_column
    )
    min_similarity = float(_setting("RAGSITE_MIN_SIMILARITY", 0.3))
    return [
        passage
        for passage in retrieved
        if passage_is_relevant(
            passage=passage, similarity=similarities.get(passage.chunk_id), min_similarity=min_similarity
        )
    ]


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
    A busy model service is retried after its Retry-After a bounded number of times, each wait
    announced by a "busy" event; every failure ends in an "error" event, never an exception.
    """
    question = question.strip()
    retries = _busy_retries()
    standalone = await question_rewrite(question=question, history=history, request_id=request_id)

    passages: list[RetrievedChunk] = []
    if collection_ids:
        # The question is embedded by the model whose vectors retrieval reads, both taken from one look.
        slot = await db_sync_to_async(embedding_slot_active)()
        for attempt in range(retries + 1):
            try:
                query_embedding = (await inference.aembed([standalone], model=slot.model_id))[0]
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
        passages = await db_sync_to_async(_relevant_passages)(
            collection_ids=collection_ids,
            query=standalone,
            query_embedding=query_embedding,
            embedding_column=slot.column,
        )

    if not passages:
        # Nothing relevant: say so without asking the model, which would only guess.
        yield AnswerEvent(kind="sources", text=standalone)
        yield AnswerEvent(kind="token", text=NOT_FOUND_ANSWER)
        yield AnswerEvent(kind="done", text=NOT_FOUND_ANSWER)
        return

    answer_tokens = int(_setting("RAGSITE_ANSWER_MAX_TOKENS", 512))
    prompt = prompting.answer_prompt(
        question=standalone,
        passages=passages,
        context_tokens=int(_setting("RAGSITE_CHAT_CONTEXT_TOKENS", 4096)),
        answer_tokens=answer_tokens,
        max_passages=int(_setting("RAGSITE_ANSWER_MAX_PASSAGES", 6)),
    )
    yield AnswerEvent(kind="sources", text=standalone, sources=_source_refs(passages[: len(prompt.passages)]))

    parts: list[str] = []
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
                yield _busy_error()
                return
            wait = _retry_wait(exc.retry_after)
            yield _busy_event(retry_after=wait, attempt=attempt + 1, retries=retries)
            await asyncio.sleep(wait)
        except inference.InferenceError as exc:
            yield AnswerEvent(kind="error", text=exc.message)
            return
    answer = "".join(parts).strip()
    if not answer:
        yield AnswerEvent(kind="error", text="The model returned an empty answer. Please ask again.")
        return
    yield AnswerEvent(kind="done", text=answer)


# Conversations and feedback -------------------------------------------------------------------------


def conversation_ask(*, user: Any, question: str, conversation: Conversation | None = None) -> Message:
    """Record a question as the next, still unanswered turn of `conversation` (a new one when None)."""
    question = question.strip()
    with transaction.atomic():
        if conversation is None:
            conversation = Conversation.objects.create(user=user, title=_title(question))
        else:
            conversation.save(update_fields=["updated_at"])
        return Message.objects.create(
            conversation=conversation, question=question, request_id=uuid.uuid4().hex
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
