"""The Redis that shared answers and cached question embeddings live in (default: the broker's)."""

from __future__ import annotations

import asyncio
import threading
import weakref
from typing import Any

import redis
import redis.asyncio as aioredis
from django.conf import settings

KEY_PREFIX = "ragsite:answers:"

# One client per event loop: a connection belongs to the loop that opened it.
_clients: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, aioredis.Redis] = weakref.WeakKeyDictionary()
# And one blocking client for the request threads (a view looking up a finished answer), shared by them.
_sync_client: redis.Redis | None = None
_sync_lock = threading.Lock()


def _redis_url() -> str:
    return str(getattr(settings, "RAGSITE_ANSWER_REDIS_URL", "") or settings.CELERY_BROKER_URL)


def _pool_options() -> dict[str, Any]:
    """One bound for both clients: commands wait their turn for a connection (at most 10 s)."""
    return {
        "max_connections": int(getattr(settings, "RAGSITE_ANSWER_REDIS_CONNECTIONS", 32)),
        "timeout": 10,
        "socket_connect_timeout": 2,
        "socket_timeout": 5,
    }


def answer_redis() -> aioredis.Redis:
    """The client of this event loop: at most `RAGSITE_ANSWER_REDIS_CONNECTIONS` connections, for which
    commands wait their turn (at most 10 s), rather than a connection for every waiting asker."""
    loop = asyncio.get_running_loop()
    client = _clients.get(loop)
    if client is None:
        pool = aioredis.BlockingConnectionPool.from_url(_redis_url(), **_pool_options())
        client = aioredis.Redis(connection_pool=pool)
        _clients[loop] = client
    return client


def answer_redis_sync() -> redis.Redis:
    """The blocking client of this process, for code running in a request's thread; bounded the same way."""
    global _sync_client
    with _sync_lock:
        if _sync_client is None:
            pool = redis.BlockingConnectionPool.from_url(_redis_url(), **_pool_options())
            _sync_client = redis.Redis(connection_pool=pool)
        return _sync_client
