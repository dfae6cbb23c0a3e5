"""Admission control in front of the ASGI app: a bounded number of requests at once, a bounded queue."""

from __future__ import annotations

import asyncio
import math
import time
from collections import deque
from collections.abc import Awaitable, Callable
from contextvars import ContextVar
from typing import Any

Scope = dict[str, Any]
Message = dict[str, Any]
Receive = Callable[[], Awaitable[Any]]
Send = Callable[[Any], Awaitable[None]]
ASGIApp = Callable[[Any, Any, Any], Awaitable[None]]

BUSY_BODY = b"The site is busy. Please try again in a few seconds.\n"

# One budget for every wait of a request (the door's, and behind it retrieval's queue and the model's queue):
# the wall-clock time (`time.time()`) past which it stops waiting for a turn. The door sets it to the
# request's arrival plus its `max_wait_s`; a later request carrying on the same work (an answer's stream)
# may bring it forward to the first request's. Each queue behind the door waits at most `wait_left(own)`,
# so the waits together never exceed the one budget: a question admitted late is refused cleanly, instead
# of waiting its full turn in every queue and running out of its asker's patience.
wait_until: ContextVar[float | None] = ContextVar("wait_until", default=None)


def wait_left(limit_s: float) -> float:
    """How long a queue behind the door may still wait: `limit_s`, or less when the budget ends sooner."""
    until = wait_until.get()
    return limit_s if until is None else min(limit_s, until - time.time())


def wait_until_at_most(until: float | None) -> None:
    """Bring this request's wait budget forward to `until` (never back)."""
    current = wait_until.get()
    if until is not None and (current is None or until < current):
        wait_until.set(until)


# Load balancers' and Prometheus' probes: a lane of their own, so a flood of questions never makes a busy
# but healthy server look dead (a probe answered 429 takes the node out of rotation and moves the flood on).
PROBE_PATHS = frozenset({"/healthz", "/metrics"})
PROBE_MAX_ACTIVE = 2
PROBE_MAX_WAITING = 16


class _Lane:
    """Run slots and a bounded count of requests waiting for one; those that `first` go ahead in the queue."""

    def __init__(self, *, max_active: int, max_waiting: int) -> None:
        self.free = max_active
        self.max_waiting = max_waiting
        self.waiting = 0
        self._queues: tuple[deque[asyncio.Future[None]], deque[asyncio.Future[None]]] = (deque(), deque())
        # Turns whose requests stopped waiting: skipped when reached, swept out once they are half the queue.
        self._abandoned = 0

    def full(self) -> bool:
        return self.free <= 0

    async def acquire(self, *, first: bool = False) -> None:
        if self.free > 0 and not (self._queues[0] or self._queues[1]):
            self.free -= 1
            return
        turn: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        queue = self._queues[0 if first else 1]
        queue.append(turn)
        try:
            await turn
        except BaseException:
            if turn.done() and not turn.cancelled():
                self.release()  # the slot came as the wait ended: pass it on
            else:
                turn.cancel()
                self._abandon()
            raise

    def _abandon(self) -> None:
        self._abandoned += 1
        if self._abandoned * 2 > len(self._queues[0]) + len(self._queues[1]):
            for queue in self._queues:
                live = [turn for turn in queue if not turn.done()]
                queue.clear()
                queue.extend(live)
            self._abandoned = 0

    def release(self) -> None:
        for queue in self._queues:
            while queue:
                turn = queue.popleft()
                if not turn.done():
                    turn.set_result(None)
                    return
                self._abandoned = max(0, self._abandoned - 1)
        self.free += 1

    def queued(self) -> int:
        """Turns in the queue, abandoned ones not yet swept out included (for tests of the bound)."""
        return len(self._queues[0]) + len(self._queues[1])


class AdmissionLimit:
    """At most `max_active` HTTP requests are handled at once; up to `max_waiting` more wait their turn.

    A request counts from its arrival until its response starts, so a streamed answer counts only while
    its view runs. Each request handled may hold one of the pool's database connections (and Django gives
    each one a thread), so handling more at once than the pool holds only makes them queue for it and fail
    after its timeout with a 500. A request that finds the queue full, or waits longer than `max_wait_s`,
    is answered 429 with Retry-After at once: before Django, a thread or the database see it (what is left of
    `max_wait_s` after the door is the budget of the queues behind it: `wait_until`). Probes
    (`PROBE_PATHS`) have a small lane of their own. `overloaded(scope)`, when given, refuses a request at
    once while a stage behind the door cannot keep up (retrieval's queue is full, say); requests that
    `first(scope)` (the second step of work already admitted, such as an answer's stream after its
    question) go ahead of the others in the queue, so that work started is finished first.
    """

    def __init__(
        self,
        app: ASGIApp,
        *,
        max_active: int,
        max_waiting: int,
        max_wait_s: float,
        retry_after_s: float,
        overloaded: Callable[[Scope], bool] | None = None,
        first: Callable[[Scope], bool] | None = None,
    ) -> None:
        self.app = app
        self.overloaded = overloaded
        self.first = first
        self.lane = _Lane(max_active=max_active, max_waiting=max_waiting)
        self.probes = _Lane(max_active=PROBE_MAX_ACTIVE, max_waiting=PROBE_MAX_WAITING)
        self.max_wait_s = max_wait_s
        self.retry_after = str(math.ceil(retry_after_s)).encode()

    @classmethod
    def from_settings(
        cls,
        app: ASGIApp,
        *,
        overloaded: Callable[[Scope], bool] | None = None,
        first: Callable[[Scope], bool] | None = None,
    ) -> AdmissionLimit:
        from django.conf import settings

        return cls(
            app,
            max_active=settings.RAGSITE_WEB_MAX_ACTIVE,
            max_waiting=settings.RAGSITE_WEB_MAX_WAITING,
            max_wait_s=settings.RAGSITE_WEB_MAX_WAIT_S,
            retry_after_s=settings.RAGSITE_WEB_RETRY_AFTER_S,
            overloaded=overloaded,
            first=first,
        )

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        lane = self.probes if scope["path"] in PROBE_PATHS else self.lane
        if (lane.full() and lane.waiting >= lane.max_waiting) or (
            lane is self.lane and self.overloaded is not None and self.overloaded(scope)
        ):
            await self._refuse(send)
            return
        if lane is self.lane:
            wait_until.set(time.time() + self.max_wait_s)
        lane.waiting += 1
        try:
            async with asyncio.timeout(self.max_wait_s):
                await lane.acquire(first=lane is self.lane and self.first is not None and self.first(scope))
        except TimeoutError:
            await self._refuse(send)
            return
        finally:
            lane.waiting -= 1
        released = False

        def release() -> None:
            nonlocal released
            if not released:
                released = True
                lane.release()

        async def send_and_release(message: Message) -> None:
            if message["type"] == "http.response.start":
                release()
            await send(message)

        try:
            await self.app(scope, receive, send_and_release)
        finally:
            release()

    async def _refuse(self, send: Send) -> None:
        await send(
            {
                "type": "http.response.start",
                "status": 429,
                "headers": [
                    (b"content-type", b"text/plain; charset=utf-8"),
                    (b"content-length", str(len(BUSY_BODY)).encode()),
                    (b"retry-after", self.retry_after),
                ],
            }
        )
        await send({"type": "http.response.body", "body": BUSY_BODY})
