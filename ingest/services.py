"""Writes for collections, documents and chunks: upload, the ingestion pipeline and its state machine, and
re-embedding chunks into a retriever's vector slot."""

from __future__ import annotations

import contextlib
import hashlib
import logging
import time
from collections.abc import Callable, Iterable, Iterator, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from datetime import timedelta

import httpx
from django.conf import settings
from django.contrib.auth.models import AnonymousUser, Group, User
from django.core.files import File
from django.core.files.base import ContentFile
from django.db import IntegrityError, connection, transaction
from django.utils import timezone

from ops.inference import InferenceBusy, InferenceError, InferenceUnavailable
from ops.inference import embed as inference_embed
from ops.services import audit_record
from retrievers.selectors import EmbeddingSlot
from retrievers.slots import embedding_slot_for_writes

from .chunking import ChunkDraft, chunk_document, embedding_input
from .models import Chunk, Collection, Document
from .parsers import Limits, ParseError, parse, title_from_filename

logger = logging.getLogger(__name__)

Status = Document.Status
RUNNABLE = (Status.QUEUED, Status.PARSING, Status.EMBEDDING)
# Texts per call to the inference API: one full batch of its micro-batcher.
EMBED_BATCH_SIZE = 64
# A batch that times out is split down to this size before the timeout counts as a fault.
MIN_SPLIT_BATCH = 4
# A document whose runs keep dying (a worker killed mid-run each time) is failed rather than retried forever.
MAX_ATTEMPTS = 8
# A queued document untouched for this long has probably lost its queue message (e.g. Redis was wiped).
QUEUED_STALE_AFTER_S = 600
# Arbitrary 32-bit namespace for the advisory locks that make one run per document at a time.
_LOCK_NAMESPACE = 0x1A6E57


class DocumentRefused(Exception):
    """An upload that is not stored; `message` says why, in words a person can act on."""

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message


class DocumentDuplicate(DocumentRefused):
    def __init__(self, message: str, *, existing: Document) -> None:
        super().__init__(message)
        self.existing = existing


class InvalidTransition(Exception):
    """The document's status does not allow the action (e.g. re-indexing while it is being indexed)."""


def _size(size: int) -> str:
    return f"{size / 2**20:,.1f} MB" if size >= 2**20 else f"{max(size, 1) / 1024:,.0f} KB"


def _limits() -> Limits:
    return Limits(
        max_unpacked_bytes=getattr(settings, "RAGSITE_MAX_UNPACKED_BYTES", 100 * 2**20),
        ocr_languages=getattr(settings, "RAGSITE_OCR_LANGUAGES", "eng"),
    )


# --- collections -------------------------------------------------------------------------------------------


def collection_get_or_create(*, name: str, groups: Iterable[Group] = ()) -> Collection:
    """The collection called `name`, created if missing; `groups` are added to its readers."""
    collection, _ = Collection.objects.get_or_create(name=name)
    groups = list(groups)
    if groups:
        collection.groups.add(*groups)
    return collection


# --- upload ------------------------------------------------------------------------------------------------


def _sha256(file: File) -> str:
    digest = hashlib.sha256()
    file.seek(0)
    for block in file.chunks():
        digest.update(block)
    file.seek(0)
    return digest.hexdigest()


def _duplicate_message(*, name: str, existing: Document) -> str:
    return (
        f"“{name}” was not added: the same content is already in “{existing.collection.name}” as "
        f"“{existing}” (uploaded {existing.created_at:%Y-%m-%d %H:%M} UTC, "
        f"status {existing.get_status_display().lower()})."
    )


def document_create(
    *,
    collection: Collection,
    file: File,
    name: str,
    uploaded_by: User | AnonymousUser | None = None,
    title: str = "",
) -> Document:
    """Store an upload and queue its ingestion; raises DocumentRefused (or DocumentDuplicate) instead.

    A `title` given here is kept; without one the document's own (or its file name) is used.
    """
    limit = settings.RAGSITE_MAX_UPLOAD_BYTES
    size = file.size or 0
    if size > limit:
        raise DocumentRefused(
            f"“{name}” is {_size(size)}; the limit is {_size(limit)}. Split it into smaller files."
        )
    if size == 0:
        raise DocumentRefused(f"“{name}” is empty. Upload the document itself, not an empty file.")
    sha256 = _sha256(file)
    existing = (
        Document.objects.select_related("collection").filter(collection=collection, sha256=sha256).first()
    )
    if existing is not None:
        raise DocumentDuplicate(_duplicate_message(name=name, existing=existing), existing=existing)
    user = uploaded_by if uploaded_by is not None and uploaded_by.is_authenticated else None
    document = Document(
        collection=collection,
        original_name=name[:255],
        title=title[:500],
        sha256=sha256,
        size=size,
        uploaded_by=user,
        status=Status.QUEUED,
    )
    document.file.save(name, file, save=False)
    try:
        with transaction.atomic():
            document.save()
            audit_record(
                actor=user,
                action="document.upload",
                target=document,
                details={"collection": collection.name, "size": size, "sha256": sha256},
            )
            _queue_ingest(document.id)
    except IntegrityError:
        # Two uploads of the same content raced; the other one won.
        document.file.delete(save=False)
        existing = Document.objects.select_related("collection").get(collection=collection, sha256=sha256)
        raise DocumentDuplicate(_duplicate_message(name=name, existing=existing), existing=existing) from None
    return document


def document_create_from_bytes(
    *, collection: Collection, data: bytes, name: str, uploaded_by: User | None = None, title: str = ""
) -> Document:
    return document_create(
        collection=collection,
        file=ContentFile(data, name=name),
        name=name,
        uploaded_by=uploaded_by,
        title=title,
    )


def document_replace_content(*, document_id: int, data: bytes, name: str, title: str = "") -> bool:
    """Give a document new content (its source changed) and queue it as its next generation; whether it was.

    The content is checked as an upload's is (DocumentRefused, DocumentDuplicate); content equal to the
    stored one changes nothing and returns False. The live chunks stay searchable until the new generation
    replaces them. A document being indexed right now raises InvalidTransition: its run has read the old
    file, so the caller tries again later.
    """
    limit = settings.RAGSITE_MAX_UPLOAD_BYTES
    if len(data) > limit:
        raise DocumentRefused(
            f"“{name}” is {_size(len(data))}; the limit is {_size(limit)}. Split it into smaller files."
        )
    if not data:
        raise DocumentRefused(f"“{name}” is empty.")
    sha256 = hashlib.sha256(data).hexdigest()
    with transaction.atomic():
        document = Document.objects.select_for_update().select_related("collection").get(id=document_id)
        if document.sha256 == sha256:
            return False
        if document.status in (Status.PARSING, Status.EMBEDDING):
            raise InvalidTransition(f"“{document}” is being indexed; its new content is taken next time.")
        existing = (
            Document.objects.select_related("collection")
            .filter(collection_id=document.collection_id, sha256=sha256)
            .exclude(id=document.id)
            .first()
        )
        if existing is not None:
            raise DocumentDuplicate(_duplicate_message(name=name, existing=existing), existing=existing)
        old_file, storage = document.file.name, document.file.storage
        document.file.save(name, ContentFile(data, name=name), save=False)
        document.original_name = name[:255]
        # The source's title, or none: the new content's own title then replaces the old content's.
        document.title = title[:500]
        document.sha256 = sha256
        document.size = len(data)
        document.save(update_fields=["file", "original_name", "title", "sha256", "size", "updated_at"])
        new_file = document.file.name
        audit_record(
            actor=None,
            action="document.replace",
            target=document,
            details={"collection": document.collection.name, "size": len(data), "sha256": sha256},
        )
        if old_file and old_file != new_file:
            transaction.on_commit(lambda: storage.delete(old_file))
        # A queued document's run has not read its file yet: it reads the new one.
        if document.status != Status.QUEUED:
            _requeue(document, allowed=[Status.READY, Status.FAILED], action="re-indexed")
    return True


def _queue_ingest(document_id: int) -> None:
    from .tasks import document_ingest as document_ingest_task

    queue = getattr(settings, "RAGSITE_INGEST_QUEUE", "ingest")
    transaction.on_commit(lambda: document_ingest_task.apply_async(args=(document_id,), queue=queue))


# --- user actions ------------------------------------------------------------------------------------------


def _requeue(document: Document, *, allowed: Sequence[str], action: str) -> Document:
    with transaction.atomic():
        locked = Document.objects.select_for_update().get(id=document.id)
        if locked.status not in allowed:
            raise InvalidTransition(
                f"“{locked}” cannot be {action} while it is {locked.get_status_display().lower()}."
            )
        locked.status = Status.QUEUED
        locked.progress = 0
        locked.error = ""
        locked.attempts = 0
        locked.finished_at = None
        locked.save(update_fields=["status", "progress", "error", "attempts", "finished_at", "updated_at"])
        _queue_ingest(locked.id)
    return locked


def document_retry(*, document: Document) -> Document:
    """Queue a failed document again."""
    return _requeue(document, allowed=[Status.FAILED], action="retried")


def document_reindex(*, document: Document) -> Document:
    """Parse, chunk and embed a document again; its current chunks stay live until new ones replace them."""
    return _requeue(document, allowed=[Status.READY, Status.FAILED], action="re-indexed")


def document_delete(*, document: Document, deleted_by: User | AnonymousUser | None = None) -> None:
    """Delete a document, its chunks (by cascade) and, once committed, its stored file."""
    file_name = document.file.name
    storage = document.file.storage
    with transaction.atomic():
        audit_record(
            actor=deleted_by,
            action="document.delete",
            target=document,
            details={"collection": document.collection.name, "sha256": document.sha256},
        )
        Document.objects.filter(id=document.id).delete()
        if file_name:
            transaction.on_commit(lambda: storage.delete(file_name))


def document_move(
    *, document: Document, collection: Collection, moved_by: User | AnonymousUser | None = None
) -> Document:
    """Move a document, and every generation of its chunks, to `collection` in one transaction.

    Chunks carry a copy of their document's collection (retrieval filters by it inside the index scan), so a
    document must never change collection any other way. Raises DocumentDuplicate if `collection` already
    holds the same content.
    """
    with transaction.atomic():
        locked = Document.objects.select_for_update().select_related("collection").get(id=document.id)
        existing = (
            Document.objects.select_related("collection")
            .filter(collection=collection, sha256=locked.sha256)
            .exclude(id=locked.id)
            .first()
        )
        if existing is not None:
            raise DocumentDuplicate(
                _duplicate_message(name=locked.original_name, existing=existing), existing=existing
            )
        # The chunks first (also repairing any an earlier path left behind in another collection), then the
        # document: every write takes the lexeme counts' locks before the collections' document counters
        # (search.0008), as ingestion does, so a move beside an activation cannot deadlock.
        Chunk.objects.filter(document_id=locked.id).exclude(collection_id=collection.id).update(
            collection_id=collection.id
        )
        moved_from = locked.collection
        if moved_from.id != collection.id:
            locked.collection = collection
            locked.save(update_fields=["collection", "updated_at"])
            audit_record(
                actor=moved_by,
                action="document.move",
                target=locked,
                details={"from": moved_from.name, "to": collection.name},
            )
    document.collection = collection
    return locked


# --- the pipeline ------------------------------------------------------------------------------------------


@contextlib.contextmanager
def _document_lock(document_id: int, *, wait: bool = True) -> Iterator[bool]:
    """A session advisory lock: one run per document; released if the worker dies (its connection closes)."""
    with connection.cursor() as cursor:
        if wait:
            cursor.execute("SELECT pg_advisory_lock(%s, %s)", [_LOCK_NAMESPACE, document_id])
            acquired = True
        else:
            cursor.execute("SELECT pg_try_advisory_lock(%s, %s)", [_LOCK_NAMESPACE, document_id])
            acquired = bool(cursor.fetchone()[0])
    try:
        yield acquired
    finally:
        if acquired:
            with connection.cursor() as cursor:
                cursor.execute("SELECT pg_advisory_unlock(%s, %s)", [_LOCK_NAMESPACE, document_id])


def _update(document_id: int, **fields: object) -> int:
    return Document.objects.filter(id=document_id).update(updated_at=timezone.now(), **fields)


def document_ingest(*, document_id: int) -> None:
    """Parse, chunk, embed and store a queued document as its next generation; idempotent.

    Parse errors and refusals by the model end the document as failed; transient faults (model service busy or
    down, database gone) propagate, for the task to retry.
    """
    with _document_lock(document_id):
        document = Document.objects.filter(id=document_id).first()
        if document is None or document.status not in RUNNABLE:
            # Deleted, or a second delivery of a run that already finished.
            logger.info(
                "document %s is %s: nothing to do", document_id, document.status if document else "gone"
            )
            return
        if document.attempts >= MAX_ATTEMPTS:
            document_mark_failed(
                document_id=document_id,
                message=(
                    f"Ingestion was interrupted {document.attempts} times (the worker stopped while handling "
                    "this document, for example out of memory). Try splitting the file, or press Retry."
                ),
            )
            return
        _update(
            document_id,
            status=Status.PARSING,
            progress=5,
            attempts=document.attempts + 1,
            started_at=timezone.now(),
            finished_at=None,
        )
        # Chunks of a generation that never went live: a run that died half-way.
        Chunk.objects.filter(document_id=document_id, generation__gt=document.generation).delete()
        try:
            drafts, title, content_type, notes = _parse_and_chunk(document)
        except ParseError as exc:
            document_mark_failed(document_id=document_id, message=exc.message)
            return
        _update(
            document_id,
            status=Status.EMBEDDING,
            progress=10,
            title=_title_kept(document) or title,
            content_type=content_type,
            notes="\n".join(notes),
        )
        generation = document.generation + 1

        def progress(done: int, total: int) -> None:
            _update(document_id, progress=10 + int(85 * done / max(total, 1)))

        try:
            chunks_embed_and_store(
                document=document, drafts=drafts, generation=generation, on_progress=progress
            )
        except (InferenceBusy, InferenceUnavailable):
            raise
        except InferenceError as exc:
            document_mark_failed(document_id=document_id, message=exc.message)
            return
        document_generation_activate(document=document, generation=generation)


def _title_kept(document: Document) -> str:
    """The stored title if someone chose it; one made from the file name gives way to the file's own."""
    if document.title == title_from_filename(document.original_name):
        return ""
    return document.title


def _parse_and_chunk(document: Document) -> tuple[list[ChunkDraft], str, str, list[str]]:
    try:
        with document.file.open("rb") as handle:
            data = handle.read()
    except FileNotFoundError:
        raise ParseError(
            "The uploaded file is missing from storage (it may have been removed from the server). "
            "Delete this document and upload the file again."
        ) from None
    parsed = parse(data, filename=document.original_name, limits=_limits())
    drafts = chunk_document(parsed)
    return drafts, parsed.title, parsed.content_type, parsed.notes


def chunks_embed_and_store(
    *,
    document: Document,
    drafts: Sequence[ChunkDraft],
    generation: int,
    on_progress: Callable[[int, int], None] | None = None,
    batch_size: int | None = None,
) -> int:
    """Embed drafts in batches through the inference API and bulk-insert them as `generation` of `document`.

    The next batch is embedded while the previous one is written. The chunks stay invisible to retrieval until
    `document_generation_activate` makes their generation live. They are embedded by the active retriever
    into its vector slot, which cannot switch meanwhile. Returns the number of chunks written.
    """
    size = batch_size or int(getattr(settings, "RAGSITE_INGEST_BATCH_SIZE", EMBED_BATCH_SIZE))
    batches = [list(drafts[i : i + size]) for i in range(0, len(drafts), size)]
    if not batches:
        return 0
    written = 0
    with (
        embedding_slot_for_writes() as slot,
        ThreadPoolExecutor(max_workers=1, thread_name_prefix="embed") as pool,
    ):
        pending: Future[list[list[float]]] = pool.submit(_embed, batches[0], slot.model_id)
        for index, batch in enumerate(batches):
            vectors = pending.result()
            if index + 1 < len(batches):
                pending = pool.submit(_embed, batches[index + 1], slot.model_id)
            Chunk.objects.bulk_create(
                Chunk(
                    document_id=document.id,
                    collection_id=document.collection_id,
                    generation=generation,
                    ordinal=draft.ordinal,
                    text=draft.text,
                    heading_path=draft.heading,
                    page=draft.page,
                    char_start=draft.char_start,
                    char_end=draft.char_end,
                    token_count=draft.token_count,
                    **{slot.column: vector},
                )
                for draft, vector in zip(batch, vectors, strict=True)
            )
            written += len(batch)
            if on_progress is not None:
                on_progress(written, len(drafts))
            _test_delay("RAGSITE_INGEST_BATCH_DELAY_S")
    return written


def chunks_slot_fill(
    *, slot: EmbeddingSlot, limit: int | None = None, collection_id: int | None = None
) -> int:
    """Embed the chunks whose `slot.column` is empty with `slot.model_id`, up to `limit`; how many.

    A retriever's build fills its slot with this, and an evaluation of a retriever that is not the active one
    fills the slot for its corpus.
    """
    batch_size = int(getattr(settings, "RAGSITE_REEMBED_BATCH_SIZE", EMBED_BATCH_SIZE))
    missing = Chunk.objects.filter(**{f"{slot.column}__isnull": True})
    if collection_id is not None:
        missing = missing.filter(collection_id=collection_id)
    written, after_id = 0, 0
    while limit is None or written < limit:
        take = batch_size if limit is None else min(batch_size, limit - written)
        chunks = list(
            missing.filter(id__gt=after_id).order_by("id").only("id", "heading_path", "text")[:take]
        )
        if not chunks:
            break
        vectors = inference_embed(
            [embedding_input(heading=chunk.heading_path, text=chunk.text) for chunk in chunks],
            model=slot.model_id,
        )
        for chunk, vector in zip(chunks, vectors, strict=True):
            setattr(chunk, slot.column, vector)
        Chunk.objects.bulk_update(chunks, [slot.column])
        written += len(chunks)
        after_id = chunks[-1].id
        _test_delay("RAGSITE_REEMBED_BATCH_DELAY_S")
    return written


def _test_delay(setting: str) -> None:
    """A pause of `setting` seconds after each batch; only the tests' worker settings set one."""
    delay = float(getattr(settings, setting, 0) or 0)
    if delay:
        time.sleep(delay)


def _embed(batch: list[ChunkDraft], model: str) -> list[list[float]]:
    return _embed_texts([draft.embedding_input for draft in batch], model)


def _embed_texts(texts: list[str], model: str) -> list[list[float]]:
    """Embed a batch; one that times out (504, or no answer in time) is split in halves and retried."""
    try:
        return inference_embed(texts, model=model)
    except InferenceUnavailable as exc:
        timed_out = exc.status == 504 or isinstance(exc.__cause__, httpx.ReadTimeout)
        if not timed_out or len(texts) <= MIN_SPLIT_BATCH:
            raise
        logger.info("a batch of %d texts timed out; embedding it in halves", len(texts))
        middle = len(texts) // 2
        return _embed_texts(texts[:middle], model) + _embed_texts(texts[middle:], model)


def document_generation_activate(*, document: Document, generation: int) -> None:
    """Make `generation` the live one and drop every other, in one transaction; the document is ready."""
    with transaction.atomic():
        locked = Document.objects.select_for_update().filter(id=document.id).first()
        Chunk.objects.filter(document_id=document.id).exclude(generation=generation).delete()
        if locked is not None:
            # The run wrote its chunks with the collection it started with; the document may have moved since.
            Chunk.objects.filter(document_id=document.id).exclude(collection_id=locked.collection_id).update(
                collection_id=locked.collection_id
            )
        _update(
            document.id,
            generation=generation,
            status=Status.READY,
            progress=100,
            error="",
            finished_at=timezone.now(),
        )


def document_mark_failed(*, document_id: int, message: str) -> None:
    """End a run as failed with a message for people; a previous live generation stays searchable."""
    with transaction.atomic():
        document = Document.objects.select_for_update().filter(id=document_id).first()
        if document is None:
            return
        Chunk.objects.filter(document_id=document_id, generation__gt=document.generation).delete()
        _update(document_id, status=Status.FAILED, error=message[:2000], finished_at=timezone.now())


def document_mark_waiting(*, document_id: int, message: str) -> None:
    """Back to queued with a note (the model service is busy or down; a retry is scheduled)."""
    _update(document_id, status=Status.QUEUED, progress=0, error=message[:2000])


def document_requeue_stalled() -> int:
    """Queue again the documents whose run died with its worker (nobody holds their lock); how many."""
    stale_before = timezone.now() - timedelta(seconds=QUEUED_STALE_AFTER_S)
    running = Document.objects.filter(status__in=[Status.PARSING, Status.EMBEDDING])
    forgotten = Document.objects.filter(status=Status.QUEUED, updated_at__lt=stale_before)
    candidates = list(running.values_list("id", flat=True)) + list(forgotten.values_list("id", flat=True))
    requeued = 0
    for document_id in candidates:
        with _document_lock(document_id, wait=False) as free:
            if not free:
                continue  # a live run holds it
            with transaction.atomic():
                updated = Document.objects.filter(id=document_id, status__in=RUNNABLE).update(
                    status=Status.QUEUED, updated_at=timezone.now()
                )
                if updated:
                    _queue_ingest(document_id)
                    requeued += updated
    if requeued:
        logger.info("queued %d stalled document(s) again", requeued)
    return requeued


def chunks_expansion_set(*, expansions: dict[int, str]) -> int:
    """Set chunks' searched-only expansion text (their full-text vectors follow); how many changed.

    search.LexemeFrequency's triggers recount the changed vectors' lexemes in the same statement.
    """
    changed = 0
    for chunk_id, expansion in expansions.items():
        changed += Chunk.objects.filter(id=chunk_id).exclude(expansion=expansion).update(expansion=expansion)
    return changed


def chunks_expansion_clear(*, collection_ids: Sequence[int]) -> int:
    """Empty the expansion of every chunk of the collections; how many chunks had one."""
    return Chunk.objects.filter(collection_id__in=collection_ids).exclude(expansion="").update(expansion="")
