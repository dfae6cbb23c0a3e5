"""Transient faults of the model service: a document waits with a note, retries, and finishes; never stuck."""

from __future__ import annotations

import json
import re
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest

from ingest import services
from ingest.models import Chunk
from tests.factories import CollectionFactory
from tests.ingest.conftest import wait_for, wait_until_done
from tests.processes import WorkerProcess, start_worker

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.slow]

RETRY_QUEUE = "ingest-retry-test"


class FlakyModelService(ThreadingHTTPServer):
    """The outside world under test: answers 503 a few times, 504 to batches over 4 texts, then embeds."""

    def __init__(self, failures: int) -> None:
        super().__init__(("127.0.0.1", 0), _Handler)
        self.failures = failures
        self.batch_sizes: list[int] = []

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.server_address[1]}"


class _Handler(BaseHTTPRequestHandler):
    server: FlakyModelService

    def do_POST(self) -> None:  # noqa: N802
        body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
        texts = body["input"]
        self.server.batch_sizes.append(len(texts))
        if self.server.failures > 0:
            self.server.failures -= 1
            self._answer(503, {"error": {"message": "Loading the model."}})
        elif len(texts) > 4:
            self._answer(504, {"error": {"message": "The request's deadline passed before it was answered."}})
        else:
            vector = [1.0] + [0.0] * 383
            data = [{"object": "embedding", "index": i, "embedding": vector} for i in range(len(texts))]
            self._answer(200, {"object": "list", "data": data, "model": body["model"]})

    def _answer(self, status: int, payload: dict[str, Any]) -> None:
        raw = json.dumps(payload).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(raw)))
        self.end_headers()
        self.wfile.write(raw)

    def log_message(self, format: str, *args: Any) -> None:
        pass


@pytest.fixture
def flaky_service() -> Iterator[FlakyModelService]:
    server = FlakyModelService(failures=2)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield server
    server.shutdown()


def test_a_document_waits_out_an_unavailable_model_and_splits_batches_that_time_out(
    settings: Any, test_database_name: str, logs_dir: Path, media_dir: Path, flaky_service: FlakyModelService
) -> None:
    settings.RAGSITE_INGEST_QUEUE = RETRY_QUEUE
    worker: WorkerProcess = start_worker(
        database_name=test_database_name,
        log_dir=logs_dir,
        queues=RETRY_QUEUE,
        extra_env={
            "DJANGO_SETTINGS_MODULE": "tests.ingest.worker_settings",
            "RAGSITE_INGEST_QUEUE": RETRY_QUEUE,
            "INFERENCE_URL": flaky_service.url,
            "MEDIA_ROOT": str(media_dir),
        },
    )
    try:
        sections = "\n\n".join(f"## Part {i}\n\nThe text of part {i}." for i in range(10))
        document = services.document_create_from_bytes(
            collection=CollectionFactory.create(), data=f"# Manual\n\n{sections}".encode(), name="manual.md"
        )

        def waiting_with_a_note() -> bool:
            document.refresh_from_db()
            return document.status == "queued" and "Trying again in" in document.error

        wait_for(waiting_with_a_note, what="the document to wait for the model service with a note")
        assert document.error.startswith("The model service failed (503): Loading the model.")
        wait_until_done([document.id], worker=worker)
    finally:
        worker.stop()

    document.refresh_from_db()
    assert (document.status, document.error, document.generation) == ("ready", "", 1), worker.log()[-3000:]
    assert Chunk.objects.filter(document=document).count() == 10
    assert flaky_service.batch_sizes[:2] == [10, 10]  # the two refusals
    assert max(flaky_service.batch_sizes[2:]) == 10 and min(flaky_service.batch_sizes) <= 4  # then split


def test_on_a_worker_an_unreachable_model_service_ends_failed_after_bounded_retries(
    settings: Any, test_database_name: str, logs_dir: Path, media_dir: Path
) -> None:
    """On a real worker, each retry is a task the broker hands back after its countdown: every one meets a
    closed port, and the last records why it gave up (the backoff shortened to 0.1 s, doubling)."""
    from ingest.tasks import MAX_RETRIES
    from ragsite.devstack import free_port

    queue = f"{RETRY_QUEUE}-unreachable"
    settings.RAGSITE_INGEST_QUEUE = queue
    worker: WorkerProcess = start_worker(
        database_name=test_database_name,
        log_dir=logs_dir,
        queues=queue,
        extra_env={
            "DJANGO_SETTINGS_MODULE": "tests.ingest.worker_settings",
            "RAGSITE_INGEST_QUEUE": queue,
            "RAGSITE_INGEST_RETRY_BASE_S": "0.1",
            "INFERENCE_URL": f"http://127.0.0.1:{free_port()}",
            "MEDIA_ROOT": str(media_dir),
        },
    )
    try:
        document = services.document_create_from_bytes(
            collection=CollectionFactory.create(), data=b"Unlucky\n\nThe model is down.\n", name="down.txt"
        )
        wait_until_done([document.id], worker=worker, timeout=120)
        log = worker.log()
    finally:
        worker.stop()

    document.refresh_from_db()
    assert document.status == "failed", log[-3000:]
    assert "cannot be reached" in document.error
    assert f"Gave up after {MAX_RETRIES} retries; press Retry once it is back." in document.error
    assert not document.chunks.exists()
    # The worker received the task, then each retry after the countdown it set, and the last one ended it.
    countdowns = [
        float(s) for s in re.findall(r"ingest\.document_ingest\[[^]]+\] retry: Retry in ([\d.]+)s", log)
    ]
    assert countdowns == pytest.approx([0.1 * 2**retry for retry in range(MAX_RETRIES)]), log[-3000:]
    assert len(re.findall(r"ingest\.document_ingest\[[^]]+\] received", log)) == MAX_RETRIES + 1
    assert len(re.findall(r"ingest\.document_ingest\[[^]]+\] succeeded", log)) == 1
