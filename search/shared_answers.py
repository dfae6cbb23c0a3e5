"""People asking the same thing share one answer: a finished one from the cache, or the one being written.

`answer_stream_shared` wraps `search.services.answer_stream` for the ask page and the widget:

1. A question asked outside a conversation is keyed by `search.answer_cache.answer_key` (the question
   normalised, the collections the asker may read, their documents' generations). A finished, checked
   answer under that key is replayed at once (`reused_at` says when it was written); the ask page records
   it with the question itself (`message_answer_reused`), so that its asker needs no stream at all.
2. Otherwise the asker joins the answer in progress under that key, or starts it (`search.single_flight`):
   one retrieval and one generation for everyone asking it at once, across web processes.
3. Retrieval waits its turn in a bounded queue (`search.retrieval_gate`); the model's own queue is the
   inference API's. A follow-up (its meaning depends on its conversation) is answered on its own.
"""

from __future__ import annotations

import enum
import logging
import math
from collections.abc import AsyncGenerator, Sequence
from contextlib import aclosing
from dataclasses import replace
from datetime import datetime
from typing import Any

from django.conf import settings
from django.utils import timezone
from redis.exceptions import RedisError

from ops.db import db_sync_to_async
from ops.metrics import ANSWERS_SERVED
from search.answer_cache import (
    answer_cache_get,
    answer_cache_get_blocking,
    answer_key_blocking,
    question_normalised,
)
from search.answers import MODEL_UNAVAILABLE_NOTE
from search.models import Message
from search.retrieval_gate import retrieval_bounded, retrieval_wait_beyond_budget
from search.services import AnswerEvent, SourceRef, answer_stream
from search.single_flight import StartAnswer, answer_kept_or_in_flight_blocking, flight_join, flight_leave

logger = logging.getLogger(__name__)


def _setting(name: str, default: Any) -> Any:
    return getattr(settings, name, default)


class KeyUnknown(enum.Enum):
    """`answer_stream_shared` works the key out itself."""

    UNKNOWN = enum.auto()


class SharedAnswer:
    """The events of an answer (`async for event in ...`), and where it came from once they have been read.

    `reused_at`: the answer was a finished one, written then. `joined`: it was already being written for
    someone else asking the same question, and this asker was attached to it.
    """

    def __init__(
        self,
        *,
        collection_ids: Sequence[int],
        question: str,
        history: Sequence[tuple[str, str]],
        request_id: str,
        key: str | None | KeyUnknown = KeyUnknown.UNKNOWN,
    ) -> None:
        self.reused_at: datetime | None = None
        self.joined = False
        self._events = self._run(
            collection_ids=list(collection_ids),
            question=question,
            history=history,
            request_id=request_id,
            key=key,
        )

    def __aiter__(self) -> AsyncGenerator[AnswerEvent, None]:
        return self._events

    async def aclose(self) -> None:
        await self._events.aclose()

    async def _run(
        self,
        *,
        collection_ids: list[int],
        question: str,
        history: Sequence[tuple[str, str]],
        request_id: str,
        key: str | None | KeyUnknown,
    ) -> AsyncGenerator[AnswerEvent, None]:
        def start() -> AsyncGenerator[AnswerEvent, None]:
            events = answer_stream(
                collection_ids=collection_ids, question=question, history=history, request_id=request_id
            )
            return events  # type: ignore[return-value]

        if key is KeyUnknown.UNKNOWN:
            key = await db_sync_to_async(shared_answer_key)(
                collection_ids=collection_ids, question=question, history=history
            )
        if key is None:
            async for event in _unshared(start):
                yield event
            return
        try:
            cached = await answer_cache_get(key)
            joined = None if cached is not None else await flight_join(key, start)
        except RedisError as exc:
            logger.warning("shared answers are unavailable, answering alone: %s", exc)
            async for event in _unshared(start):
                yield event
            return
        if cached is not None:
            ANSWERS_SERVED.labels("cache").inc()
            self.reused_at = cached.written_at
            for event in cached.events:
                yield event
            return
        if joined is None:
            async for event in _unshared(start):
                yield event
            return
        flight, self.joined = joined
        ANSWERS_SERVED.labels("joined" if self.joined else "led").inc()
        index = 0
        try:
            while True:
                if index < len(flight.events):
                    event = flight.events[index]
                    index += 1
                    if event.kind == "token":
                        # An asker behind the answer (a busy process) catches up with one write, not one each.
                        parts = [event.text]
                        while index < len(flight.events) and flight.events[index].kind == "token":
                            parts.append(flight.events[index].text)
                            index += 1
                        event = replace(event, text="".join(parts))
                    self.reused_at = flight.reused_at
                    yield event
                    continue
                if flight.finished:
                    break
                await flight.waiter().wait()
        finally:
            flight_leave(flight)


async def _unshared(start: StartAnswer) -> AsyncGenerator[AnswerEvent, None]:
    ANSWERS_SERVED.labels("unshared").inc()
    async with aclosing(retrieval_bounded(start())) as events:
        async for event in events:
            yield event


def answer_stream_shared(
    *,
    collection_ids: Sequence[int],
    question: str,
    history: Sequence[tuple[str, str]] = (),
    request_id: str,
    key: str | None | KeyUnknown = KeyUnknown.UNKNOWN,
) -> SharedAnswer:
    """`search.services.answer_stream`, shared with everyone asking the same question (see the module).

    `key`, where the caller already has it, is `shared_answer_key`'s for the same arguments.
    """
    return SharedAnswer(
        collection_ids=collection_ids, question=question, history=history, request_id=request_id, key=key
    )


def shared_answer_key(
    *, collection_ids: Sequence[int], question: str, history: Sequence[tuple[str, str]]
) -> str | None:
    """The key the answer to `question` is shared under; None when it is answered on its own (blocking).

    A follow-up is read in the light of its conversation, and an empty question needs no retrieval.
    """
    if history or not collection_ids or not question_normalised(question):
        return None
    return answer_key_blocking(collection_ids=collection_ids, question=question)


# What the page and the widget say about an answer -------------------------------------------------------


def model_busy_retry_after(done: AnswerEvent, *, last_busy: AnswerEvent | None) -> int | None:
    """Seconds after which the full answer may be asked for again, when the model had no room for it."""
    fallback = done.origin == "extract" and done.text.startswith(f"*{MODEL_UNAVAILABLE_NOTE}")
    if done.kind != "done" or not fallback:
        return None
    if last_busy is not None and last_busy.retry_after is not None:
        return max(1, math.ceil(last_busy.retry_after))
    return math.ceil(float(_setting("RAGSITE_ANSWER_MAX_RETRY_WAIT_S", 10.0)))


def question_turned_away(*, collection_ids: Sequence[int], question: str, follow_up: bool) -> int | None:
    """Seconds to ask again after, when retrieval could not take this new question within its wait and no
    answer to it is kept or being written (a reused or joined answer needs no retrieval); None to go ahead.

    The asker is told at once, before a turn is recorded or a stream opened, instead of waiting their whole
    turn to be told the same (`search.retrieval_gate.retrieval_wait_beyond_budget`). The wait past what is
    allowed is how long the queue ahead takes to shorten enough, so it is the time to come back after. A
    follow-up is read with its conversation and shared with nobody: it always needs retrieval.
    """
    beyond = retrieval_wait_beyond_budget()
    if beyond <= 0:
        return None
    key = None
    if not follow_up:
        key = shared_answer_key(collection_ids=collection_ids, question=question, history=())
    if key is not None:
        try:
            if answer_kept_or_in_flight_blocking(key):
                return None
        except RedisError as exc:
            logger.warning("the answer cache is unavailable: %s", exc)
    ANSWERS_SERVED.labels("turned_away").inc()
    return max(1, math.ceil(beyond))


async def question_turned_away_async(
    *, collection_ids: Sequence[int], question: str, follow_up: bool
) -> int | None:
    """`question_turned_away` from async code: its reads go to a thread only while retrieval is behind."""
    if retrieval_wait_beyond_budget() <= 0:
        return None
    return await db_sync_to_async(question_turned_away)(
        collection_ids=collection_ids, question=question, follow_up=follow_up
    )


def turned_away_text(retry_after: int) -> str:
    return f"Too many questions are being answered right now. Please ask again in {retry_after} s."


def message_answer_reused(
    *, message: Message, collection_ids: Sequence[int], history: Sequence[tuple[str, str]]
) -> bool:
    """Answer a new turn at once with the finished answer its stream would replay from the cache.

    Under the same key as `answer_stream_shared` (so the same readable collections and documents); False,
    leaving the turn pending for its stream, when there is none or the cache cannot be read.
    """
    key = shared_answer_key(collection_ids=collection_ids, question=message.question, history=history)
    if key is None:
        return False
    try:
        cached = answer_cache_get_blocking(key)
    except RedisError as exc:
        logger.warning("the answer cache is unavailable: %s", exc)
        return False
    if cached is None or not cached.events or cached.events[-1].kind != "done":
        return False
    done = cached.events[-1]
    searched = next((event.text for event in cached.events if event.kind == "sources" and event.text), "")
    message_record_shared_answer(
        message=message,
        standalone_question=searched or message.question,
        answer=done.text,
        sources=done.sources,
        origin=done.origin,
        reused_at=cached.written_at,
        busy_retry_after=model_busy_retry_after(done, last_busy=None),
    )
    ANSWERS_SERVED.labels("cache").inc()
    return True


def message_record_shared_answer(
    *,
    message: Message,
    standalone_question: str,
    answer: str,
    sources: Sequence[SourceRef],
    origin: str,
    reused_at: datetime | None,
    busy_retry_after: int | None,
) -> Message:
    """Record an answered turn with where its answer came from (each asker has a turn of their own)."""
    message.standalone_question = standalone_question
    message.answer = answer
    message.sources = [source.as_dict() for source in sources]
    message.status = Message.Status.ANSWERED
    message.error = ""
    message.answered_at = timezone.now()
    message.origin = origin
    message.reused_at = reused_at
    message.busy_retry_after = busy_retry_after
    message.save(
        update_fields=[
            "standalone_question",
            "answer",
            "sources",
            "status",
            "error",
            "answered_at",
            "origin",
            "reused_at",
            "busy_retry_after",
        ]
    )
    return message
