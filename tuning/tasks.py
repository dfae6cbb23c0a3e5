"""Celery tasks: thin wrappers that call a service; a build that cannot go on ends as a failed retriever."""

from __future__ import annotations

import logging
from typing import Any

from celery import shared_task
from django.db import InterfaceError, OperationalError

from ops.inference import InferenceBusy, InferenceUnavailable

from . import services

logger = logging.getLogger(__name__)

TRANSIENT = (InferenceBusy, InferenceUnavailable, OperationalError, InterfaceError)
MAX_RETRIES = 8


# Named as before the workflow moved from `retrievers` to `tuning`: builds already queued still run, and
# CELERY_TASK_ROUTES' "retrievers.*" still sends them to the reembed queue.
@shared_task(
    bind=True,
    name="retrievers.retriever_build",
    acks_late=True,
    reject_on_worker_lost=True,
    max_retries=MAX_RETRIES,
)
def retriever_build(self: Any, retriever_id: int) -> None:
    """One step of a candidate's build on the `reembed` queue; the step queues the next one itself."""
    try:
        services.retriever_build_step(retriever_id=retriever_id)
    except TRANSIENT as exc:
        if self.request.retries >= self.max_retries:
            services.retriever_mark_failed(
                retriever_id=retriever_id,
                message=f"Gave up after {self.max_retries} retries ({exc}). Run `retriever activate` again "
                "once the model service and the database answer; the work done so far is kept.",
            )
            return
        delay = min(5.0 * 2**self.request.retries, 300.0)
        if isinstance(exc, InferenceBusy):
            delay = max(delay, exc.retry_after)
        raise self.retry(exc=exc, countdown=delay) from None
    except Exception as exc:
        logger.exception("building retriever %s failed", retriever_id)
        services.retriever_mark_failed(
            retriever_id=retriever_id,
            message=f"The build failed ({type(exc).__name__}: {exc}). "
            "Run `retriever activate` again to resume.",
        )
