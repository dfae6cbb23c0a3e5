"""Several workers and inference replicas share the load, and losing one of each, or restarting the
database and the broker under load, loses no document."""

from __future__ import annotations

import os
import re
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from django.db import connections
from django.db.models import Count

from ingest.models import Chunk, Collection, Document
from ingest.services import document_create_from_bytes
from ops import inference
from ragsite.devstack import Postgres, Redis
from tests.ingest.conftest import ingest_worker_env, wait_for, wait_until_done
from tests.processes import InferenceProcess, WorkerProcess, start_inference, start_worker

PARAGRAPH = (
    "Section {n}. The {topic} procedure has {n} steps. Operators record each step in the logbook, "
    "check the pressure gauge, and sign the form before the next shift takes over. "
)


def _text(topic: str, paragraphs: int = 40) -> bytes:
    body = "\n\n".join(PARAGRAPH.format(n=n, topic=topic) for n in range(paragraphs))
    return f"# {topic.title()} handbook\n\n{body}\n".encode()


def _create_documents(collection: Collection, count: int, prefix: str, *, paragraphs: int = 40) -> list[int]:
    return [
        document_create_from_bytes(
            collection=collection,
            data=_text(f"{prefix}-{i}-{uuid.uuid4().hex[:6]}", paragraphs),
            name=f"{prefix}-{i}.md",
        ).id
        for i in range(count)
    ]


def _embedding_requests(server: InferenceProcess) -> float:
    """Embedding requests this replica answered with 200, from its Prometheus metrics."""
    text = httpx.get(f"{server.url}/metrics", timeout=5).text
    total = 0.0
    for line in text.splitlines():
        if line.startswith("inference_request_seconds_count{") and 'status="200"' in line and "embed" in line:
            total += float(line.rsplit(" ", 1)[1])
    return total


def _succeeded_tasks(worker: WorkerProcess) -> int:
    return len(re.findall(r"Task ingest\.document_ingest\[[^\]]+\] succeeded", worker.log()))


def _assert_indexed_once(document_ids: list[int]) -> None:
    documents = Document.objects.filter(id__in=document_ids)
    assert sorted(documents.values_list("status", flat=True)) == [Document.Status.READY] * len(document_ids)
    for document in documents:
        generations = set(document.chunks.values_list("generation", flat=True))
        assert generations == {document.generation}, f"{document} has chunks of generations {generations}"
    duplicates = (
        Chunk.objects.filter(document_id__in=document_ids)
        .values("document_id", "generation", "ordinal")
        .annotate(n=Count("id"))
        .filter(n__gt=1)
    )
    assert not duplicates.exists()


@pytest.fixture
def replicas(logs_dir: Path) -> Iterator[list[InferenceProcess]]:
    servers = [start_inference(log_dir=logs_dir, chat_engine="none") for _ in range(2)]
    yield servers
    for server in servers:
        server.stop()


@pytest.mark.slow
@pytest.mark.django_db(transaction=True)
def test_two_workers_and_two_replicas_share_the_work_and_losing_one_of_each_loses_nothing(
    replicas: list[InferenceProcess], test_database_name: str, logs_dir: Path, media_dir: Path, settings: Any
) -> None:
    queue = f"scale-{uuid.uuid4().hex[:8]}"
    settings.RAGSITE_INGEST_QUEUE = queue
    settings.INFERENCE_URL = ",".join(server.url for server in replicas)
    inference.clients_reset()
    env = {
        # A short pause after each embedded batch keeps documents observably in progress for the kill.
        **ingest_worker_env(queue=queue, inference=replicas[0], media=media_dir, delay_s=0.5),
        "INFERENCE_URL": settings.INFERENCE_URL,
    }
    workers = [
        start_worker(database_name=test_database_name, log_dir=logs_dir, queues=queue, extra_env=env)
        for _ in range(2)
    ]
    try:
        collection = Collection.objects.create(name=f"scale-{queue}")
        first = _create_documents(collection, 6, "first")
        wait_until_done(first)
        _assert_indexed_once(first)
        assert all(_succeeded_tasks(worker) > 0 for worker in workers), "one worker took every document"
        served = [_embedding_requests(server) for server in replicas]
        assert all(count > 0 for count in served), f"embedding requests per replica: {served}"

        # Questions go through the same client: their embeddings alternate between the replicas.
        before = [_embedding_requests(server) for server in replicas]
        for n in range(6):
            assert len(inference.embed([f"how many steps has procedure {n}?"])[0]) == 384
        after = [_embedding_requests(server) for server in replicas]
        assert all(a > b for a, b in zip(after, before, strict=True)), f"{before} -> {after}"

        # Lose one worker mid-ingest and one replica: the rest finish everything, exactly once.
        # Longer documents, and the kill only once two are running: each worker (concurrency 1) is then
        # mid-document. Killed between taking a message and starting its run, the worker would leave a
        # document queued, which the sweep only retries after QUEUED_STALE_AFTER_S (docs/ingest.md).
        second = _create_documents(collection, 4, "second", paragraphs=120)
        wait_for(
            lambda: (
                Document.objects.filter(
                    id__in=second, status__in=[Document.Status.PARSING, Document.Status.EMBEDDING]
                ).count()
                == 2
            ),
            what="both workers to be mid-document",
        )
        workers[0].kill()
        replicas[0].stop()
        wait_until_done(second, worker=workers[1])
        _assert_indexed_once(first + second)
        for n in range(4):
            assert len(inference.embed([f"who signs the form after step {n}?"])[0]) == 384
    finally:
        for worker in workers:
            worker.stop()
        inference.clients_reset()


@pytest.mark.slow
@pytest.mark.django_db(transaction=True)
def test_restarting_postgres_and_redis_while_ingesting_still_ends_every_document_ready(
    ingest_worker: WorkerProcess,
) -> None:
    if not (os.environ.get("RAGSITE_PG_DIR") and os.environ.get("RAGSITE_REDIS_DIR")):
        pytest.skip("needs the embedded PostgreSQL and Redis of `make test` to restart them")
    postgres = Postgres(Path(os.environ["RAGSITE_PG_DIR"]), int(os.environ["RAGSITE_PG_PORT"]), fast=True)
    broker = Redis(Path(os.environ["RAGSITE_REDIS_DIR"]), int(os.environ["RAGSITE_REDIS_PORT"]))
    collection = Collection.objects.create(name=f"restart-{uuid.uuid4().hex[:8]}")
    documents = _create_documents(collection, 6, "restart")
    wait_for(
        lambda: Document.objects.filter(id__in=documents, status=Document.Status.READY).exists(),
        what="the first document to be ready",
    )
    connections.close_all()
    postgres.restart()
    broker.restart()
    wait_until_done(documents, worker=ingest_worker)
    _assert_indexed_once(documents)
