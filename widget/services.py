"""Writes: keys and their secrets, rate-limit hits, and the log of every exchange through a widget."""

from __future__ import annotations

import logging
import secrets
from collections.abc import AsyncGenerator, Iterable, Sequence
from typing import Any

from django.db import transaction
from django.utils import timezone
from redis.exceptions import RedisError

from ingest.models import Collection
from ops.services import audit_record
from search.services import AnswerEvent, SourceRef
from search.shared_answers import answer_stream_shared, model_busy_retry_after

from .models import WidgetExchange, WidgetKey
from .ratelimit import Limit, rate_limit_hit
from .selectors import AuthorizedWidget, WidgetRefused, widget_key_secret
from .tokens import new_secret_salt

logger = logging.getLogger(__name__)


def _new_public_id() -> str:
    return f"wk_{secrets.token_urlsafe(12)}"


def widget_key_save(*, key: WidgetKey, user: Any) -> str | None:
    """Save a key; a new one gets its public id and secret, which is returned (the only time it is)."""
    created = key.pk is None
    if created:
        key.public_id = _new_public_id()
        key.secret_salt = new_secret_salt()
        key.created_by = user if user is not None and user.is_authenticated else None
    with transaction.atomic():
        key.save()
        audit_record(actor=user, action="widget_key.create" if created else "widget_key.change", target=key)
    return widget_key_secret(key=key) if created else None


def widget_key_create(
    *,
    name: str,
    created_by: Any,
    collections: Iterable[Collection],
    allowed_origins: Sequence[str],
    **options: Any,
) -> tuple[WidgetKey, str]:
    """A new key and its signing secret (shown once: it is derived, never stored)."""
    key = WidgetKey(name=name, allowed_origins=list(allowed_origins), **options)
    with transaction.atomic():
        secret = widget_key_save(key=key, user=created_by)
        key.collections.set(list(collections))
    assert secret is not None
    return key, secret


def widget_key_rotate_secret(*, key: WidgetKey, user: Any) -> str:
    """Replace the key's secret: tokens signed with the old one stop working at once."""
    key.secret_salt = new_secret_salt()
    key.secret_rotated_at = timezone.now()
    with transaction.atomic():
        key.save(update_fields=["secret_salt", "secret_rotated_at"])
        audit_record(actor=user, action="widget_key.rotate_secret", target=key)
    return widget_key_secret(key=key)


def widget_key_delete(*, key: WidgetKey, user: Any) -> None:
    """Delete a key (its widgets stop at once), keeping a record of who did it."""
    with transaction.atomic():
        audit_record(actor=user, action="widget_key.delete", target=key, details={"public_id": key.public_id})
        key.delete()


async def widget_rate_limit_hit(*, widget: AuthorizedWidget) -> None:
    """Count a question against the key's and the visitor's limits; refuse with 429 when one is spent."""
    key = widget.key
    limits = [
        Limit(name=f"key:{key.public_id}", per_window=key.rate_limit_per_minute),
        Limit(name=f"visitor:{key.public_id}:{widget.visitor}", per_window=key.visitor_rate_limit_per_minute),
    ]
    try:
        wait = await rate_limit_hit(limits=limits)
    except RedisError as exc:
        # Fail closed: the limits are what keeps a public key from spending the model for anyone.
        logger.error("widget rate limits unavailable: %s", exc)
        raise WidgetRefused(
            "ragsite cannot check its limits right now; please try again shortly.",
            status=503,
            code="limits_unavailable",
            retry_after=5,
        ) from exc
    if wait is not None:
        raise WidgetRefused(
            f"Too many questions for now; try again in {wait:.0f} s.",
            status=429,
            code="rate_limited",
            retry_after=wait,
        )


def _source_payload(source: SourceRef) -> dict[str, Any]:
    """What a widget may show of a source: the passage itself, since its reader may have no ragsite login."""
    return {
        "number": source.number,
        "title": source.document_title,
        "heading": source.heading_path,
        "page": source.page,
        "excerpt": source.excerpt,
        "text": source.text,
        "cited": source.cited,
        "highlight": [source.highlight_start, source.highlight_end]
        if source.highlight_start is not None
        else None,
    }


async def widget_answer_stream(
    *,
    widget: AuthorizedWidget,
    question: str,
    history: Sequence[tuple[str, str]],
    request_id: str,
) -> AsyncGenerator[tuple[AnswerEvent, list[dict[str, Any]], dict[str, Any]], None]:
    """Answer from the key's collections only, logging the exchange; yields each event with its sources.

    The final event comes with where its answer came from: `origin`, `reused_at` (a finished answer to the
    same question was reused) and `retry_after` (the model had no room: the full answer may be asked for
    again after that many seconds; the extractive answer stays meanwhile).
    """
    exchange = await WidgetExchange.objects.acreate(
        key=widget.key,
        visitor=widget.visitor,
        origin=widget.origin,
        question=question,
        request_id=request_id,
    )
    await WidgetKey.objects.filter(pk=widget.key.pk).aupdate(last_used_at=timezone.now())
    answer, previous_kind, finished = "", "", False
    last_busy: AnswerEvent | None = None
    sources: list[dict[str, Any]] = []

    async def finish(status: str, error: str = "") -> None:
        await WidgetExchange.objects.filter(pk=exchange.pk).aupdate(
            status=status, answer=answer, sources=sources, error=error, finished_at=timezone.now()
        )

    answer_events = answer_stream_shared(
        collection_ids=widget.collection_ids, question=question, history=history, request_id=request_id
    )
    try:
        async for event in answer_events:
            payload: list[dict[str, Any]] = []
            details: dict[str, Any] = {}
            if event.kind == "sources":
                sources = payload = [_source_payload(source) for source in event.sources]
            elif event.kind == "extract":
                payload = [_source_payload(source) for source in event.sources]
            elif event.kind == "token":
                answer += event.text
            elif event.kind == "busy":
                last_busy = event
            elif event.kind == "error":
                # An error right after a busy wait is the model service still busy after the retries.
                busy = previous_kind == "busy"
                await finish(WidgetExchange.Status.BUSY if busy else WidgetExchange.Status.FAILED, event.text)
                finished = True
            elif event.kind == "done":
                # The final answer is the checked one, and its sources those it cites first (none for a
                # refusal); what the model streamed before its check is not kept.
                answer = event.text
                sources = payload = [_source_payload(source) for source in event.sources]
                reused_at = answer_events.reused_at
                details = {
                    "origin": event.origin,
                    "reused_at": reused_at.isoformat() if reused_at else None,
                    "retry_after": model_busy_retry_after(event, last_busy=last_busy),
                }
                await finish(WidgetExchange.Status.ANSWERED)
                finished = True
            previous_kind = event.kind
            # The log is complete before the visitor sees the end of the answer.
            yield event, payload, details
    finally:
        await answer_events.aclose()
        if not finished:
            await finish(WidgetExchange.Status.CANCELLED)


def widget_exchange_set_feedback(
    *, exchange: WidgetExchange, feedback: str, note: str | None = None, user: Any
) -> WidgetExchange:
    """An admin's verdict on what the widget answered."""
    exchange.feedback = WidgetExchange.Feedback(feedback)
    if note is not None:
        exchange.feedback_note = note
    exchange.feedback_by = user if user is not None and user.is_authenticated else None
    exchange.save(update_fields=["feedback", "feedback_note", "feedback_by"])
    return exchange
