"""Celery tasks: a source's sync (by hand or scheduled) and the beat's every-minute look for due sources."""

from __future__ import annotations

import logging
from typing import Any

from celery import shared_task
from celery.exceptions import SoftTimeLimitExceeded

from . import services

logger = logging.getLogger(__name__)

SOFT_TIME_LIMIT_S = 2 * 3600


@shared_task(
    name="sources.source_sync",
    acks_late=True,
    reject_on_worker_lost=True,
    soft_time_limit=SOFT_TIME_LIMIT_S,
    time_limit=SOFT_TIME_LIMIT_S + 60,
)
def source_sync(source_id: int) -> None:
    try:
        services.source_sync(source_id=source_id)
    except SoftTimeLimitExceeded:
        # The run is marked failed by the next sync of this source (it finds it still running).
        logger.warning(
            "the sync of source %s took longer than %d s and was stopped", source_id, SOFT_TIME_LIMIT_S
        )


@shared_task(name="sources.sources_sync_due", ignore_result=True)
def sources_sync_due(**kwargs: Any) -> int:
    return services.sources_sync_due()
