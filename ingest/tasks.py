"""Celery tasks: thin wrappers that load by id and call a service; failures end as a document state."""

from __future__ import annotations

import logging
import threading
import time
from typing import Any

from celery import shared_task
from celery.exceptions import SoftTimeLimitExceeded
from celery.signals import worker_init, worker_ready
from django.conf import settings
from django.db import DatabaseError, InterfaceError, OperationalError, close_old_connections

from ops.inference import InferenceBusy, InferenceUnavailable

from . import services
from .parsers import parsers_preload

logger = logging.getLogger(__name__)

TRANSIENT = (InferenceBusy, InferenceUnavailable, OperationalError, InterfaceError)
MAX_RETRIES = 6
MAX_RETRY_DELAY_S = 300.0
SOFT_TIME_LIMIT_S = 30 * 60


def _retry_delay(retries: int, exc: Exception) -> float:
    """Exponential backoff (RAGSITE_INGEST_RETRY_BASE_S, 5 s: 5 s, 10 s, … capped at 5 min), or the model
    service's Retry-After if longer."""
    delay = min(float(settings.RAGSITE_INGEST_RETRY_BASE_S) * 2**retries, MAX_RETRY_DELAY_S)
    if isinstance(exc, InferenceBusy):
        delay = max(delay, exc.retry_after)
    return delay


def _transient_message(exc: Exception) -> str:
    if isinstance(exc, InferenceBusy | InferenceUnavailable):
        return f"{exc.message}."
    return f"The database was unavailable ({type(exc).__name__})."


@shared_task(
    bind=True,
    name="ingest.document_ingest",
    acks_late=True,
    reject_on_worker_lost=True,
    max_retries=MAX_RETRIES,
    soft_time_limit=SOFT_TIME_LIMIT_S,
    time_limit=SOFT_TIME_LIMIT_S + 60,
)
def document_ingest(self: Any, document_id: int) -> None:
    try:
        services.document_ingest(document_id=document_id)
    except TRANSIENT as exc:
        reason = _transient_message(exc)
        if self.request.retries >= self.max_retries:
            services.document_mark_failed(
                document_id=document_id,
                message=f"{reason} Gave up after {self.max_retries} retries; press Retry once it is back.",
            )
            return
        delay = _retry_delay(self.request.retries, exc)
        try:
            services.document_mark_waiting(
                document_id=document_id,
                message=f"{reason} Trying again in {delay:.0f} s (retry {self.request.retries + 1} of "
                f"{self.max_retries}).",
            )
        except DatabaseError:
            logger.warning("could not note the retry of document %s", document_id)
        raise self.retry(exc=exc, countdown=delay) from None
    except SoftTimeLimitExceeded:
        services.document_mark_failed(
            document_id=document_id,
            message=f"Ingestion took longer than {SOFT_TIME_LIMIT_S // 60} minutes and was stopped. "
            "Split the file into smaller ones and upload those.",
        )
    except Exception as exc:
        logger.exception("ingesting document %s failed", document_id)
        services.document_mark_failed(
            document_id=document_id,
            message=f"Ingestion failed unexpectedly ({type(exc).__name__}: {exc}). Press Retry; if it fails "
            "again, send this message to an administrator.",
        )


def _requeue_stalled_once() -> None:
    try:
        services.document_requeue_stalled()
    except DatabaseError:
        logger.exception("could not look for stalled documents")
    finally:
        close_old_connections()


def _sweep_stalled_forever(interval_s: float) -> None:
    while True:
        time.sleep(interval_s)
        _requeue_stalled_once()


@worker_init.connect
def preload_parsers(**kwargs: Any) -> None:
    """Import the format parsers in the worker's main process, before it forks its pool.

    Each pool process would otherwise import them on its first task: about a second of CPU each, all at
    once when a batch of uploads arrives. Forked processes inherit the imported modules. A worker imports
    this module (task autodiscovery, after Django's set-up) before it sends worker_init.
    """
    parsers_preload()


@worker_ready.connect
def requeue_stalled_documents(**kwargs: Any) -> None:
    """Documents whose run died with a worker are queued again: at start, then every sweep interval.

    Without the periodic sweep a killed worker's task would wait for the broker's visibility timeout
    (an hour) unless some worker restarts. A live run holds its document's lock, so it is never taken.
    """
    _requeue_stalled_once()
    interval_s = float(settings.RAGSITE_STALLED_SWEEP_S)
    if interval_s > 0:
        threading.Thread(
            target=_sweep_stalled_forever, args=(interval_s,), name="stalled-documents-sweep", daemon=True
        ).start()
