"""Scripted answers for the tests of shared answers: events to replay, and a helper to run coroutines."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncGenerator, Awaitable, Callable
from typing import Any, TypeVar

from asgiref.sync import async_to_sync

from search.retrieval_gate import _RetrievalGate
from search.services import AnswerEvent, SourceRef

T = TypeVar("T")
LAPTOPS = "Customers may return a laptop within 30 days of delivery for a full refund."
QUESTION = "How long can I return a laptop?"


def run(make: Callable[[], Awaitable[T]]) -> T:
    """Run a coroutine as the tests' sync code does with Django's async views: in an event loop of its own."""

    async def go() -> T:
        return await make()

    return async_to_sync(go)()


def scripted(
    *events: AnswerEvent, hang: asyncio.Event | None = None, closed: list[str] | None = None
) -> Callable[[], AsyncGenerator[AnswerEvent, None]]:
    """An answer that yields `events`, then waits for `hang` (if given); records in `closed` when closed."""

    async def answer() -> AsyncGenerator[AnswerEvent, None]:
        try:
            for event in events:
                await asyncio.sleep(0.01)
                yield event
            if hang is not None:
                await hang.wait()
        finally:
            if closed is not None:
                closed.append("closed")

    return answer


SOURCE = SourceRef(
    number=1,
    chunk_id=1,
    document_id=1,
    document_title="Returns policy",
    heading_path="",
    page=None,
    excerpt=LAPTOPS,
    text=LAPTOPS,
    char_start=0,
    char_end=len(LAPTOPS),
)
ANSWER = (
    AnswerEvent(kind="sources", text=QUESTION, sources=(SOURCE,)),
    AnswerEvent(kind="extract", text="Within 30 days [1].", sources=(SOURCE,)),
    AnswerEvent(kind="token", text="30 "),
    AnswerEvent(kind="token", text="days [1]."),
    AnswerEvent(kind="done", text="30 days [1].", sources=(SOURCE,), origin="model"),
)


def kinds(events: Any) -> list[str]:
    return [event.kind for event in events]


def crowded_retrieval(*, ahead: int, per_second: float) -> _RetrievalGate:
    """Retrieval with every slot taken, `ahead` questions waiting, finishing `per_second` of late."""
    gate = _RetrievalGate(max_active=2, max_waiting=10_000, max_wait_s=120)
    gate.running, gate.waiting = 2, ahead
    now = time.monotonic()
    gate.finished.extend(now - (20 - n) / per_second for n in range(20))
    return gate
