"""Fixed-window rate limits in Redis, checked and counted for several windows in one atomic script.

Shared by everything that limits programs rather than logins: the widget's keys and visitors, API tokens.
"""

from __future__ import annotations

import asyncio
import math
import weakref
from collections.abc import Sequence
from dataclasses import dataclass

import redis.asyncio as aioredis

WINDOW_S = 60

# Counts a hit in every window only if none is full; otherwise returns the longest wait in ms.
# A window starts at its first hit and its counter expires with it, so no key outlives a minute.
_HIT_SCRIPT = """
local wait = 0
for i, key in ipairs(KEYS) do
  local count = tonumber(redis.call('GET', key) or '0')
  if count >= tonumber(ARGV[i + 1]) then
    local ttl = redis.call('PTTL', key)
    if ttl < 0 then ttl = tonumber(ARGV[1]) end
    if ttl > wait then wait = ttl end
  end
end
if wait > 0 then return wait end
for _, key in ipairs(KEYS) do
  if redis.call('INCR', key) == 1 then redis.call('PEXPIRE', key, ARGV[1]) end
end
return 0
"""

# One client per event loop and URL: a connection belongs to the loop that opened it.
_clients: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, dict[str, aioredis.Redis]] = (
    weakref.WeakKeyDictionary()
)


@dataclass(frozen=True)
class Limit:
    name: str
    per_window: int


def _client(redis_url: str) -> aioredis.Redis:
    loop = asyncio.get_running_loop()
    clients = _clients.setdefault(loop, {})
    client = clients.get(redis_url)
    if client is None:
        client = clients[redis_url] = aioredis.Redis.from_url(redis_url)
    return client


async def rate_limit_hit(*, limits: Sequence[Limit], key_prefix: str, redis_url: str) -> float | None:
    """Count one hit against every limit; None when allowed, else the seconds until it would be.

    Raises redis' RedisError when Redis does not answer: the caller decides whether to fail open or closed.
    """
    keys = [key_prefix + limit.name for limit in limits]
    args = [WINDOW_S * 1000, *(limit.per_window for limit in limits)]
    wait_ms = int(await _client(redis_url).eval(_HIT_SCRIPT, len(keys), *keys, *args))
    if wait_ms <= 0:
        return None
    return max(1, math.ceil(wait_ms / 1000))
