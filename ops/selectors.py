from dataclasses import dataclass

import redis
from celery import current_app
from django.db.models import QuerySet

from .metrics import QUEUES
from .models import AuditEvent
from .redis import redis_client


def queue_depths() -> dict[str, int | None]:
    """Tasks waiting in each Celery queue (None when the broker does not answer)."""
    try:
        with redis_client().pipeline() as pipe:
            for queue in QUEUES:
                pipe.llen(queue)
            depths = pipe.execute()
    except redis.RedisError:
        return dict.fromkeys(QUEUES)
    return dict(zip(QUEUES, (int(depth) for depth in depths), strict=True))


@dataclass(frozen=True)
class WorkerStatus:
    name: str
    active: int
    queues: tuple[str, ...]


def workers_list(*, timeout: float = 1.0) -> list[WorkerStatus] | None:
    """The workers answering a broadcast now, or None when the broker does not answer."""
    try:
        # The project's Celery app (ragsite.celery, made current when Django loads the project package).
        inspector = current_app.control.inspect(timeout=timeout)
        active = inspector.active() or {}
        queues = inspector.active_queues() or {}
    except (OSError, redis.RedisError):
        return None
    names = sorted(set(active) | set(queues))
    return [
        WorkerStatus(
            name=name,
            active=len(active.get(name) or []),
            queues=tuple(sorted(queue["name"] for queue in queues.get(name) or [])),
        )
        for name in names
    ]


def audit_events_recent(*, limit: int = 20) -> QuerySet[AuditEvent]:
    return AuditEvent.objects.select_related("actor")[:limit]
