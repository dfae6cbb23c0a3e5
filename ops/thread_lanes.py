"""A fixed set of threads for the requests' synchronous work, instead of a new thread for every request."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from concurrent.futures import ThreadPoolExecutor
from typing import Any

from asgiref.sync import SyncToAsync, ThreadSensitiveContext

Scope = dict[str, Any]
ASGIApp = Callable[[Any, Any, Any], Awaitable[None]]


class _Lane:
    """One long-lived thread and the thread-sensitive context that sends a request's sync work to it."""

    def __init__(self, name: str) -> None:
        self.name = name
        self.open = 0
        self.executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix=name)
        # Never entered, so never exited: asgiref sends every thread-sensitive call made under it (and under
        # a task a request started that outlives it, such as a shared answer's) to `executor`.
        self.context = ThreadSensitiveContext()
        SyncToAsync.context_to_thread_executor[self.context] = self.executor


class ThreadLanes:
    """Run each HTTP request's synchronous work on one of `threads` threads, the least busy when it arrives.

    Django's ASGI handler gives each request a thread of its own (asgiref's `ThreadSensitiveContext`), which
    lives as long as the request and is joined by yet another thread when it ends. An answer's stream waits
    minutes for retrieval and the model while its thread sits idle, so 10,000 people waiting were 3,475
    threads and a quarter of the web process's memory (docs/web_load.md). Here a request's sync steps still
    all run on one thread, in order (its sync middleware and view share that thread's database connection,
    which is what Django's thread sensitivity is for), but the thread is one of a fixed set: Django's own
    context finds this one already set and adds none. Requests matching `own_lane` (the load balancer's
    probes) get a thread of their own, so a busy lane never makes a healthy server look dead.
    """

    def __init__(
        self, app: ASGIApp, *, threads: int, own_lane: Callable[[Scope], bool] | None = None
    ) -> None:
        if threads < 1:
            raise ValueError("ThreadLanes needs at least one thread")
        self.app = app
        self.lanes = [_Lane(f"web-lane-{number}") for number in range(threads)]
        self.own_lane = own_lane
        self.reserved = _Lane("web-lane-probes") if own_lane is not None else None

    @classmethod
    def from_settings(cls, app: ASGIApp, *, own_lane: Callable[[Scope], bool] | None = None) -> ThreadLanes:
        from django.conf import settings

        return cls(app, threads=settings.RAGSITE_WEB_THREADS, own_lane=own_lane)

    def _lane_for(self, scope: Scope) -> _Lane:
        if self.reserved is not None and self.own_lane is not None and self.own_lane(scope):
            return self.reserved
        return min(self.lanes, key=lambda lane: lane.open)

    async def __call__(self, scope: Scope, receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        lane = self._lane_for(scope)
        lane.open += 1
        token = SyncToAsync.thread_sensitive_context.set(lane.context)
        try:
            await self.app(scope, receive, send)
        finally:
            SyncToAsync.thread_sensitive_context.reset(token)
            lane.open -= 1
