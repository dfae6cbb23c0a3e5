"""Reads for the ingestion pages; access is checked here and nowhere else."""

from __future__ import annotations

from django.contrib.auth.base_user import AbstractBaseUser
from django.contrib.auth.models import AnonymousUser
from django.db.models import Count, F, Q, QuerySet

from .models import Collection, Document


def _can_manage(user: AbstractBaseUser | AnonymousUser) -> bool:
    """Documents are managed by staff (the upload page and the admin); readers only see them in answers."""
    return bool(user.is_authenticated and user.is_active and getattr(user, "is_staff", False))


def collection_list_for_user(*, user: AbstractBaseUser | AnonymousUser) -> QuerySet[Collection]:
    if not _can_manage(user):
        return Collection.objects.none()
    return Collection.objects.annotate(document_count=Count("documents")).order_by("name")


def document_list_for_user(
    *, user: AbstractBaseUser | AnonymousUser, collection_id: int | None = None, limit: int = 200
) -> QuerySet[Document]:
    """The most recent documents the user may manage, with their chunk counts, newest first."""
    if not _can_manage(user):
        return Document.objects.none()
    documents = Document.objects.select_related("collection", "uploaded_by")
    if collection_id is not None:
        documents = documents.filter(collection_id=collection_id)
    live_chunks = Count("chunks", filter=Q(chunks__generation=F("generation")))
    return documents.annotate(chunk_count=live_chunks).order_by("-created_at")[:limit]


def document_get_for_user(*, user: AbstractBaseUser | AnonymousUser, document_id: int) -> Document | None:
    """The document if it exists and the user may manage it, else None."""
    if not _can_manage(user):
        return None
    return (
        Document.objects.select_related("collection", "uploaded_by")
        .annotate(chunk_count=Count("chunks", filter=Q(chunks__generation=F("generation"))))
        .filter(id=document_id)
        .first()
    )


def documents_in_progress(*, document_ids: list[int]) -> dict[int, tuple[str, int]]:
    """Status and progress of each of `document_ids` (for the command line's progress bar)."""
    rows = Document.objects.filter(id__in=document_ids).values_list("id", "status", "progress")
    return {document_id: (status, progress) for document_id, status, progress in rows}
