from typing import Any

from django.contrib.auth.models import AbstractBaseUser, AnonymousUser
from django.db import models, transaction
from django.utils import timezone

from .models import AuditEvent, Heartbeat


def heartbeat_create() -> Heartbeat:
    """Record a heartbeat and send it to a worker once the row is committed."""
    from .tasks import heartbeat_process_task

    heartbeat = Heartbeat.objects.create()
    transaction.on_commit(lambda: heartbeat_process_task.delay(heartbeat_id=heartbeat.pk))
    return heartbeat


def heartbeat_process(*, heartbeat_id: int, worker: str) -> None:
    Heartbeat.objects.filter(pk=heartbeat_id, processed_at__isnull=True).update(
        processed_at=timezone.now(), worker=worker
    )


def audit_record(
    *,
    actor: AbstractBaseUser | AnonymousUser | None,
    action: str,
    target: models.Model,
    details: dict[str, Any] | None = None,
) -> AuditEvent:
    """Append to the audit log (uploads, deletions, key changes)."""
    known = actor is not None and actor.is_authenticated
    return AuditEvent.objects.create(
        actor_id=actor.pk if known and actor is not None else None,
        action=action,
        target_type=target._meta.label_lower,
        target_id=str(target.pk or ""),
        target_repr=str(target)[:300],
        details=details or {},
    )
