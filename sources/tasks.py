"""Celery tasks: a source's sync (by hand or scheduled) and the beat's every-minute look for due sources."""

from __future__ import annotations

from typing import Any

from celery import shared_task

from . import services

SOFT_TIME_LIMIT_S = 2 * 3600


# A worker lost mid-sync (killed, out of memory) does not get the sync again: the schedule retries it, and
# the next sync closes the run it left.
@shared_task(
    name="sources.source_sync",
    acks_late=True,
    reject_on_worker_lost=False,
    soft_time_limit=SOFT_TIME_LIMIT_S,
    time_limit=SOFT_TIME_LIMIT_S + 60,
)
def source_sync(source_id: int) -> None:
    services.source_sync(source_id=source_id)


@shared_task(name="sources.sources_sync_due", ignore_result=True)
def sources_sync_due(**kwargs: Any) -> int:
    return services.sources_sync_due()
