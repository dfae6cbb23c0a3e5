"""Login throttling: too many failures for one address and user name lock that pair out for a while."""

import hashlib
import logging

import redis
from django.conf import settings

from .redis import redis_client

logger = logging.getLogger(__name__)


def _key(*, ip: str, username: str) -> str:
    digest = hashlib.sha256(f"{ip}\0{username.lower()}".encode()).hexdigest()[:32]
    return f"ragsite:login-failures:{digest}"


def login_failure_record(*, ip: str, username: str) -> None:
    key = _key(ip=ip, username=username)
    try:
        # The window starts at the first failure (EXPIRE NX would need Redis 7).
        if redis_client().incr(key) == 1:
            redis_client().expire(key, settings.RAGSITE_LOGIN_LOCKOUT_SECONDS)
    except redis.RedisError:
        # Throttling is defence in depth: an unreachable broker must not block logins.
        logger.warning("login throttling is off: the broker does not answer", exc_info=True)


def login_retry_after(*, ip: str, username: str) -> int | None:
    """Seconds until this address may try this user again, or None when it may now."""
    key = _key(ip=ip, username=username)
    try:
        failures = int(redis_client().get(key) or 0)
        if failures < settings.RAGSITE_LOGIN_MAX_FAILURES:
            return None
        return max(int(redis_client().ttl(key)), 1)
    except redis.RedisError:
        logger.warning("login throttling is off: the broker does not answer", exc_info=True)
        return None
