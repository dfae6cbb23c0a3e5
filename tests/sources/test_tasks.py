"""Syncs through the real Celery worker: queued by hand, and by a real Celery beat process."""

from __future__ import annotations

import re
from pathlib import Path

import httpx
import pytest

from ingest.models import Document
from sources import services
from sources.models import SyncRun
from tests.factories import SourceFactory
from tests.ingest.conftest import wait_for, wait_until_done
from tests.processes import WorkerProcess, start_beat
from tests.sources.conftest import SOURCES_QUEUE, Repository

pytestmark = pytest.mark.django_db(transaction=True)


def test_a_sync_queued_by_hand_runs_on_the_worker(
    repository: Repository, sources_worker: WorkerProcess
) -> None:
    repository.commit("docs", {"guide.md": "# Guide\n\nThe guide says hello.\n"})
    source = SourceFactory.create(location=str(repository.path))

    services.source_sync_queue(source=source)

    wait_for(lambda: SyncRun.objects.filter(source=source, status="succeeded").exists(), what="the sync")
    run = SyncRun.objects.get(source=source)
    assert (run.seen, run.new) == (1, 1)
    wait_until_done(
        Document.objects.filter(collection=source.collection).values_list("id", flat=True),
        worker=sources_worker,
    )
    assert Document.objects.get(collection=source.collection).status == "ready"
    assert sources_worker.metrics_url is not None
    metrics = httpx.get(sources_worker.metrics_url, timeout=10).text
    assert re.search(r'ragsite_source_sync_items_total\{kind="git",outcome="new"\} [1-9]', metrics)
    assert 'ragsite_source_sync_seconds_count{kind="git"}' in metrics


def test_celery_beat_queues_the_syncs_of_due_sources(
    repository: Repository,
    sources_worker: WorkerProcess,
    test_database_name: str,
    logs_dir: Path,
    tmp_path: Path,
) -> None:
    repository.commit("docs", {"guide.md": "# Guide\n\nThe guide says hello.\n"})
    due = SourceFactory.create(location=str(repository.path), schedule_minutes=60)
    manual = SourceFactory.create(location=str(repository.path), schedule_minutes=0)
    beat = start_beat(
        database_name=test_database_name,
        log_dir=logs_dir,
        schedule=tmp_path / "celerybeat-schedule",
        extra_env={"RAGSITE_SOURCES_QUEUE": SOURCES_QUEUE, "RAGSITE_SOURCES_DUE_CHECK_S": "1"},
    )
    try:
        wait_for(
            lambda: SyncRun.objects.filter(source=due, status="succeeded").exists(),
            timeout=120,
            what="beat's sync of the due source",
        )
    finally:
        beat.stop()
    assert not SyncRun.objects.filter(source=manual).exists()
    # Queued once: the next is due in 60 minutes, however often beat looked meanwhile.
    assert SyncRun.objects.filter(source=due).count() == 1
    wait_until_done(
        Document.objects.filter(collection=due.collection).values_list("id", flat=True), worker=sources_worker
    )
