"""Database work from async code that gives its pooled connection back as soon as it is done."""

from __future__ import annotations

import functools
from collections.abc import Awaitable, Callable
from typing import ParamSpec, TypeVar

from asgiref.sync import sync_to_async
from django.db import connections

P = ParamSpec("P")
R = TypeVar("R")


def db_sync_to_async(func: Callable[P, R]) -> Callable[P, Awaitable[R]]:
    """`sync_to_async(func)` that returns the thread's database connection to the pool after each call.

    Django hands a request's connection back only when the request ends. A streamed answer lasts as long as
    the model takes, so holding a pooled connection for all of it would cap concurrent streams at the pool
    size (`DATABASE_POOL_MAX_SIZE`) and fail the others after the pool's timeout.
    """

    @functools.wraps(func)
    def run(*args: P.args, **kwargs: P.kwargs) -> R:
        try:
            return func(*args, **kwargs)
        finally:
            release_connections()

    return sync_to_async(run)


def release_connections() -> None:
    """What Django does when a request ends, for this thread's connections; never inside a transaction."""
    for connection in connections.all(initialized_only=True):
        if not connection.in_atomic_block:
            connection.close_if_unusable_or_obsolete()
