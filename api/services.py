"""Writes: API tokens (created, revoked), every use of one (audited), rate limits, and answers for the API."""

from __future__ import annotations

import logging
from collections.abc import AsyncGenerator, Iterable
from datetime import datetime, timedelta
from typing import Any

from django.conf import settings
from django.db import transaction
from django.utils import timezone
from redis.exceptions import RedisError

from ingest.models import Collection
from ops.ratelimit import Limit, rate_limit_hit
from ops.services import audit_record
from search.services import AnswerEvent
from search.shared_answers import answer_stream_shared, model_busy_retry_after

from .models import ApiToken
from .selectors import ApiRefused, AuthorizedToken, api_collections_grantable_by, api_token_check
from .tokens import token_new

logger = logging.getLogger(__name__)

RATE_KEY_PREFIX = "ragsite:api:rate:"


class TokenRefused(Exception):
    """A token that cannot be created as asked; `message` says why, in words a person can act on."""

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message


def _max_days() -> int:
    return int(getattr(settings, "RAGSITE_API_TOKEN_MAX_DAYS", 365))


def api_token_validate(
    *, user: Any, name: str, expires_at: datetime, collections: Iterable[Collection]
) -> None:
    """Whether `user` may create such a token; TokenRefused says why not."""
    if not (user is not None and user.is_authenticated and user.is_active and user.is_staff):
        raise TokenRefused("Only active staff members may create API tokens.")
    if not name.strip():
        raise TokenRefused("Give the token a name that says what will use it.")
    now = timezone.now()
    if expires_at <= now:
        raise TokenRefused("The expiry must be in the future.")
    if expires_at > now + timedelta(days=_max_days()):
        raise TokenRefused(f"A token may live at most {_max_days()} days; choose an earlier expiry.")
    grantable = set(api_collections_grantable_by(user=user).values_list("pk", flat=True))
    beyond = [collection.name for collection in collections if collection.pk not in grantable]
    if beyond:
        raise TokenRefused(
            f"A token may read only collections you read; you do not read {', '.join(sorted(beyond))}."
        )


def api_token_create(
    *,
    user: Any,
    name: str,
    expires_at: datetime,
    collections: Iterable[Collection] = (),
    rate_limit_per_minute: int | None = None,
) -> tuple[ApiToken, str]:
    """A new token for `user` and its secret, returned this once: only its hash is stored."""
    collections = list(collections)
    api_token_validate(user=user, name=name, expires_at=expires_at, collections=collections)
    new = token_new()
    token = ApiToken(
        user=user,
        name=name.strip()[:200],
        prefix=new.prefix,
        token_hash=new.token_hash,
        expires_at=expires_at,
        rate_limit_per_minute=rate_limit_per_minute or int(getattr(settings, "RAGSITE_API_RATE_LIMIT", 60)),
    )
    with transaction.atomic():
        token.save()
        token.collections.set(collections)
        audit_record(
            actor=user,
            action="api_token.create",
            target=token,
            details={
                "prefix": token.prefix,
                "expires_at": expires_at.isoformat(),
                "collections": sorted(collection.pk for collection in collections),
            },
        )
    return token, new.token


def api_token_revoke(*, token: ApiToken, user: Any) -> ApiToken:
    """Revoke a token at once (kept, so the audit log still names it); revoking twice changes nothing."""
    with transaction.atomic():
        locked = ApiToken.objects.select_for_update().get(pk=token.pk)
        if locked.revoked_at is None:
            locked.revoked_at = timezone.now()
            locked.save(update_fields=["revoked_at"])
            audit_record(actor=user, action="api_token.revoke", target=locked)
    return locked


def api_token_authenticate(*, raw: str, method: str, path: str, request_id: str) -> AuthorizedToken:
    """Check a presented token and record its use; a refused token that was found is recorded as such."""
    token, outcome = api_token_check(raw=raw)
    if token is not None:
        action = "api_token.refused" if isinstance(outcome, ApiRefused) else "api_token.use"
        details: dict[str, Any] = {"method": method, "path": path[:200], "request_id": request_id}
        if isinstance(outcome, ApiRefused):
            details["code"] = outcome.code
        with transaction.atomic():
            if not isinstance(outcome, ApiRefused):
                ApiToken.objects.filter(pk=token.pk).update(last_used_at=timezone.now())
            audit_record(actor=token.user, action=action, target=token, details=details)
    if isinstance(outcome, ApiRefused):
        raise outcome
    return outcome


def _redis_url() -> str:
    return str(getattr(settings, "RAGSITE_API_REDIS_URL", "") or settings.CELERY_BROKER_URL)


async def api_rate_limit_hit(*, token: ApiToken) -> None:
    """Count a request against the token's limit; refuse with 429 (and how long to wait) when it is spent."""
    limits = [Limit(name=f"token:{token.prefix}", per_window=token.rate_limit_per_minute)]
    try:
        wait = await rate_limit_hit(limits=limits, key_prefix=RATE_KEY_PREFIX, redis_url=_redis_url())
    except RedisError as exc:
        # Fail closed, as the widget does: the limits are what keeps one script from spending the model.
        logger.error("API rate limits unavailable: %s", exc)
        raise ApiRefused(
            "ragsite cannot check its limits right now; please try again shortly.",
            status=503,
            code="limits_unavailable",
            retry_after=5,
        ) from exc
    if wait is not None:
        raise ApiRefused(
            f"Too many requests with this token; try again in {wait:.0f} s "
            f"(the limit is {token.rate_limit_per_minute} a minute).",
            status=429,
            code="rate_limited",
            retry_after=wait,
        )


async def api_answer_stream(
    *, collection_ids: tuple[int, ...], question: str, request_id: str
) -> AsyncGenerator[tuple[AnswerEvent, dict[str, Any]], None]:
    """The ask page's answer (the same shared, cached, checked answer service), each event with details.

    The final event comes with where its answer came from: `origin`, `reused_at` and `retry_after`, as the
    page and the widget record them.
    """
    last_busy: AnswerEvent | None = None
    events = answer_stream_shared(
        collection_ids=collection_ids, question=question, history=(), request_id=request_id
    )
    try:
        async for event in events:
            details: dict[str, Any] = {}
            if event.kind == "busy":
                last_busy = event
            elif event.kind == "done":
                reused_at = events.reused_at
                details = {
                    "origin": event.origin,
                    "reused_at": reused_at.isoformat() if reused_at else None,
                    "retry_after": model_busy_retry_after(event, last_busy=last_busy),
                }
            yield event, details
    finally:
        # Leave the shared answer now, not when the garbage collector finds it: others may still follow it.
        await events.aclose()
