from django.db import transaction
from django.utils import timezone

from .models import Heartbeat


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
