"""Writes for sources: adding and editing them, queueing syncs, and the incremental sync engine."""

from __future__ import annotations

import contextlib
import logging
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import timedelta
from pathlib import Path
from typing import Any

from celery.exceptions import SoftTimeLimitExceeded
from django.conf import settings
from django.db import connection, transaction
from django.utils import timezone

from ingest import services as ingest_services
from ingest.models import Collection, Document
from ops.metrics import SOURCE_SYNC_ITEMS, SOURCE_SYNC_SECONDS
from ops.services import audit_record

from .connectors import ConnectorError, Found, SourceConfig, connector_for
from .crypto import CredentialsUnreadable, credentials_decrypt, credentials_encrypt
from .models import Source, SourceItem, SyncRun

logger = logging.getLogger(__name__)

# Arbitrary 32-bit namespace for the advisory locks that make one sync per source at a time.
_LOCK_NAMESPACE = 0x50C3A7
# The live counts are written at most this often (and at the end).
_PROGRESS_EVERY_S = 0.5
# At most this many failed items are named in a run's message.
_MESSAGE_FAILURES = 5


# --- sources -----------------------------------------------------------------------------------------------


def _patterns(text: str) -> str:
    return "\n".join(line.strip() for line in text.splitlines() if line.strip())


class SourceRefused(Exception):
    """A source that is not added; the message says why, in words a person can act on."""


def source_create(
    *,
    name: str,
    kind: str,
    location: str,
    collection: Collection,
    credentials: dict[str, str] | None = None,
    schedule_minutes: int = 60,
    include_patterns: str = "",
    exclude_patterns: str = "",
    options: dict[str, Any] | None = None,
    enabled: bool = True,
    created_by: Any = None,
) -> Source:
    """Add a source; its credentials are stored encrypted. Raises SourceRefused instead."""
    if Source.objects.filter(name=name).exists():
        raise SourceRefused(f"A source called “{name}” already exists; choose another name.")
    if location.strip().startswith("-"):
        raise SourceRefused(f"“{location}” is not a location: give a URL or an absolute path.")
    with transaction.atomic():
        source = Source.objects.create(
            name=name,
            kind=kind,
            location=location.strip(),
            collection=collection,
            credentials_encrypted=credentials_encrypt(credentials or {}),
            schedule_minutes=schedule_minutes,
            include_patterns=_patterns(include_patterns),
            exclude_patterns=_patterns(exclude_patterns),
            options=options or {},
            enabled=enabled,
        )
        audit_record(
            actor=created_by,
            action="source.create",
            target=source,
            details={"kind": kind, "location": source.location, "collection": collection.name},
        )
    return source


def source_credentials_set(*, source: Source, credentials: dict[str, str]) -> Source:
    """Replace a source's stored credentials (an empty dict removes them)."""
    source.credentials_encrypted = credentials_encrypt(credentials)
    source.save(update_fields=["credentials_encrypted"])
    return source


def source_config(*, source: Source) -> SourceConfig:
    """What the source's connector is told; raises CredentialsUnreadable."""
    return SourceConfig(
        location=source.location,
        credentials=credentials_decrypt(source.credentials_encrypted),
        include=tuple(source.include_patterns.split()),
        exclude=tuple(source.exclude_patterns.split()),
        options=dict(source.options or {}),
        max_item_bytes=settings.RAGSITE_MAX_UPLOAD_BYTES,
        cache_dir=str(Path(settings.RAGSITE_SOURCES_CACHE_DIR) / str(source.id)),
    )


# --- queueing syncs ----------------------------------------------------------------------------------------


def source_sync_queue(*, source: Source) -> None:
    """Queue a sync of `source` once the current transaction commits (by hand, or by the schedule).

    Raises SourceRefused for a disabled source.
    """
    from .tasks import source_sync as source_sync_task

    if not source.enabled:
        raise SourceRefused(f"“{source}” is disabled; enable it in its settings to sync it.")
    Source.objects.filter(id=source.id).update(last_queued_at=timezone.now())
    queue = settings.RAGSITE_SOURCES_QUEUE
    source_id = source.id
    transaction.on_commit(lambda: source_sync_task.apply_async(args=(source_id,), queue=queue))


def sources_sync_due() -> int:
    """Queue a sync of every enabled, scheduled source whose interval has passed; how many (Celery beat)."""
    now = timezone.now()
    queued = 0
    for source in Source.objects.filter(enabled=True, schedule_minutes__gt=0):
        last = source.last_queued_at
        if last is None or last + timedelta(minutes=source.schedule_minutes) <= now:
            source_sync_queue(source=source)
            queued += 1
    return queued


# --- the sync engine ---------------------------------------------------------------------------------------


@contextlib.contextmanager
def _source_lock(source_id: int) -> Iterator[bool]:
    """A session advisory lock, taken without waiting: one sync per source; freed if the worker dies."""
    with connection.cursor() as cursor:
        cursor.execute("SELECT pg_try_advisory_lock(%s, %s)", [_LOCK_NAMESPACE, source_id])
        acquired = bool(cursor.fetchone()[0])
    try:
        yield acquired
    finally:
        if acquired:
            with connection.cursor() as cursor:
                cursor.execute("SELECT pg_advisory_unlock(%s, %s)", [_LOCK_NAMESPACE, source_id])


@dataclass
class _Tally:
    run_id: int
    seen: int = 0
    new: int = 0
    changed: int = 0
    deleted: int = 0
    failed: int = 0
    failures: list[str] = field(default_factory=list)
    # What the connector noted that is no item's failure (a web site stopped at its page limit).
    notes: list[str] = field(default_factory=list)
    written_at: float = 0.0

    def fail(self, message: str) -> None:
        self.failed += 1
        if len(self.failures) < _MESSAGE_FAILURES:
            self.failures.append(message)

    def message(self) -> str:
        if not self.failed:
            return "\n".join(self.notes)
        more = self.failed - len(self.failures)
        return "\n".join(self.notes + self.failures + ([f"… and {more} more."] if more > 0 else []))

    def write(self, *, force: bool = False, **fields: Any) -> None:
        now = time.monotonic()
        if not force and now - self.written_at < _PROGRESS_EVERY_S:
            return
        self.written_at = now
        SyncRun.objects.filter(id=self.run_id).update(
            seen=self.seen,
            new=self.new,
            changed=self.changed,
            deleted=self.deleted,
            failed=self.failed,
            **fields,
        )


def source_sync(*, source_id: int) -> SyncRun | None:
    """Sync a source: new items become documents, changed ones are re-ingested, gone ones deleted.

    Returns the run, or None where the source is gone, disabled, or another sync of it holds its lock (syncs
    of one source never overlap). Deletion happens only after a complete scan: a scan that fails part way
    ends the run as failed and deletes nothing.
    """
    with _source_lock(source_id) as acquired:
        if not acquired:
            logger.info("source %s is already being synced; this sync is skipped", source_id)
            return None
        source = Source.objects.select_related("collection").filter(id=source_id).first()
        if source is None or not source.enabled:
            return None
        # We hold the lock: a run still marked running was cut off with its worker.
        SyncRun.objects.filter(source=source, status=SyncRun.Status.RUNNING).update(
            status=SyncRun.Status.FAILED,
            finished_at=timezone.now(),
            message="The worker stopped during this sync (restarted or killed); a later sync took over.",
        )
        run = SyncRun.objects.create(source=source)
        started = time.monotonic()
        tally = _Tally(run_id=run.id)
        try:
            _sync(source, tally)
        except (ConnectorError, CredentialsUnreadable) as exc:
            _finish(source, tally, status=SyncRun.Status.FAILED, message=str(exc))
        except SoftTimeLimitExceeded:
            _finish(
                source,
                tally,
                status=SyncRun.Status.FAILED,
                message="The sync took longer than its time limit and was stopped; nothing was deleted. "
                "Narrow the source with include/exclude patterns, or split it into several sources.",
            )
        except Exception as exc:
            logger.exception("syncing source %s failed", source_id)
            _finish(
                source,
                tally,
                status=SyncRun.Status.FAILED,
                message=f"The sync failed unexpectedly ({type(exc).__name__}: {exc}); nothing was deleted. "
                "Sync again; if it fails again, send this message to an administrator.",
            )
        else:
            _finish(source, tally, status=SyncRun.Status.SUCCEEDED, message=tally.message())
        SOURCE_SYNC_SECONDS.labels(source.kind).observe(time.monotonic() - started)
        run.refresh_from_db()
        return run


def _finish(source: Source, tally: _Tally, *, status: str, message: str) -> None:
    tally.write(force=True, status=status, message=message[:4000], finished_at=timezone.now())
    for outcome in ("seen", "new", "changed", "deleted", "failed"):
        count = getattr(tally, outcome)
        if count:
            SOURCE_SYNC_ITEMS.labels(source.kind, outcome).inc(count)


def _sync(source: Source, tally: _Tally) -> None:
    connector = connector_for(source.kind, source_config(source=source))
    items = {item.identity: item for item in SourceItem.objects.filter(source=source)}
    previous = {identity: item.version for identity, item in items.items() if item.document_id is not None}
    seen: set[str] = set()
    for found in connector.scan(previous=previous):
        if found.identity in seen:
            continue
        seen.add(found.identity)
        tally.seen += 1
        _sync_item(source, tally, found, items.get(found.identity))
        tally.write()
    # Connectors may say more than their items do (docs/connectors.md): shown with the run's message.
    tally.notes = [str(note) for note in getattr(connector, "notes", [])]
    # The scan finished: what it did not yield is gone from the source.
    for identity, item in items.items():
        if identity in seen:
            continue
        document = (
            Document.objects.select_related("collection").filter(id=item.document_id).first()
            if item.document_id is not None
            else None
        )
        if document is not None:
            ingest_services.document_delete(document=document)
            tally.deleted += 1
        item.delete()
        tally.write()


def _sync_item(source: Source, tally: _Tally, found: Found, item: SourceItem | None) -> None:
    if found.error:
        tally.fail(found.error)
    elif found.content is None:
        pass  # unchanged: the stored version is current
    elif item is None or item.document_id is None:
        _item_create(source, tally, found, found.content)
    else:
        _item_update(item, item.document_id, tally, found, found.content)


def _item_create(source: Source, tally: _Tally, found: Found, content: bytes) -> None:
    """A new item becomes a document, queued for ingestion."""
    try:
        document = ingest_services.document_create_from_bytes(
            collection=source.collection, data=content, name=found.filename, title=found.title
        )
    except ingest_services.DocumentRefused as exc:
        tally.fail(f"{found.identity}: {exc.message}")
        return
    SourceItem.objects.update_or_create(
        source=source,
        identity=found.identity,
        defaults={"version": found.version, "url": found.url, "document": document},
    )
    tally.new += 1


def _item_update(item: SourceItem, document_id: int, tally: _Tally, found: Found, content: bytes) -> None:
    """A changed item's document gets the new content as its next generation (none if the bytes are equal)."""
    try:
        requeued = ingest_services.document_replace_content(
            document_id=document_id, data=content, name=found.filename, title=found.title
        )
    except ingest_services.DocumentRefused as exc:
        tally.fail(f"{found.identity}: {exc.message}")
        return
    except ingest_services.InvalidTransition as exc:
        tally.fail(f"{found.identity}: {exc}")
        return
    except Document.DoesNotExist:
        # Deleted by hand since the items were read: it is created again next sync.
        SourceItem.objects.filter(id=item.id).update(document=None)
        tally.fail(f"{found.identity}: its document was deleted during the sync; it is added next sync.")
        return
    SourceItem.objects.filter(id=item.id).update(
        version=found.version, url=found.url, updated_at=timezone.now()
    )
    if requeued:
        tally.changed += 1
