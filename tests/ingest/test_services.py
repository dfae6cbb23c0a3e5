"""Upload, deduplication, the state machine's guards, generations and recovery of orphaned runs."""

from __future__ import annotations

import hashlib
from pathlib import Path
from typing import Any

import psycopg
import pytest
from django.db import connection

from ingest import services
from ingest.models import Chunk, Collection, Document
from tests.factories import CollectionFactory
from tests.processes import database_url_for

pytestmark = pytest.mark.django_db


def _upload(collection: Collection, data: bytes = b"Hello\n\nWorld.", name: str = "hello.txt") -> Document:
    return services.document_create_from_bytes(collection=collection, data=data, name=name)


def _chunk(document: Document, *, generation: int, ordinal: int = 0) -> Chunk:
    return Chunk.objects.create(
        document=document,
        collection=document.collection,
        generation=generation,
        ordinal=ordinal,
        text=f"gen {generation} #{ordinal}",
        char_start=0,
        char_end=1,
        token_count=3,
        embedding=[0.0] * 383 + [1.0],
    )


def test_upload_is_stored_and_queued_after_commit(
    django_capture_on_commit_callbacks: Any, media_dir: Path
) -> None:
    with django_capture_on_commit_callbacks(execute=False) as callbacks:
        document = _upload(CollectionFactory.create())
    assert len(callbacks) == 1
    assert (document.status, document.size, document.original_name) == ("queued", 13, "hello.txt")
    assert (media_dir / document.file.name).read_bytes() == b"Hello\n\nWorld."


def test_the_same_content_twice_in_one_collection_is_refused_with_the_existing_document() -> None:
    collection = CollectionFactory.create(name="Policies")
    first = _upload(collection)
    with pytest.raises(services.DocumentDuplicate) as refused:
        _upload(collection, name="copy-of-hello.txt")
    assert refused.value.existing == first
    assert refused.value.message.startswith(
        "“copy-of-hello.txt” was not added: the same content is already in “Policies”"
    )
    assert Document.objects.count() == 1
    _upload(CollectionFactory.create())  # another collection may hold the same content
    assert Document.objects.count() == 2


def test_an_oversized_upload_is_refused_before_anything_is_stored(settings: Any, media_dir: Path) -> None:
    settings.RAGSITE_MAX_UPLOAD_BYTES = 1024
    files_before = set(media_dir.rglob("*"))
    with pytest.raises(
        services.DocumentRefused, match=r"“big.txt” is 2 KB; the limit is 1 KB. Split it into smaller files."
    ):
        _upload(CollectionFactory.create(), data=b"x" * 2048, name="big.txt")
    assert not Document.objects.exists()
    assert set(media_dir.rglob("*")) == files_before


def test_an_empty_upload_is_refused() -> None:
    with pytest.raises(services.DocumentRefused, match="“empty.txt” is empty"):
        _upload(CollectionFactory.create(), data=b"", name="empty.txt")


def test_delete_removes_the_chunks_and_the_file(
    django_capture_on_commit_callbacks: Any, media_dir: Path
) -> None:
    document = _upload(CollectionFactory.create())
    _chunk(document, generation=1)
    path = media_dir / document.file.name
    with django_capture_on_commit_callbacks(execute=True):
        services.document_delete(document=document)
    assert not Document.objects.exists() and not Chunk.objects.exists()
    assert not path.exists()


def test_replacing_a_documents_content_queues_its_next_generation_and_keeps_the_live_one(
    django_capture_on_commit_callbacks: Any, media_dir: Path
) -> None:
    document = _upload(CollectionFactory.create(), data=b"Old text.", name="page.txt")
    Document.objects.filter(id=document.id).update(status="ready", generation=1, title="Old title")
    _chunk(document, generation=1)
    old_path = media_dir / document.file.name

    with django_capture_on_commit_callbacks(execute=False) as callbacks:
        assert services.document_replace_content(document_id=document.id, data=b"New text.", name="page.txt")

    document.refresh_from_db()
    assert (document.status, document.generation, document.size, document.title) == ("queued", 1, 9, "")
    assert (media_dir / document.file.name).read_bytes() == b"New text."
    assert Chunk.objects.get(document=document).generation == 1  # searchable until the new one is live
    assert len(callbacks) == 2  # the old file's removal, and the ingestion
    for callback in callbacks:
        callback()
    assert not old_path.exists()


def test_replacing_a_documents_content_with_the_same_bytes_changes_nothing() -> None:
    document = _upload(CollectionFactory.create(), data=b"Same text.", name="page.txt")
    Document.objects.filter(id=document.id).update(status="ready", generation=1)
    assert not services.document_replace_content(document_id=document.id, data=b"Same text.", name="page.txt")
    document.refresh_from_db()
    assert (document.status, document.generation) == ("ready", 1)


def test_replacing_content_is_refused_while_indexing_and_as_upload_rules_say(settings: Any) -> None:
    collection = CollectionFactory.create()
    document = _upload(collection, data=b"One.", name="one.txt")
    _upload(collection, data=b"Two.", name="two.txt")
    Document.objects.filter(id=document.id).update(status="embedding")
    with pytest.raises(services.InvalidTransition, match="is being indexed"):
        services.document_replace_content(document_id=document.id, data=b"Three.", name="one.txt")
    Document.objects.filter(id=document.id).update(status="ready")
    with pytest.raises(services.DocumentDuplicate, match="the same content is already in"):
        services.document_replace_content(document_id=document.id, data=b"Two.", name="one.txt")
    with pytest.raises(services.DocumentRefused, match="is empty"):
        services.document_replace_content(document_id=document.id, data=b"", name="one.txt")
    settings.RAGSITE_MAX_UPLOAD_BYTES = 3
    with pytest.raises(services.DocumentRefused, match="the limit is"):
        services.document_replace_content(document_id=document.id, data=b"Three.", name="one.txt")
    document.refresh_from_db()
    assert (document.status, document.sha256) == ("ready", hashlib.sha256(b"One.").hexdigest())


def test_retry_and_reindex_are_guarded_by_the_status() -> None:
    document = _upload(CollectionFactory.create())
    with pytest.raises(services.InvalidTransition, match="cannot be re-indexed while it is queued"):
        services.document_reindex(document=document)
    with pytest.raises(services.InvalidTransition, match="cannot be retried while it is queued"):
        services.document_retry(document=document)
    Document.objects.filter(id=document.id).update(status="failed", error="boom", attempts=3)
    retried = services.document_retry(document=document)
    assert (retried.status, retried.error, retried.attempts) == ("queued", "", 0)


def test_activating_a_generation_drops_every_other_in_one_step() -> None:
    document = _upload(CollectionFactory.create())
    _chunk(document, generation=1)
    _chunk(document, generation=2, ordinal=0)
    _chunk(document, generation=2, ordinal=1)
    services.document_generation_activate(document=document, generation=2)
    document.refresh_from_db()
    assert (document.status, document.generation, document.progress) == ("ready", 2, 100)
    assert set(Chunk.objects.values_list("generation", flat=True)) == {2}


def test_a_failed_reindex_keeps_the_live_generation_and_drops_the_partial_one() -> None:
    document = _upload(CollectionFactory.create())
    Document.objects.filter(id=document.id).update(generation=1, status="embedding")
    _chunk(document, generation=1)
    _chunk(document, generation=2)
    services.document_mark_failed(document_id=document.id, message="The model refused it.")
    document.refresh_from_db()
    assert (document.status, document.error, document.generation) == ("failed", "The model refused it.", 1)
    assert list(Chunk.objects.values_list("generation", flat=True)) == [1]


def test_ingesting_a_document_that_is_already_done_changes_nothing() -> None:
    document = _upload(CollectionFactory.create())
    Document.objects.filter(id=document.id).update(status="ready", generation=1, progress=100)
    _chunk(document, generation=1)
    services.document_ingest(document_id=document.id)
    services.document_ingest(document_id=10**9)  # deleted meanwhile: quietly nothing
    document.refresh_from_db()
    assert (document.status, document.generation, document.attempts) == ("ready", 1, 0)
    assert Chunk.objects.count() == 1


def test_a_document_whose_runs_keep_dying_ends_failed_instead_of_looping() -> None:
    document = _upload(CollectionFactory.create())
    Document.objects.filter(id=document.id).update(status="embedding", attempts=services.MAX_ATTEMPTS)
    services.document_ingest(document_id=document.id)
    document.refresh_from_db()
    assert document.status == "failed"
    assert document.error.startswith(f"Ingestion was interrupted {services.MAX_ATTEMPTS} times")


def test_orphaned_runs_are_queued_again_but_live_ones_are_left_alone(
    django_capture_on_commit_callbacks: Any,
) -> None:
    collection = CollectionFactory.create()
    orphan = _upload(collection, data=b"orphan", name="orphan.txt")
    running = _upload(collection, data=b"running", name="running.txt")
    Document.objects.filter(id__in=[orphan.id, running.id]).update(status="embedding")
    # Another session (a live worker) holds the lock of `running`.
    other = psycopg.connect(database_url_for(str(connection.settings_dict["NAME"])), autocommit=True)
    try:
        other.execute("SELECT pg_advisory_lock(%s, %s)", [services._LOCK_NAMESPACE, running.id])
        with django_capture_on_commit_callbacks(execute=False) as callbacks:
            assert services.document_requeue_stalled() == 1
    finally:
        other.close()
    assert len(callbacks) == 1
    orphan.refresh_from_db()
    running.refresh_from_db()
    assert (orphan.status, running.status) == ("queued", "embedding")


def test_uploads_and_deletions_are_audited_with_their_actor(
    django_capture_on_commit_callbacks: Any, media_dir: Path
) -> None:
    from ops.models import AuditEvent
    from tests.factories import StaffUserFactory

    admin = StaffUserFactory.create()
    document = services.document_create_from_bytes(
        collection=CollectionFactory.create(), data=b"Audited.", name="audit.txt", uploaded_by=admin
    )
    with django_capture_on_commit_callbacks(execute=True):
        services.document_delete(document=document, deleted_by=admin)
    events = list(AuditEvent.objects.order_by("created_at").values_list("action", "actor", "target_id"))
    assert events == [
        ("document.upload", admin.pk, str(document.pk)),
        ("document.delete", admin.pk, str(document.pk)),
    ]


def test_a_moved_document_is_retrieved_from_its_new_collection_only() -> None:
    from search.selectors import chunk_search

    old, new = CollectionFactory.create(), CollectionFactory.create()
    document = _upload(old, data=b"Parcels are returned within thirty days.")
    Document.objects.filter(id=document.id).update(status=Document.Status.READY, generation=1)
    _chunk(document, generation=1)
    Chunk.objects.filter(document=document).update(text="Parcels are returned within thirty days.")

    services.document_move(document=document, collection=new)

    def hits(collection: Collection) -> list[int]:
        found = chunk_search(
            collection_ids=[collection.id], query="parcels returned", query_embedding=None, mode="keyword"
        )
        return [hit.document_id for hit in found]

    assert hits(old) == [] and hits(new) == [document.id]
    assert set(Chunk.objects.filter(document=document).values_list("collection_id", flat=True)) == {new.id}


def test_a_generation_written_before_a_move_goes_live_in_the_new_collection() -> None:
    """A run writes its chunks with the collection it read at its start; activation re-homes them."""
    old, new = CollectionFactory.create(), CollectionFactory.create()
    document = _upload(old)
    stale = Document.objects.get(id=document.id)
    services.document_move(document=document, collection=new)
    _chunk(stale, generation=1)  # written by a run that started before the move

    services.document_generation_activate(document=stale, generation=1)

    assert list(Chunk.objects.filter(document=document).values_list("collection_id", flat=True)) == [new.id]


def test_a_move_into_a_collection_that_holds_the_same_content_is_refused() -> None:
    old, new = CollectionFactory.create(), CollectionFactory.create(name="Policies")
    document = _upload(old)
    _upload(new)
    with pytest.raises(services.DocumentDuplicate, match="already in “Policies”"):
        services.document_move(document=document, collection=new)
    assert Document.objects.get(id=document.id).collection_id == old.id


def test_ingestion_titles_a_document_from_its_content_and_keeps_a_chosen_title(
    embedding_server: Any, settings: Any
) -> None:
    """A title made from the file name (an older parser's) gives way on re-index; one a person chose stays."""
    from ops import inference

    settings.INFERENCE_URL = embedding_server.url
    inference.clients_reset()
    manual = _upload(
        CollectionFactory.create(), data=b"# Camping Gear Guide\n\nTents sleep four.\n", name="gear-v2.md"
    )
    chosen = _upload(
        CollectionFactory.create(), data=b"# Camping Gear Guide\n\nTents sleep four.\n", name="b.md"
    )
    Document.objects.filter(id=manual.id).update(title="gear v2")
    Document.objects.filter(id=chosen.id).update(title="Gear (2024 edition)")
    try:
        for document in (manual, chosen):
            services.document_ingest(document_id=document.id)
    finally:
        inference.clients_reset()
    titles = dict(Document.objects.values_list("id", "title"))
    assert (titles[manual.id], titles[chosen.id]) == ("Camping Gear Guide", "Gear (2024 edition)")


@pytest.mark.django_db(transaction=True)
def test_a_move_beside_an_activation_in_the_same_collection_cannot_deadlock() -> None:
    """Every write takes the lexeme counts' row locks before the collection's document counter (search.0008):
    a move updates its chunks before its document, as an activation deletes chunks before it goes live."""
    import threading
    import time

    from django.db import connections, transaction

    from tests.search.factories import add_chunks, make_collection, make_document

    home, elsewhere = make_collection(), make_collection()
    going_live, moving = make_document(collection=home), make_document(collection=home)
    add_chunks(going_live, "Quokkas park in the east lot.")
    add_chunks(moving, "Quokkas park in the west lot.")
    errors: list[BaseException] = []
    holding, mover_started = threading.Event(), threading.Event()

    def activate() -> None:
        try:
            with transaction.atomic():
                Chunk.objects.filter(document=going_live).delete()  # the quokka counts of `home`, locked
                holding.set()
                mover_started.wait(10)
                time.sleep(0.5)  # the move is now waiting for those counts
                Document.objects.filter(id=going_live.id).update(generation=going_live.generation + 1)
        except BaseException as exc:
            errors.append(exc)
        finally:
            connections.close_all()

    def move() -> None:
        try:
            holding.wait(10)
            mover_started.set()
            services.document_move(document=moving, collection=elsewhere)
        except BaseException as exc:
            errors.append(exc)
        finally:
            connections.close_all()

    threads = [threading.Thread(target=activate), threading.Thread(target=move)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(30)

    assert errors == []
    assert Document.objects.get(id=moving.id).collection_id == elsewhere.id
    homes = set(Chunk.objects.filter(document=moving).values_list("collection_id", flat=True))
    assert homes == {elsewhere.id}
