"""Deadlines and client disconnects: the two ways a request's work ends early."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable
from typing import TypeVar

from starlette.requests import Request

from inference.schemas import ApiError

T = TypeVar("T")


class ClientDisconnected(Exception):
    """The client went away before its answer was ready."""


def deadline_passed() -> ApiError:
    return ApiError(
        504,
        "The request's deadline passed before it was answered.",
        error_type="timeout_error",
        code="timeout",
    )


async def wait_for_disconnect(request: Request) -> None:
    """Return once the client has closed the connection (the body must already be read)."""
    while True:
        message = await request.receive()
        if message["type"] == "http.disconnect":
            return


async def run_for_client(request: Request, work: Awaitable[T], *, deadline: float) -> T:
    """Await `work` until it ends, the deadline passes (504) or the client leaves; else cancel it."""
    task = asyncio.ensure_future(work)
    watcher = asyncio.ensure_future(wait_for_disconnect(request))
    try:
        async with asyncio.timeout_at(deadline):
            await asyncio.wait({task, watcher}, return_when=asyncio.FIRST_COMPLETED)
    except TimeoutError:
        raise deadline_passed() from None
    finally:
        watcher.cancel()
        if not task.done():
            task.cancel()
        # Collect the outcome even when it is thrown away, or asyncio logs it as never retrieved.
        await asyncio.gather(task, return_exceptions=True)
    if task.cancelled():
        raise ClientDisconnected
    return task.result()
