"""The sync engine end to end: a git repository made by the test, PostgreSQL, and a real Celery worker that
ingests what the sync queues through the real inference API."""

from __future__ import annotations

import threading
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

import pytest
from django.db import connection

from ingest.models import Chunk, Document
from ops.models import AuditEvent
from sources import services
from sources.connectors import CONNECTORS, ConnectorError, Found
from sources.connectors.git import GitConnector
from sources.models import Source, SourceItem, SyncRun
from tests.factories import SourceFactory
from tests.ingest.conftest import wait_for, wait_until_done
from tests.processes import WorkerProcess
from tests.sources.conftest import Repository

pytestmark = pytest.mark.django_db(transaction=True)

FILES = {
    "README.md": "# Handbook\n\nThe staff handbook lives in this repository.\n",
    "hr/leave.md": "# Leave\n\nEveryone has 28 days of paid leave a year.\n",
    "hr/expenses.rst": "Expenses\n========\n\nReceipts are due within 30 days of the purchase.\n",
    "it/vpn.html": "<html><head><title>VPN</title></head><body><p>Use WireGuard.</p></body></html>",
    "it/laptops.adoc": "= Laptops\n\n== Replacement\n\nLaptops are replaced every four years.\n",
}


def git_source(repository: Repository, **kwargs: Any) -> Source:
    return SourceFactory.create(location=str(repository.path), **kwargs)


def documents_by_path(source: Source) -> dict[str, Document]:
    return {
        item.identity: item.document
        for item in SourceItem.objects.filter(source=source).select_related("document")
        if item.document is not None
    }


def sync_and_ingest(source: Source, worker: WorkerProcess) -> SyncRun:
    run = services.source_sync(source_id=source.id)
    assert run is not None
    wait_until_done(
        Document.objects.filter(collection=source.collection).values_list("id", flat=True), worker=worker
    )
    return run


def counts(run: SyncRun) -> tuple[str, int, int, int, int, int]:
    return (run.status, run.seen, run.new, run.changed, run.deleted, run.failed)


def test_a_first_sync_creates_a_document_for_each_file(
    repository: Repository, sources_worker: WorkerProcess
) -> None:
    repository.commit("handbook", FILES)
    source = git_source(repository)

    run = sync_and_ingest(source, sources_worker)

    assert counts(run) == ("succeeded", 5, 5, 0, 0, 0)
    assert run.finished_at is not None and run.message == ""
    documents = documents_by_path(source)
    assert sorted(documents) == sorted(FILES)
    for document in documents.values():
        document.refresh_from_db()
        assert (document.status, document.generation, document.collection_id) == (
            "ready",
            1,
            source.collection_id,
        )
    leave = Chunk.objects.get(document=documents["hr/leave.md"])
    assert "28 days of paid leave" in leave.text
    assert SourceItem.objects.get(source=source, identity="hr/leave.md").version == repository.blob(
        "hr/leave.md"
    )


def test_a_sync_after_a_commit_re_embeds_only_the_changed_file_and_deletes_the_removed_one(
    repository: Repository, sources_worker: WorkerProcess
) -> None:
    repository.commit("handbook", FILES)
    source = git_source(repository)
    sync_and_ingest(source, sources_worker)
    before = documents_by_path(source)

    repository.commit(
        "leave goes up, VPN page removed, a new page",
        {
            "hr/leave.md": "# Leave\n\nEveryone has 30 days of paid leave a year.\n",
            "it/wifi.md": "# Wi-Fi\n\nThe network is Staff.\n",
        },
        remove=("it/vpn.html",),
    )
    run = sync_and_ingest(source, sources_worker)

    assert counts(run) == ("succeeded", 5, 1, 1, 1, 0)
    after = documents_by_path(source)
    assert sorted(after) == ["README.md", "hr/expenses.rst", "hr/leave.md", "it/laptops.adoc", "it/wifi.md"]
    assert not Document.objects.filter(id=before["it/vpn.html"].id).exists()
    assert not Chunk.objects.filter(document_id=before["it/vpn.html"].id).exists()
    generations = {path: Document.objects.get(id=document.id).generation for path, document in after.items()}
    # Re-embedded: the changed document alone went to its next generation (the new one is at its first).
    assert generations == {
        "README.md": 1,
        "hr/expenses.rst": 1,
        "hr/leave.md": 2,
        "it/laptops.adoc": 1,
        "it/wifi.md": 1,
    }
    assert after["hr/leave.md"].id == before["hr/leave.md"].id
    leave = Chunk.objects.get(document=after["hr/leave.md"])
    assert "30 days" in leave.text and leave.generation == 2

    unchanged = sync_and_ingest(source, sources_worker)
    assert counts(unchanged) == ("succeeded", 5, 0, 0, 0, 0)


def test_a_failing_scan_deletes_nothing_and_says_why(
    repository: Repository, sources_worker: WorkerProcess, tmp_path: Path
) -> None:
    repository.commit("handbook", FILES)
    source = git_source(repository)
    sync_and_ingest(source, sources_worker)
    moved = tmp_path / "moved"
    repository.path.rename(moved)

    run = services.source_sync(source_id=source.id)

    assert run is not None and counts(run) == ("failed", 0, 0, 0, 0, 0)
    assert run.message.startswith(f"{repository.path} is not a git repository that the workers can read")
    assert len(documents_by_path(source)) == 5
    assert Document.objects.filter(collection=source.collection).count() == 5


class _FailingHalfWay(GitConnector):
    """The git connector, whose source fails after two items (a network that drops mid-scan)."""

    kind = "test-failing"

    def scan(self, *, previous: Mapping[str, str]) -> Iterator[Found]:
        for index, found in enumerate(super().scan(previous=previous)):
            if index == 2:
                raise ConnectorError("The repository stopped answering part way. Sync again later.")
            yield found


@pytest.fixture
def failing_kind() -> Iterator[str]:
    CONNECTORS[_FailingHalfWay.kind] = _FailingHalfWay
    yield _FailingHalfWay.kind
    del CONNECTORS[_FailingHalfWay.kind]


def test_a_scan_that_fails_half_way_deletes_nothing(
    repository: Repository, sources_worker: WorkerProcess, failing_kind: str
) -> None:
    repository.commit("handbook", FILES)
    source = git_source(repository)
    sync_and_ingest(source, sources_worker)
    repository.commit("all gone", remove=tuple(FILES))
    Source.objects.filter(id=source.id).update(kind=failing_kind)
    repository.commit(
        "one new",
        {
            "new.md": "# New\n\nA new page.\n",
            "two.md": "# Two\n\nA second.\n",
            "three.md": "# Three\n\nThird.\n",
        },
    )

    run = services.source_sync(source_id=source.id)

    assert run is not None and counts(run) == ("failed", 2, 2, 0, 0, 0)
    assert run.message == "The repository stopped answering part way. Sync again later."
    assert set(FILES) <= set(documents_by_path(source))


def test_failed_items_are_counted_and_named_and_keep_their_documents(
    repository: Repository, sources_worker: WorkerProcess, settings: Any
) -> None:
    repository.commit("handbook", {**FILES, "copy.md": FILES["README.md"], "empty.md": ""})
    source = git_source(repository)

    run = sync_and_ingest(source, sources_worker)

    assert counts(run) == ("succeeded", 7, 5, 0, 0, 2)
    lines = run.message.splitlines()
    assert "empty.md is empty." in lines
    duplicate = next(line for line in lines if line.startswith(("copy.md:", "README.md:")))
    assert "the same content is already in" in duplicate

    settings.RAGSITE_MAX_UPLOAD_BYTES = 40  # every file grows past it
    repository.commit(
        "longer", {path: text + "\nOne more line for everyone.\n" for path, text in FILES.items()}
    )
    again = services.source_sync(source_id=source.id)
    assert again is not None and (again.status, again.failed, again.changed) == ("succeeded", 7, 0)
    assert "the limit for one document is" in again.message and "… and 2 more." in again.message
    assert len(documents_by_path(source)) == 5


def test_two_syncs_of_one_source_never_overlap(repository: Repository, sources_worker: WorkerProcess) -> None:
    repository.commit("handbook", FILES)
    source = git_source(repository)
    scanning, release = threading.Event(), threading.Event()

    class Held(GitConnector):
        kind = "test-held"

        def scan(self, *, previous: Mapping[str, str]) -> Iterator[Found]:
            scanning.set()
            release.wait(timeout=120)
            yield from super().scan(previous=previous)

    CONNECTORS[Held.kind] = Held
    Source.objects.filter(id=source.id).update(kind=Held.kind)
    results: list[SyncRun | None] = []

    def first() -> None:
        try:
            results.append(services.source_sync(source_id=source.id))
        finally:
            connection.close()

    thread = threading.Thread(target=first)
    try:
        thread.start()
        assert scanning.wait(timeout=120)
        assert SyncRun.objects.get(source=source).status == "running"
        assert services.source_sync(source_id=source.id) is None  # at once: the first holds the lock
        release.set()
        thread.join(timeout=120)
    finally:
        release.set()
        del CONNECTORS[Held.kind]
    assert results[0] is not None and counts(results[0]) == ("succeeded", 5, 5, 0, 0, 0)
    assert SyncRun.objects.filter(source=source).count() == 1
    wait_until_done(
        Document.objects.filter(collection=source.collection).values_list("id", flat=True),
        worker=sources_worker,
    )


def test_a_run_left_running_by_a_dead_worker_is_closed_by_the_next_sync(
    repository: Repository, sources_worker: WorkerProcess
) -> None:
    repository.commit("handbook", {"README.md": FILES["README.md"]})
    source = git_source(repository)
    stale = SyncRun.objects.create(source=source)

    run = sync_and_ingest(source, sources_worker)

    stale.refresh_from_db()
    assert stale.status == "failed" and "The worker stopped during this sync" in stale.message
    assert run.status == "succeeded"


def test_a_document_deleted_by_hand_comes_back_on_the_next_sync(
    repository: Repository, sources_worker: WorkerProcess
) -> None:
    from ingest.services import document_delete

    repository.commit("handbook", {"README.md": FILES["README.md"]})
    source = git_source(repository)
    sync_and_ingest(source, sources_worker)
    document_delete(document=documents_by_path(source)["README.md"])

    run = sync_and_ingest(source, sources_worker)

    assert counts(run) == ("succeeded", 1, 1, 0, 0, 0)
    assert list(documents_by_path(source)) == ["README.md"]


def test_the_credentials_are_stored_encrypted_and_reach_the_connector(repository: Repository) -> None:
    source = services.source_create(
        name="Private docs",
        kind="git",
        location=str(repository.path),
        collection=SourceFactory.create().collection,
        credentials={"username": "reader", "password": "s3cret-token"},
        options={"branch": "main"},
    )
    stored = Source.objects.get(id=source.id).credentials_encrypted
    assert "s3cret" not in stored and "reader" not in stored
    config = services.source_config(source=source)
    assert dict(config.credentials) == {"username": "reader", "password": "s3cret-token"}
    assert dict(config.options) == {"branch": "main"}
    assert AuditEvent.objects.filter(action="source.create", target_id=str(source.id)).exists()


def test_credentials_under_a_changed_key_fail_the_sync_with_what_to_do(
    repository: Repository, settings: Any
) -> None:
    repository.commit("handbook", {"README.md": FILES["README.md"]})
    source = git_source(repository)
    services.source_credentials_set(source=source, credentials={"password": "token"})
    settings.RAGSITE_SOURCES_KEY = "a-new-key"

    run = services.source_sync(source_id=source.id)

    assert run is not None and run.status == "failed"
    assert "cannot be decrypted" in run.message and "Enter the credentials again" in run.message


def test_sources_whose_interval_has_passed_are_queued(
    repository: Repository, sources_worker: WorkerProcess
) -> None:
    repository.commit("handbook", {"README.md": FILES["README.md"]})
    due = git_source(repository, schedule_minutes=5)
    git_source(repository, schedule_minutes=0)  # by hand only
    git_source(repository, schedule_minutes=5, enabled=False)

    assert services.sources_sync_due() == 1
    assert services.sources_sync_due() == 0  # queued a moment ago: not due again for 5 minutes

    wait_for(lambda: SyncRun.objects.filter(source=due, status="succeeded").exists(), what="the due sync")
    assert SyncRun.objects.count() == 1
    wait_until_done(
        Document.objects.filter(collection=due.collection).values_list("id", flat=True), worker=sources_worker
    )
