"""kill -9 of a worker in the middle of a document: after a new worker starts, nothing is lost or doubled."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from ingest import services
from ingest.chunking import chunk_document
from ingest.models import Chunk
from ingest.parsers import parse
from tests.factories import CollectionFactory
from tests.ingest.conftest import ingest_worker_env, wait_for, wait_until_done
from tests.processes import InferenceProcess, WorkerProcess, start_worker

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.slow]

FAULT_QUEUE = "ingest-fault-test"
BATCH = 8


def _contract() -> bytes:
    """Forty short sections: forty chunks, five batches of eight in the fault test's worker."""
    sections = [
        f"## Clause {i}\n\nThe supplier shall deliver batch {i} on time and in full." for i in range(40)
    ]
    return ("# Contract\n\n" + "\n\n".join(sections)).encode()


def test_a_worker_killed_mid_document_loses_nothing_and_doubles_nothing(
    settings: Any,
    test_database_name: str,
    logs_dir: Path,
    embedding_server: InferenceProcess,
    media_dir: Path,
) -> None:
    settings.RAGSITE_INGEST_QUEUE = FAULT_QUEUE
    # Batches of 8, and a pause after each, so that the kill lands between two batches of one document.
    env = ingest_worker_env(
        queue=FAULT_QUEUE, inference=embedding_server, media=media_dir, delay_s=1.0, batch_size=BATCH
    )
    workers: list[WorkerProcess] = []
    try:
        _kill_mid_document_and_recover(
            env=env, database=test_database_name, logs_dir=logs_dir, workers=workers
        )
    finally:
        for worker in workers:
            worker.kill()


def _kill_mid_document_and_recover(
    *, env: dict[str, str], database: str, logs_dir: Path, workers: list[WorkerProcess]
) -> None:
    first = start_worker(database_name=database, log_dir=logs_dir, queues=FAULT_QUEUE, extra_env=env)
    workers.append(first)
    collection = CollectionFactory.create()
    data = _contract()
    expected = chunk_document(parse(data, filename="contract.md"))
    assert len(expected) >= 3 * BATCH

    big = services.document_create_from_bytes(collection=collection, data=data, name="contract.md")
    wait_until_done([big.id], worker=first)
    big.refresh_from_db()
    assert (big.status, big.generation) == ("ready", 1), big.error

    # Re-index it (generation 2), queue two more behind it, and kill the worker mid-way through generation 2.
    services.document_reindex(document=big)
    small = [
        services.document_create_from_bytes(
            collection=collection, data=f"Note {i}\n\nSmall note {i}.".encode(), name=f"n{i}.txt"
        )
        for i in range(2)
    ]
    wait_for(
        lambda: Chunk.objects.filter(document=big, generation=2).exists(),
        what="part of the new generation to be stored",
    )
    first.kill()
    big.refresh_from_db()
    assert big.status == "embedding" and big.generation == 1
    assert 0 < Chunk.objects.filter(document=big, generation=2).count() < len(expected)

    second = start_worker(database_name=database, log_dir=logs_dir, queues=FAULT_QUEUE, extra_env=env)
    workers.append(second)
    wait_until_done([big.id, *(d.id for d in small)], worker=second)

    big.refresh_from_db()
    assert (big.status, big.generation, big.progress, big.error) == ("ready", 2, 100, "")
    assert big.attempts == 2  # the killed run and the one that finished
    rows = Chunk.objects.filter(document=big).order_by("ordinal").values_list("generation", "ordinal", "text")
    assert list(rows) == [(2, d.ordinal, d.text) for d in expected]
    for document in small:
        document.refresh_from_db()
        assert (document.status, document.generation) == ("ready", 1)
        assert Chunk.objects.filter(document=document).count() == 1
