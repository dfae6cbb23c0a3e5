"""Retrieval's bounded queue: how many questions are embedded and searched at once in a web process.

Retrieval (embedding, search, the extractive answer) runs for at most `RAGSITE_RETRIEVAL_MAX_ACTIVE`
questions at once; up to `RAGSITE_RETRIEVAL_MAX_WAITING` more wait at most `RAGSITE_RETRIEVAL_MAX_WAIT_S`, and
never past the question's wait budget (`ops.admission.wait_until`: its arrival at the door plus
`RAGSITE_WEB_MAX_WAIT_S`, the door's wait included).
A question's slot is freed by its first event after "sources" (its extractive answer, or its end), or as it
starts to wait for the model (`search.model_queue.before_model`), whichever comes first: the
generated answer then waits for the model on its own (the inference API bounds that queue), so a busy model
never holds retrieval up. Past the queue, retrieval cannot keep up: the door refuses new questions
(`retrieval_overloaded`) and a waiting one is told to ask again. Before the queue is full, a new question
that would wait longer than it may (those waiting ahead of it over the rate retrieval has been finishing
them: `retrieval_wait_beyond_budget`) is turned away where it is asked, unless its answer is kept or
already being written, rather than admitted to time out in the queue after its turn, its stream and its
memory have been spent on it.
"""

from __future__ import annotations

import asyncio
import math
import time
import weakref
from collections import deque
from collections.abc import AsyncGenerator
from contextlib import aclosing
from typing import Any

from django.conf import settings

from ops.admission import wait_left
from ops.metrics import ANSWERS_SERVED
from search.model_queue import before_model
from search.services import AnswerEvent


def _setting(name: str, default: Any) -> Any:
    return getattr(settings, name, default)


# The rate at which retrieval finishes questions is measured over its last THROUGHPUT_WINDOW slots given back:
# a rate counted from n events is off by about 1/sqrt(n), 10 % here, and under load a hundred questions
# pass in seconds, so the estimate follows a change of pace. Below THROUGHPUT_MIN of them (a process just
# started, or one that has been idle) there is no estimate and nothing is turned away on a guess.
THROUGHPUT_WINDOW = 100
THROUGHPUT_MIN = 10


class _RetrievalGate:
    """At most `max_active` questions in retrieval at once; up to `max_waiting` wait, each `max_wait_s`."""

    def __init__(
        self,
        *,
        max_active: int,
        max_waiting: int,
        max_wait_s: float,
        loop: asyncio.AbstractEventLoop | None = None,
    ) -> None:
        self.active = asyncio.Semaphore(max_active)
        self._loop = None if loop is None else weakref.ref(loop)
        self.max_active = max_active
        self.max_waiting = max_waiting
        self.max_wait_s = max_wait_s
        self.waiting = 0
        # Plain counts and a deque, so that a request's thread may read them while the loop moves them.
        self.running = 0
        self.finished: deque[float] = deque(maxlen=THROUGHPUT_WINDOW)

    def overloaded(self) -> bool:
        return self.active.locked() and self.waiting >= self.max_waiting

    def serving(self) -> bool:
        """Whether the loop it belongs to still runs (a test's loop, say, may have ended with slots held)."""
        loop = None if self._loop is None else self._loop()
        return self._loop is None or (loop is not None and not loop.is_closed())

    def expected_wait_s(self, now: float) -> float:
        """How long a question arriving `now` (monotonic) would wait for a slot: those waiting ahead of it
        and itself, over the rate slots were given back (Little's law); 0 while a slot is free or no rate
        is known. The rate is counted up to `now`, so a retrieval that stopped finishing is seen slowing."""
        count = len(self.finished)
        if self.running < self.max_active or count < THROUGHPUT_MIN:
            return 0.0
        span = now - self.finished[0]
        if span <= 0:
            return 0.0
        return (self.waiting + 1) * span / count


_gates: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, _RetrievalGate] = weakref.WeakKeyDictionary()
# The gate of the loop that last made one: a web process serves on one loop, and its views' threads ask it.
_latest: _RetrievalGate | None = None


def _gate() -> _RetrievalGate:
    global _latest
    loop = asyncio.get_running_loop()
    gate = _gates.get(loop)
    if gate is None:
        gate = _RetrievalGate(
            max_active=int(_setting("RAGSITE_RETRIEVAL_MAX_ACTIVE", 8)),
            max_waiting=int(_setting("RAGSITE_RETRIEVAL_MAX_WAITING", 4000)),
            max_wait_s=float(_setting("RAGSITE_RETRIEVAL_MAX_WAIT_S", 120.0)),
            loop=loop,
        )
        _gates[loop] = gate
        _latest = gate
    return gate


def retrieval_overloaded() -> bool:
    """Whether retrieval's queue in this process is full: the door refuses new questions while it is."""
    try:
        return _gate().overloaded()
    except RuntimeError:  # no running loop
        return False


def retrieval_wait_beyond_budget() -> float:
    """From a request's thread or the loop: how many seconds longer than it may wait (retrieval's own
    limit, or what is left of its request's budget) a new question would wait for retrieval; 0 when it
    would have its turn in time, or when that cannot be told."""
    gate = _latest
    if gate is None or not gate.serving():
        return 0.0
    return max(0.0, gate.expected_wait_s(time.monotonic()) - wait_left(gate.max_wait_s))


def retrieval_busy() -> AnswerEvent:
    wait = math.ceil(float(_setting("RAGSITE_ANSWER_MAX_RETRY_WAIT_S", 10.0)))
    ANSWERS_SERVED.labels("retrieval_busy").inc()
    return AnswerEvent(
        kind="error",
        text=f"Too many questions are being answered right now. Please ask again in {wait} s.",
        retry_after=float(wait),
    )


async def retrieval_bounded(events: AsyncGenerator[AnswerEvent, None]) -> AsyncGenerator[AnswerEvent, None]:
    """`events` with their retrieval in the gate: its slot is held until the first event after "sources"."""
    gate = _gate()
    async with aclosing(events):
        # The wait shares the request's budget with the door's (ops.admission.wait_until).
        wait_s = wait_left(gate.max_wait_s)
        if gate.overloaded() or (wait_s <= 0 and gate.active.locked()):
            yield retrieval_busy()
            return
        gate.waiting += 1
        try:
            async with asyncio.timeout(max(wait_s, 0.0)):
                await gate.active.acquire()
        except TimeoutError:
            yield retrieval_busy()
            return
        finally:
            gate.waiting -= 1
        held = True
        gate.running += 1

        def give_back() -> None:
            nonlocal held
            if held:
                held = False
                gate.running -= 1
                gate.finished.append(time.monotonic())
                gate.active.release()

        # An answer with no extract goes from its sources straight to the model's queue: its place here is
        # given back as it starts to wait there.
        before_model.set(give_back)
        try:
            async for event in events:
                if event.kind != "sources":
                    give_back()
                yield event
        finally:
            give_back()
