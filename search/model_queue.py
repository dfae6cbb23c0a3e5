"""Which answer asks the model next: the one the most people are waiting for.

The inference API runs a few chats at once (its engine's batch, which its /v1/models card states) and queues
a few more, first come first served; past that it refuses them (429). A web process that sent every answer
as soon as its retrieval finished would fill that queue in retrieval's order, so a question asked by 1,500
people could lose its place to one asked by one, and keep only its extract.

So a web process keeps at most as many chats at the model as the model runs at once (`inference.chat_slots`;
no bound where a replica does not say), and the answers beyond that wait here, each for at most
`RAGSITE_MODEL_QUEUE_WAIT_S` (and never past the question's wait budget, `ops.admission.wait_until`), at most
`RAGSITE_MODEL_QUEUE_MAX_WAITING` of them. When a chat ends, the
answer with the most askers (`answer_askers`, which single-flight sets to the people following the answer)
goes next; among equals, the one that waited longest. An answer that waited too long, or found the queue
full, is told the model is busy and keeps its extract.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import weakref
from collections.abc import AsyncIterator, Callable
from contextvars import ContextVar
from dataclasses import dataclass, field
from typing import Any

from django.conf import settings

from ops.admission import wait_left

# How many people wait for the answer being written in this context (single-flight sets it per answer).
answer_askers: ContextVar[Callable[[], int]] = ContextVar("answer_askers", default=lambda: 1)
# Called as an answer starts waiting for the model: what came before (retrieval, whose queue sets it to give
# its place back) is done, and must not be held while the model is busy.
before_model: ContextVar[Callable[[], None]] = ContextVar("before_model", default=lambda: None)


def _setting(name: str, default: Any) -> Any:
    return getattr(settings, name, default)


@dataclass
class _Waiter:
    askers: Callable[[], int]
    order: int
    turn: asyncio.Future[None] = field(default_factory=lambda: asyncio.get_running_loop().create_future())


class ModelQueue:
    """At most `slots` chats at the model at once (None: no bound); `max_waiting` wait, most asked first."""

    def __init__(self, *, max_waiting: int) -> None:
        self.max_waiting = max_waiting
        self.slots: int | None = None
        self.active = 0
        self.waiting: list[_Waiter] = []
        self._order = itertools.count()

    def _room(self) -> bool:
        return self.slots is None or self.active < self.slots

    async def acquire(self, *, askers: Callable[[], int], slots: int | None, wait_s: float) -> bool:
        """Take a place at the model; False when the queue is full or the wait ran out (or had none left)."""
        self.slots = slots
        if self._room() and not self.waiting:
            self.active += 1
            return True
        if len(self.waiting) >= self.max_waiting or wait_s <= 0:
            return False
        waiter = _Waiter(askers=askers, order=next(self._order))
        self.waiting.append(waiter)
        taken = False
        try:
            async with asyncio.timeout(wait_s):
                await waiter.turn
            taken = True
        except TimeoutError:
            pass
        finally:
            if not taken:
                if waiter.turn.done() and not waiter.turn.cancelled():
                    self.release()  # the place came as the wait ended: pass it on
                else:
                    waiter.turn.cancel()
                    if waiter in self.waiting:  # a release may already have passed it over
                        self.waiting.remove(waiter)
        return taken

    def release(self) -> None:
        self.active -= 1
        while self.waiting and self._room():
            best = max(self.waiting, key=lambda waiter: (waiter.askers(), -waiter.order))
            self.waiting.remove(best)
            if best.turn.done():
                # Its wait was cancelled (its asker left, or its time ran out) and it has not yet woken up to
                # leave the queue: pass it over, and the place goes to the next.
                continue
            self.active += 1
            best.turn.set_result(None)


_queues: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, ModelQueue] = weakref.WeakKeyDictionary()


def model_queue() -> ModelQueue:
    """The queue of this event loop (this web process)."""
    loop = asyncio.get_running_loop()
    queue = _queues.get(loop)
    if queue is None:
        queue = ModelQueue(max_waiting=int(_setting("RAGSITE_MODEL_QUEUE_MAX_WAITING", 1024)))
        _queues[loop] = queue
    return queue


@contextlib.asynccontextmanager
async def model_turn(*, slots: int | None) -> AsyncIterator[bool]:
    """Wait for this answer's turn at the model; yields False when it did not come (busy), True while held."""
    before_model.get()()
    queue = model_queue()
    held = await queue.acquire(
        askers=answer_askers.get(),
        slots=slots,
        wait_s=wait_left(float(_setting("RAGSITE_MODEL_QUEUE_WAIT_S", 30.0))),
    )
    try:
        yield held
    finally:
        if held:
            queue.release()
