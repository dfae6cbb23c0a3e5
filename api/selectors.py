"""Reads: who a request's API token speaks for and what it may read (checked here and nowhere else)."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from django.db.models import QuerySet
from django.utils import timezone

from ingest.models import Collection, Document
from ingest.selectors import document_action_permitted
from search.selectors import collection_ids_readable_by

from .models import ApiToken
from .tokens import token_matches, token_prefix


class ApiRefused(Exception):
    """An API request is refused; `message` is for a person, `code` for a program, `status` the HTTP one."""

    def __init__(self, message: str, *, status: int, code: str, retry_after: float | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.status = status
        self.code = code
        self.retry_after = retry_after


@dataclass(frozen=True)
class AuthorizedToken:
    """A token that passed every check, its owner, and the collections it may read now."""

    token: ApiToken
    user: Any
    collection_ids: tuple[int, ...]


def api_token_collection_ids(*, token: ApiToken, user: Any) -> tuple[int, ...]:
    """The token's scope intersected with what its owner may read now (all they read when unscoped).

    Checked on every request: an owner who loses a group loses its collections through their tokens too.
    """
    readable = collection_ids_readable_by(user=user)
    scope = set(token.collections.values_list("pk", flat=True))
    return tuple(sorted(pk for pk in readable if not scope or pk in scope))


def api_token_check(*, raw: str) -> tuple[ApiToken | None, AuthorizedToken | ApiRefused]:
    """The token found by `raw`'s prefix (None if there is none) and either its grant or why it is refused."""
    prefix = token_prefix(raw)
    if prefix is None:
        return None, ApiRefused(
            "The API token is malformed: expected `rs_` followed by the token shown when it was created.",
            status=401,
            code="token_malformed",
        )
    token = ApiToken.objects.select_related("user").filter(prefix=prefix).first()
    if token is None or not token_matches(token=raw, stored_hash=token.token_hash):
        return token, ApiRefused(
            "The API token is not valid: check that it was copied whole, or create a new one.",
            status=401,
            code="token_invalid",
        )
    if token.revoked_at is not None:
        return token, ApiRefused(
            f"The API token “{token.name}” was revoked on {token.revoked_at:%Y-%m-%d %H:%M} UTC.",
            status=401,
            code="token_revoked",
        )
    if token.expires_at <= timezone.now():
        return token, ApiRefused(
            f"The API token “{token.name}” expired on {token.expires_at:%Y-%m-%d %H:%M} UTC; make a new one.",
            status=401,
            code="token_expired",
        )
    user = token.user
    if not (user.is_active and user.is_staff):
        return token, ApiRefused(
            "The API token's owner may no longer use the API (their account is disabled or not staff).",
            status=403,
            code="owner_not_allowed",
        )
    return token, AuthorizedToken(
        token=token, user=user, collection_ids=api_token_collection_ids(token=token, user=user)
    )


def api_collection_ids_for_request(
    *, authorized: AuthorizedToken, requested: Sequence[int] | None
) -> tuple[int, ...]:
    """The collections a request reads: all the token's, or those asked for if each is within its scope."""
    if requested:
        outside = sorted(set(requested) - set(authorized.collection_ids))
        if outside:
            raise ApiRefused(
                f"Collection {', '.join(map(str, outside))} is outside this token's scope (the collections "
                "it was given that its owner may read now).",
                status=403,
                code="collection_out_of_scope",
            )
        return tuple(sorted(set(requested)))
    if not authorized.collection_ids:
        raise ApiRefused(
            "This token may read no collection now: its owner reads none of the collections it was given.",
            status=403,
            code="no_collections",
        )
    return authorized.collection_ids


def api_document_list(
    *, authorized: AuthorizedToken, collection_id: int | None = None, limit: int = 100
) -> list[Document]:
    """The newest documents in the token's scope (one collection's if given), if its owner may see them."""
    if not document_action_permitted(user=authorized.user, action="view"):
        raise ApiRefused(
            "The token's owner may not see documents (Django permission ingest.view_document).",
            status=403,
            code="not_permitted",
        )
    ids = authorized.collection_ids
    if collection_id is not None:
        ids = api_collection_ids_for_request(authorized=authorized, requested=[collection_id])
    documents = Document.objects.filter(collection_id__in=ids).select_related("collection")
    return list(documents.order_by("-created_at", "-id")[:limit])


def api_upload_collection(*, authorized: AuthorizedToken, collection_id: int) -> Collection:
    """The collection to upload into, if the owner may add documents and it is within the token's scope."""
    if not document_action_permitted(user=authorized.user, action="add"):
        raise ApiRefused(
            "The token's owner may not upload documents (Django permission ingest.add_document).",
            status=403,
            code="not_permitted",
        )
    (pk,) = api_collection_ids_for_request(authorized=authorized, requested=[collection_id])
    return Collection.objects.get(pk=pk)


def api_token_list_for_user(*, user: Any) -> QuerySet[ApiToken]:
    return ApiToken.objects.filter(user=user).prefetch_related("collections").order_by("-created_at")


def api_token_get_for_user(*, user: Any, token_id: int) -> ApiToken | None:
    return ApiToken.objects.filter(user=user, pk=token_id).first()


def api_collections_grantable_by(*, user: Any) -> QuerySet[Collection]:
    """A token may be scoped only to collections its owner reads: a token never widens anyone's access."""
    return Collection.objects.filter(pk__in=collection_ids_readable_by(user=user)).order_by("name")
