"""Fixtures of the ingestion suite: an embeddings-only inference API and workers on a private queue."""

from __future__ import annotations

import time
import uuid
from collections.abc import Callable, Iterable, Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.processes import InferenceProcess, WorkerProcess, start_inference, start_worker

# Other suites' workers listen on "ingest"; ours get a queue of their own, so no other worker takes ours.
INGEST_QUEUE = f"ingest-test-{uuid.uuid4().hex[:8]}"


@pytest.fixture(scope="session")
def media_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("media")


@pytest.fixture(autouse=True)
def ingest_settings(settings: Any, media_dir: Path) -> None:
    settings.MEDIA_ROOT = str(media_dir)
    settings.RAGSITE_INGEST_QUEUE = INGEST_QUEUE


@pytest.fixture(scope="session")
def embedding_server(logs_dir: Path) -> Iterator[InferenceProcess]:
    """The real inference API, embeddings only (no chat model to load)."""
    server = start_inference(log_dir=logs_dir, chat_engine="none")
    yield server
    server.stop()


def ingest_worker_env(
    *, queue: str, inference: InferenceProcess, media: Path, delay_s: float = 0, batch_size: int = 64
) -> dict[str, str]:
    return {
        "RAGSITE_INGEST_BATCH_SIZE": str(batch_size),
        "DJANGO_SETTINGS_MODULE": "tests.ingest.worker_settings",
        "RAGSITE_INGEST_QUEUE": queue,
        "RAGSITE_INGEST_BATCH_DELAY_S": str(delay_s),
        "INFERENCE_URL": inference.url,
        "MEDIA_ROOT": str(media),
    }


@pytest.fixture(scope="session")
def ingest_worker(
    test_database_name: str, logs_dir: Path, embedding_server: InferenceProcess, media_dir: Path
) -> Iterator[WorkerProcess]:
    """A real Celery worker on the private ingest queue, embedding through the real inference API."""
    worker = start_worker(
        database_name=test_database_name,
        log_dir=logs_dir,
        queues=INGEST_QUEUE,
        concurrency=2,
        extra_env=ingest_worker_env(queue=INGEST_QUEUE, inference=embedding_server, media=media_dir),
    )
    yield worker
    worker.stop()


def wait_for(condition: Callable[[], bool], *, timeout: float = 300, what: str = "condition") -> None:
    """Poll until `condition()` holds; the timeout only bounds a hung run, it is not what is tested."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if condition():
            return
        time.sleep(0.1)
    raise AssertionError(f"timed out waiting for {what}")


def wait_until_done(
    document_ids: Iterable[int], *, worker: WorkerProcess | None = None, timeout: float = 600
) -> None:
    """Wait until every document is ready or failed."""
    from ingest.models import Document

    ids = list(document_ids)
    done = [Document.Status.READY, Document.Status.FAILED]

    def finished() -> bool:
        if worker is not None and worker.process.poll() is not None:
            raise AssertionError(f"the worker exited:\n{worker.log()[-4000:]}")
        return Document.objects.filter(id__in=ids, status__in=done).count() == len(ids)

    wait_for(finished, timeout=timeout, what=f"documents {ids} to finish")
