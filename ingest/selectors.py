"""Reads for the ingestion pages; access is checked here and nowhere else.

Managing documents takes a staff member holding Django's model permission for the action
(`ingest.view_document` to see them, `add_` to upload, `change_` to retry or re-index, `delete_`), and only
ever in the collections they read (superusers read every collection).
"""

from __future__ import annotations

from typing import Any, Literal

from django.core.exceptions import PermissionDenied
from django.db.models import Count, F, Q, QuerySet

from .models import Collection, Document

Action = Literal["view", "add", "change", "delete"]


def collections_readable_by(*, user: Any) -> QuerySet[Collection]:
    """Superusers read every collection; others those sharing a group with them; anonymous users none.

    The same rule as `search.selectors.collection_ids_readable_by` (asking), here for the layer below it.
    """
    if user is None or not user.is_authenticated or not user.is_active:
        return Collection.objects.none()
    if user.is_superuser:
        return Collection.objects.all()
    return Collection.objects.filter(groups__user=user).distinct()


def document_action_permitted(*, user: Any, action: Action) -> bool:
    """Whether `user` may `action` documents at all (in the collections they read)."""
    return bool(
        user.is_authenticated
        and user.is_active
        and getattr(user, "is_staff", False)
        and user.has_perm(f"ingest.{action}_document")
    )


def collection_list_for_user(*, user: Any, action: Action = "view") -> QuerySet[Collection]:
    """The collections whose documents `user` may `action`, with their document counts."""
    if not document_action_permitted(user=user, action=action):
        return Collection.objects.none()
    readable = collections_readable_by(user=user).values("id")
    return (
        Collection.objects.filter(id__in=readable)
        .annotate(document_count=Count("documents"))
        .order_by("name")
    )


def _documents_for_user(user: Any) -> QuerySet[Document]:
    if not document_action_permitted(user=user, action="view"):
        return Document.objects.none()
    return Document.objects.filter(collection_id__in=collections_readable_by(user=user).values("id"))


def document_list_for_user(
    *, user: Any, collection_id: int | None = None, limit: int = 200
) -> QuerySet[Document]:
    """The most recent documents the user may see, with their chunk counts, newest first."""
    documents = _documents_for_user(user).select_related("collection", "uploaded_by")
    if collection_id is not None:
        documents = documents.filter(collection_id=collection_id)
    live_chunks = Count("chunks", filter=Q(chunks__generation=F("generation")))
    return documents.annotate(chunk_count=live_chunks).order_by("-created_at")[:limit]


def document_get_for_user(*, user: Any, document_id: int, action: Action = "view") -> Document | None:
    """The document if it exists and the user may see it, else None; PermissionDenied if not `action` it."""
    document = (
        _documents_for_user(user)
        .select_related("collection", "uploaded_by")
        .annotate(chunk_count=Count("chunks", filter=Q(chunks__generation=F("generation"))))
        .filter(id=document_id)
        .first()
    )
    if document is not None and not document_action_permitted(user=user, action=action):
        raise PermissionDenied(f"You may not {action} documents.")
    return document


def document_failures_for_user(*, user: Any, limit: int = 10) -> QuerySet[Document]:
    """The last failed documents the user may see, most recent first (the operator's status page)."""
    failed = _documents_for_user(user).filter(status=Document.Status.FAILED).select_related("collection")
    return failed.order_by("-updated_at")[:limit]


def documents_in_progress(*, document_ids: list[int]) -> dict[int, tuple[str, int]]:
    """Status and progress of each of `document_ids` (for the command line's progress bar)."""
    rows = Document.objects.filter(id__in=document_ids).values_list("id", "status", "progress")
    return {document_id: (status, progress) for document_id, status, progress in rows}


def collection_ids_named(names: list[str]) -> list[int]:
    """The ids of the collections named `names`, in order; LookupError naming the first one missing."""
    ids = []
    for name in names:
        collection = Collection.objects.filter(name=name).first()
        if collection is None:
            raise LookupError(f"No collection is named {name!r}.")
        ids.append(collection.id)
    return ids
