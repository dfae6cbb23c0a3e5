"""Reads: whether a request may use a widget key (checked here and nowhere else), snippets, grantable data."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from asgiref.sync import sync_to_async
from django.db.models import QuerySet

from ingest.models import Chunk, Collection

from .models import WidgetKey
from .tokens import TokenInvalid, derive_secret, token_verify


class WidgetRefused(Exception):
    """A widget request is refused; `message` is what the widget shows, `code` what a program matches."""

    def __init__(self, message: str, *, status: int, code: str, retry_after: float | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.status = status
        self.code = code
        self.retry_after = retry_after


@dataclass(frozen=True)
class AuthorizedWidget:
    """A request that passed every check: what it may read, and who is asking."""

    key: WidgetKey
    collection_ids: tuple[int, ...]
    origin: str
    visitor: str
    visitor_is_verified: bool


def widget_key_secret(*, key: WidgetKey) -> str:
    return derive_secret(public_id=key.public_id, secret_salt=key.secret_salt)


async def _key_for_origin(*, public_id: str, origin: str) -> WidgetKey:
    key = await WidgetKey.objects.filter(public_id=public_id).afirst()
    if key is None:
        raise WidgetRefused(
            f"There is no widget key “{public_id[:40]}”: check the snippet.", status=404, code="unknown_key"
        )
    if not key.is_enabled:
        raise WidgetRefused(
            "This widget key is disabled by the ragsite admin.", status=403, code="key_disabled"
        )
    if not origin:
        raise WidgetRefused("The request has no Origin header.", status=403, code="origin_missing")
    if origin not in key.allowed_origins:
        raise WidgetRefused(
            f"This widget is not allowed on {origin[:200]}. Ask the ragsite admin to add this site's origin "
            "to the widget key.",
            status=403,
            code="origin_not_allowed",
        )
    return key


async def widget_key_check_origin(*, public_id: str, origin: str) -> WidgetKey:
    """The enabled key, if `origin` may use it (preflights and the widget's configuration); else refused."""
    return await _key_for_origin(public_id=public_id, origin=origin)


async def widget_request_authorize(
    *, public_id: str, origin: str, token: str, client_ip: str
) -> AuthorizedWidget:
    """Every check on a question except the rate limits: key, enabled, origin, visitor token, collections."""
    key = await _key_for_origin(public_id=public_id, origin=origin)
    if token:
        try:
            verified = token_verify(token=token, secret=widget_key_secret(key=key), public_id=key.public_id)
        except TokenInvalid as exc:
            raise WidgetRefused(exc.message, status=401, code=exc.code) from exc
        visitor, visitor_is_verified = verified.visitor_id, True
    elif key.requires_visitor_token:
        raise WidgetRefused(
            "This widget needs a visitor token from the host site, and none was sent.",
            status=401,
            code="token_required",
        )
    else:
        visitor, visitor_is_verified = f"ip:{client_ip}", False
    collection_ids = await sync_to_async(widget_key_collection_ids)(key=key)
    if not collection_ids:
        raise WidgetRefused(
            "This widget key may read no collection: the ragsite admin has to choose some that the key's "
            "creator may read.",
            status=403,
            code="no_collections",
        )
    return AuthorizedWidget(
        key=key,
        collection_ids=collection_ids,
        origin=origin,
        visitor=visitor,
        visitor_is_verified=visitor_is_verified,
    )


def widget_key_collection_ids(*, key: WidgetKey) -> tuple[int, ...]:
    """The key's collections that its creator may read now: a key never reads more than its maker.

    Checked on every use: a creator who loses access to a collection, or leaves, takes the key's with them.
    """
    from search.selectors import collection_ids_readable_by

    readable = collection_ids_readable_by(user=key.created_by)
    return tuple(sorted(key.collections.filter(pk__in=readable).values_list("pk", flat=True)))


def widget_collections_grantable_by(*, user: Any) -> QuerySet[Collection]:
    """A key may read only collections its creator may read, so a widget never widens anyone's access."""
    from search.selectors import collection_ids_readable_by

    return Collection.objects.filter(pk__in=collection_ids_readable_by(user=user))


def widget_exchange_sources_for(*, user: Any, sources: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """The exchange's sources that `user` may read now; superusers read them all.

    A widget source carries the passage, not its ids: it is shown when a collection the viewer may read holds
    a passage with that very text (so a source of a since changed or deleted document is hidden).
    """
    from search.selectors import collection_ids_readable_by

    if user is not None and user.is_active and user.is_superuser:
        return list(sources)
    texts = {source.get("text") for source in sources if isinstance(source.get("text"), str)}
    readable = set(
        Chunk.objects.filter(
            text__in=texts, collection_id__in=collection_ids_readable_by(user=user)
        ).values_list("text", flat=True)
    )
    return [source for source in sources if source.get("text") in readable]


def widget_snippet(*, key: WidgetKey, base_url: str) -> str:
    """The exact tag an admin pastes into the host page."""
    base = base_url.rstrip("/")
    token_attribute = (
        ' data-token-url="/your-backend/ragsite-widget-token"' if key.requires_visitor_token else ""
    )
    return (
        f'<script src="{base}/widget/v1/widget.js" data-key="{key.public_id}"{token_attribute} '
        "async></script>"
    )
