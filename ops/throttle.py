"""Login throttling: too many failures for one address and user name lock that pair out for a while.

A login POST reserves one attempt before the password is checked (`login_attempt_begin`), so a parallel
burst gets no more attempts than the limit; the reservation stands as the failure if authentication fails
and is handed back otherwise (`login_attempt_end`). The user name is counted as Django's login form
authenticates it (stripped, NFKC-normalised), so "alice ", "ａｌｉｃｅ" and "alice" share one count.
"""

from __future__ import annotations

import hashlib
import logging
from dataclasses import dataclass

import redis
from django.conf import settings
from django.contrib.auth.forms import UsernameField

from .redis import redis_client

logger = logging.getLogger(__name__)

# Locked: how long the lock has left, as a negative number. Open: 0, after counting this attempt.
_RESERVE = """
local failures = tonumber(redis.call('GET', KEYS[1]) or '0')
if failures >= tonumber(ARGV[1]) then
    local ttl = redis.call('TTL', KEYS[1])
    if ttl < 0 then
        redis.call('EXPIRE', KEYS[1], ARGV[2])
        ttl = tonumber(ARGV[2])
    end
    return -math.max(ttl, 1)
end
if redis.call('INCR', KEYS[1]) == 1 then
    redis.call('EXPIRE', KEYS[1], ARGV[2])
end
return 0
"""

_RELEASE = """
if redis.call('EXISTS', KEYS[1]) == 1 and redis.call('DECR', KEYS[1]) <= 0 then
    redis.call('DEL', KEYS[1])
end
return 0
"""

_RECORD = """
if redis.call('INCR', KEYS[1]) == 1 then
    redis.call('EXPIRE', KEYS[1], ARGV[1])
end
return 0
"""


@dataclass
class LoginAttempt:
    """One login POST's place in its address and user name's count."""

    key: str
    reserved: bool
    failed: bool = False


def login_username_normalize(username: str) -> str:
    """The user name as the login form authenticates it (Django's UsernameField), lower-cased."""
    return str(UsernameField().to_python(username) or "").lower()


def _key(*, ip: str, username: str) -> str:
    digest = hashlib.sha256(f"{ip}\0{login_username_normalize(username)}".encode()).hexdigest()[:32]
    return f"ragsite:login-failures:{digest}"


def login_attempt_begin(*, ip: str, username: str) -> tuple[LoginAttempt, int | None]:
    """Reserve an attempt for this address and user name; the seconds until it may try, when locked."""
    attempt = LoginAttempt(key=_key(ip=ip, username=username), reserved=False)
    try:
        result = int(
            redis_client().eval(
                _RESERVE,
                1,
                attempt.key,
                settings.RAGSITE_LOGIN_MAX_FAILURES,
                settings.RAGSITE_LOGIN_LOCKOUT_SECONDS,
            )
        )
    except redis.RedisError:
        # Throttling is defence in depth: an unreachable broker must not block logins.
        logger.warning("login throttling is off: the broker does not answer", exc_info=True)
        return attempt, None
    if result < 0:
        return attempt, -result
    attempt.reserved = True
    return attempt, None


def login_attempt_end(*, attempt: LoginAttempt) -> None:
    """Hand back the reservation of an attempt that did not fail authentication."""
    if not attempt.reserved or attempt.failed:
        return
    try:
        redis_client().eval(_RELEASE, 1, attempt.key)
    except redis.RedisError:
        logger.warning("login throttling is off: the broker does not answer", exc_info=True)


def login_failure_record(*, ip: str, username: str, attempt: LoginAttempt | None = None) -> None:
    """Count a failed authentication; one that reserved its attempt is counted already."""
    if attempt is not None and attempt.reserved:
        attempt.failed = True
        return
    try:
        redis_client().eval(
            _RECORD, 1, _key(ip=ip, username=username), settings.RAGSITE_LOGIN_LOCKOUT_SECONDS
        )
    except redis.RedisError:
        logger.warning("login throttling is off: the broker does not answer", exc_info=True)
