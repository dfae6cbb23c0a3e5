"""The whole pipeline through a real Celery worker, the real inference API and PostgreSQL."""

from __future__ import annotations

import math
import os
import re
import subprocess
import sys

import pytest
from django.contrib.auth.models import User

from ingest import services
from ingest.models import Chunk, Collection, Document
from ingest.tasks import document_ingest as document_ingest_task
from ingest.tokens import MODEL_MAX_TOKENS
from tests.factories import CollectionFactory, StaffUserFactory
from tests.ingest import files
from tests.ingest.conftest import wait_for, wait_until_done
from tests.processes import ROOT, WorkerProcess

pytestmark = pytest.mark.django_db(transaction=True)


def _create(collection: Collection, data: bytes, name: str, user: User | None = None) -> Document:
    return services.document_create_from_bytes(collection=collection, data=data, name=name, uploaded_by=user)


def _chunks(document: Document) -> list[tuple[str, str, int | None]]:
    return [
        (c.heading_path, c.text, c.page) for c in Chunk.objects.filter(document=document).order_by("ordinal")
    ]


def test_every_format_is_parsed_chunked_embedded_and_stored(ingest_worker: WorkerProcess) -> None:
    collection = CollectionFactory.create()
    user = StaffUserFactory.create()
    uploads = {
        "pdf": _create(
            collection,
            files.pdf_bytes(["Invoices are due in 30 days.", "Late fees are 2 %."], title="Terms"),
            "terms.pdf",
            user,
        ),
        "docx": _create(
            collection,
            files.docx_bytes([("title", "Travel"), ("h1", "Hotels"), ("p", "Up to 120 EUR a night.")]),
            "travel.docx",
        ),
        "html": _create(
            collection,
            b"<html><head><title>Returns</title><script>track()</script></head><body><main><h1>Returns</h1>"
            b"<h2>Refunds</h2><p>Refunds take 5 days.</p></main></body></html>",
            "returns.html",
        ),
        "markdown": _create(collection, b"# Guide\n\n## Setup\n\nRun make.\n", "guide.md"),
        "text": _create(collection, b"Kitchen FAQ\n\nThe kitchen is on floor 2.\n", "faq.txt"),
        "csv": _create(collection, b"product,price\nkettle,25\n", "prices.csv"),
        "xlsx": _create(
            collection, files.xlsx_bytes({"Stock": [["item", "units"], ["mug", 40]]}), "stock.xlsx"
        ),
        "pptx": _create(collection, files.pptx_bytes([("Q3", ["Revenue up 12 %"])]), "q3.pptx"),
    }
    wait_until_done([d.id for d in uploads.values()], worker=ingest_worker)

    for document in uploads.values():
        document.refresh_from_db()
        assert (document.status, document.error, document.progress, document.generation) == (
            "ready",
            "",
            100,
            1,
        )
    assert _chunks(uploads["pdf"]) == [
        ("Terms", "Invoices are due in 30 days.", 1),
        ("Terms", "Late fees are 2 %.", 2),
    ]
    assert _chunks(uploads["docx"]) == [("Travel > Hotels", "Up to 120 EUR a night.", None)]
    assert _chunks(uploads["html"]) == [("Returns > Refunds", "Refunds take 5 days.", None)]
    assert _chunks(uploads["markdown"]) == [("Guide > Setup", "Run make.", None)]
    assert _chunks(uploads["text"]) == [("Kitchen FAQ", "The kitchen is on floor 2.", None)]
    assert _chunks(uploads["csv"]) == [("prices", "product: kettle; price: 25", None)]
    assert _chunks(uploads["xlsx"]) == [("stock > Stock", "item: mug; units: 40", None)]
    assert _chunks(uploads["pptx"]) == [("q3 > Q3", "Revenue up 12 %", 1)]
    assert uploads["pdf"].title == "Terms" and uploads["pdf"].content_type == "application/pdf"
    assert uploads["pdf"].uploaded_by == user

    for chunk in Chunk.objects.filter(collection=collection):
        assert chunk.generation == 1 and chunk.collection_id == collection.id
        assert 0 < chunk.token_count <= MODEL_MAX_TOKENS
        assert math.isclose(sum(x * x for x in chunk.embedding), 1.0, rel_tol=1e-3)
    hits = Chunk.objects.filter(collection=collection, search_vector="refunds")
    assert list(hits.values_list("text", flat=True)) == ["Refunds take 5 days."]


BAD_INPUTS = {
    "binary.txt": (b"\x00\x01\x02garbage\x00" * 100, "The file is binary, not text"),
    "cut.pdf": (files.pdf_bytes(["Page one.", "Page two."])[:600], "The PDF is damaged or incomplete"),
    "locked.pdf": (files.encrypted_pdf_bytes("Secret."), "The PDF is password-protected"),
    "scripts.html": (
        b"<html><head><script>a()</script></head><body><script>b()</script><style>p{}</style></body></html>",
        "No text could be extracted",
    ),
    "blank.pdf": (files.pdf_bytes([" "]), "No text could be extracted"),
}


def test_bad_files_end_failed_with_a_message_and_others_are_unaffected(ingest_worker: WorkerProcess) -> None:
    collection = CollectionFactory.create()
    bad = {name: _create(collection, data, name) for name, (data, _) in BAD_INPUTS.items()}
    # Default limit 100 MiB; this one unpacks to 128 MiB from a few hundred KB.
    bomb = _create(collection, files.docx_zip_bomb(unpacked_bytes=128 * 2**20), "bomb.docx")
    good = _create(collection, b"# Fine\n\nThis one is fine.\n", "fine.md")
    wait_until_done([*(d.id for d in bad.values()), bomb.id, good.id], worker=ingest_worker)

    for name, document in bad.items():
        document.refresh_from_db()
        assert document.status == "failed", name
        assert document.error.startswith(BAD_INPUTS[name][1]), (name, document.error)
        assert not document.chunks.exists()
    bomb.refresh_from_db()
    assert bomb.status == "failed"
    assert re.search(
        r"would unpack to 12\d MiB, more than the 100 MiB allowed \(it may be a zip bomb\)", bomb.error
    )
    good.refresh_from_db()
    assert good.status == "ready" and _chunks(good) == [("Fine", "This one is fine.", None)]
    assert ingest_worker.process.poll() is None


def test_reindex_writes_the_next_generation_and_drops_the_old_one(ingest_worker: WorkerProcess) -> None:
    collection = CollectionFactory.create()
    text = "\n\n".join(
        f"Paragraph {i}: " + "the quick brown fox jumps over the lazy dog. " * 12 for i in range(12)
    )
    document = _create(collection, f"# Long\n\n{text}".encode(), "long.md")
    wait_until_done([document.id], worker=ingest_worker)
    first = list(Chunk.objects.filter(document=document).values_list("id", "ordinal", "text"))
    assert len(first) > 3

    services.document_reindex(document=document)
    wait_until_done([document.id], worker=ingest_worker)

    document.refresh_from_db()
    assert (document.status, document.generation) == ("ready", 2)
    second = list(Chunk.objects.filter(document=document).values_list("id", "ordinal", "text", "generation"))
    assert [(o, t) for _, o, t, _ in second] == [(o, t) for _, o, t in first]
    assert {g for *_, g in second} == {2}
    assert not {i for i, *_ in second} & {i for i, *_ in first}


def test_a_second_delivery_of_a_finished_task_changes_nothing(ingest_worker: WorkerProcess) -> None:
    collection = CollectionFactory.create()
    document = _create(collection, b"Once\n\nIndexed exactly once.\n", "once.txt")
    wait_until_done([document.id], worker=ingest_worker)
    before = list(Chunk.objects.filter(document=document).values_list("id", flat=True))

    result = document_ingest_task.apply_async(args=(document.id,), queue=services_queue())
    wait_for(lambda: f"[{result.id}] succeeded" in ingest_worker.log(), what="the duplicate task to run")

    document.refresh_from_db()
    assert (document.status, document.generation) == ("ready", 1)
    assert list(Chunk.objects.filter(document=document).values_list("id", flat=True)) == before


def services_queue() -> str:
    from django.conf import settings

    return str(getattr(settings, "RAGSITE_INGEST_QUEUE", "ingest"))


def test_an_unreachable_model_service_ends_failed_after_bounded_retries(settings: object) -> None:
    """Eagerly, in this process: each retry meets a closed port, and the last one records why it gave up."""
    from ragsite.devstack import free_port

    settings.RAGSITE_INGEST_QUEUE = "ingest-nobody-listens"  # type: ignore[attr-defined]
    settings.INFERENCE_URL = f"http://127.0.0.1:{free_port()}"  # type: ignore[attr-defined]
    document = _create(CollectionFactory.create(), b"Unlucky\n\nThe model is down.\n", "down.txt")
    document_ingest_task.apply(args=(document.id,))

    document.refresh_from_db()
    assert document.status == "failed"
    assert "cannot be reached" in document.error
    assert (
        f"Gave up after {document_ingest_task.max_retries} retries; press Retry once it is back."
        in document.error
    )
    assert not document.chunks.exists()


def test_a_worker_preloads_the_format_parsers_before_it_forks_its_pool() -> None:
    # In a fresh interpreter, the worker's start-up: Django's set-up and task autodiscovery, then worker_init.
    script = (
        "import sys\n"
        "from celery.signals import worker_init\n"
        "from ragsite.celery import app\n"
        "class Worker:\n"
        "    app, pool_cls = app, 'prefork'\n"
        "app.loader.init_worker()\n"
        "print('pypdf' in sys.modules, 'docx' in sys.modules)\n"
        "worker_init.send(sender=Worker())\n"
        "print('pypdf' in sys.modules, 'docx' in sys.modules)\n"
    )
    env = {**os.environ, "DJANGO_SETTINGS_MODULE": "ragsite.settings.test", "CELERY_SKIP_CHECKS": "1"}
    completed = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, check=True, cwd=ROOT, env=env
    )
    assert completed.stdout.split("\n")[:2] == ["False False", "True True"], completed.stderr
