"""Reads for the sources page; access is checked here and nowhere else.

Managing sources takes a staff member holding Django's model permission for the action (`sources.view_source`
to see them, `add_` to add one, `change_` to sync one now), and only for sources whose collection they read
(superusers read every collection).
"""

from __future__ import annotations

from datetime import timedelta
from typing import Any, Literal

from django.core.exceptions import PermissionDenied
from django.db.models import Count, OuterRef, Q, QuerySet, Subquery
from django.utils import timezone

from ingest.models import Document
from ingest.selectors import collections_readable_by

from .models import Source, SyncRun

Action = Literal["view", "add", "change", "delete"]
# A queued sync that has not started within this long (its worker is busy or down) is no longer polled for.
QUEUED_POLL_S = 300


def source_action_permitted(*, user: Any, action: Action) -> bool:
    """Whether `user` may `action` sources at all (of the collections they read)."""
    return bool(
        user.is_authenticated
        and user.is_active
        and getattr(user, "is_staff", False)
        and user.has_perm(f"sources.{action}_source")
    )


def _sources_for_user(user: Any) -> QuerySet[Source]:
    if not source_action_permitted(user=user, action="view"):
        return Source.objects.none()
    readable = collections_readable_by(user=user).values("id")
    latest = SyncRun.objects.filter(source=OuterRef("pk")).order_by("-started_at", "-id").values("id")[:1]
    failed_documents = Count("items", filter=Q(items__document__status=Document.Status.FAILED), distinct=True)
    return (
        Source.objects.filter(collection_id__in=readable)
        .select_related("collection")
        .annotate(
            latest_run_id=Subquery(latest),
            item_count=Count("items", distinct=True),
            failed_document_count=failed_documents,
        )
    )


def _attach_latest_runs(sources: list[Source]) -> list[Source]:
    """Each source's `latest_run`, and `sync_active`: its sync runs, or was queued and has not started yet."""
    runs = SyncRun.objects.in_bulk([s.latest_run_id for s in sources if s.latest_run_id])  # type: ignore[attr-defined]
    waiting_since = timezone.now() - timedelta(seconds=QUEUED_POLL_S)
    for source in sources:
        run = runs.get(source.latest_run_id)  # type: ignore[attr-defined]
        queued = source.last_queued_at is not None and source.last_queued_at > waiting_since
        source.latest_run = run  # type: ignore[attr-defined]
        source.sync_queued = queued and (run is None or run.started_at < source.last_queued_at)  # type: ignore[attr-defined,operator]
        source.sync_active = source.sync_queued or (  # type: ignore[attr-defined]
            run is not None and run.status == SyncRun.Status.RUNNING
        )
    return sources


def source_list_for_user(*, user: Any) -> list[Source]:
    """The sources the user may see, each with `latest_run` (or None), item and failed-document counts."""
    return _attach_latest_runs(list(_sources_for_user(user).order_by("name")))


def source_get_for_user(*, user: Any, source_id: int, action: Action = "view") -> Source | None:
    """The source if it exists and the user may see it, else None; PermissionDenied if not `action` it."""
    found = _attach_latest_runs(list(_sources_for_user(user).filter(id=source_id)))
    if not found:
        return None
    if not source_action_permitted(user=user, action=action):
        raise PermissionDenied(f"You may not {action} sources.")
    return found[0]


def source_runs_active(*, sources: list[Source]) -> bool:
    """Whether any of `sources` is queued or being synced now (the page then polls)."""
    return any(source.sync_active for source in sources)  # type: ignore[attr-defined]
