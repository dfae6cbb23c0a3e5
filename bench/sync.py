"""Connector sync end to end: a generated local web site synced, 1 % of it changed and synced again, and OCR.

    make bench-sync [BENCH_ARGS="--pages 2000 --concurrency 8"]
    python bench/sync.py ...     # inside `python -m ragsite.devstack exec --`

Starts an embeddings-only inference API (unless INFERENCE_URL is set), a Celery worker on the run's throwaway
PostgreSQL and Redis, and a local HTTP server (tests/sources/site_server.py) serving a site of `--pages`
pages: an index linking to every other page, each a few paragraphs of generated text. Then:

1. The same pages are uploaded through the ingest path (`document_create_from_bytes`) into a collection of
   their own and followed until every one is ready: the baseline.
2. A web source over the site is synced (`sources.services.source_sync`, the engine the Celery task runs) and
   followed until every document is ready. `first_sync_ratio` = its pages/s over the baseline's.
3. 1 % of the pages are edited and the source synced again, followed until the re-ingested documents are
   ready. `resync_time_ratio` = its time over the first sync's; `resync_reembedded` = documents whose live
   generation moved; `resync_changed` = the run's changed count (they must be equal).
4. `--scans` generated scanned pages (tests/ingest/test_ocr.py: rendered text at 300 dpi, rotated, with
   speckle noise) are parsed with OCR: `ocr_char_accuracy` (mean) and `ocr_pages_per_s`.

Prints one JSON object as its last line.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import random
import sys
import tempfile
import time
from pathlib import Path
from urllib.parse import urlsplit

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
TIMEOUT_S = 300
_WORDS = [
    "policy",
    "travel",
    "claim",
    "receipt",
    "hotel",
    "budget",
    "approval",
    "manager",
    "invoice",
    "refund",
    "contract",
    "supplier",
    "meeting",
    "report",
    "quarter",
    "revenue",
    "customer",
    "support",
    "ticket",
    "release",
    "server",
    "backup",
    "network",
    "access",
    "password",
    "account",
    "holiday",
    "leave",
    "salary",
    "training",
    "course",
    "office",
    "building",
    "parking",
    "security",
    "badge",
    "printer",
    "laptop",
    "license",
    "project",
    "deadline",
    "review",
    "design",
    "test",
    "deploy",
    "incident",
    "outage",
    "recovery",
    "storage",
    "database",
    "index",
    "search",
]


def page_text(number: int, *, revision: int = 0) -> str:
    rng = random.Random(number)
    paragraphs = []
    for _ in range(4):
        words = [rng.choice(_WORDS) for _ in range(rng.randint(60, 90))]
        paragraphs.append(" ".join(words).capitalize() + ".")
    if revision:
        paragraphs.append(f"Revision {revision}: page {number} was edited after the first sync.")
    return "".join(f"<p>{paragraph}</p>" for paragraph in paragraphs)


def page_html(number: int, *, revision: int = 0) -> bytes:
    title = f"Handbook page {number}"
    body = f"<h1>{title}</h1>{page_text(number, revision=revision)}"
    return f"<!doctype html><html><head><title>{title}</title></head><body>{body}</body></html>".encode()


def index_html(pages: int) -> bytes:
    links = "".join(f'<li><a href="/p{n:05d}.html">Page {n}</a></li>' for n in range(1, pages))
    return (
        "<!doctype html><html><head><title>Handbook</title></head>"
        f"<body><h1>Handbook</h1><p>Every page of the handbook.</p><ul>{links}</ul></body></html>"
    ).encode()


def _wait_ready(document_ids: set[int] | list[int]) -> None:
    from ingest.models import Document

    done = [Document.Status.READY, Document.Status.FAILED]
    ids = list(document_ids)
    while Document.objects.filter(id__in=ids, status__in=done).count() < len(ids):
        time.sleep(0.1)


def _generations(collection_id: int) -> dict[int, int]:
    from ingest.models import Document

    return dict(Document.objects.filter(collection_id=collection_id).values_list("id", "generation"))


def _run(*, pages: int, scans: int) -> dict[str, object]:
    from ingest import services as ingest_services
    from ingest.models import Document
    from sources import services as source_services
    from sources.models import SourceItem
    from tests.sources.site_server import Page, site_server

    result: dict[str, object] = {}
    with site_server() as site:
        site.pages["/"] = Page(index_html(pages))
        for number in range(1, pages):
            site.pages[f"/p{number:05d}.html"] = Page(page_html(number))
        bodies = [("index.html", site.pages["/"].body)] + [
            (f"p{number:05d}.html", site.pages[f"/p{number:05d}.html"].body) for number in range(1, pages)
        ]

        # Warm up the worker's pool and the model, outside every timing.
        warm = ingest_services.collection_get_or_create(name=f"bench-sync-warm-{time.time_ns()}")
        _wait_ready(
            [
                ingest_services.document_create_from_bytes(
                    collection=warm, data=page_html(-n), name=f"warm{n}.html"
                ).id
                for n in range(1, 9)
            ]
        )

        uploads = ingest_services.collection_get_or_create(name=f"bench-sync-upload-{time.time_ns()}")
        started = time.perf_counter()
        ids = [
            ingest_services.document_create_from_bytes(collection=uploads, data=data, name=name).id
            for name, data in bodies
        ]
        _wait_ready(ids)
        upload_s = time.perf_counter() - started

        collection = ingest_services.collection_get_or_create(name=f"bench-sync-source-{time.time_ns()}")
        source = source_services.source_create(
            name=f"bench-site-{time.time_ns()}",
            kind="web",
            location=site.url + "/",
            collection=collection,
            schedule_minutes=0,
            options={"max_pages": pages + 10},
        )
        started = time.perf_counter()
        first = source_services.source_sync(source_id=source.id)
        assert first is not None
        items = SourceItem.objects.filter(source=source, document__isnull=False)
        synced_ids = set(items.values_list("document_id", flat=True))
        _wait_ready(synced_ids)
        first_s = time.perf_counter() - started
        first_failed = Document.objects.filter(id__in=synced_ids, status=Document.Status.FAILED).count()

        before = _generations(collection.id)
        changed_pages = max(1, pages // 100)
        for number in random.Random(18).sample(range(1, pages), changed_pages):
            site.pages[f"/p{number:05d}.html"] = Page(page_html(number, revision=1))
        site.requests.clear()
        started = time.perf_counter()
        second = source_services.source_sync(source_id=source.id)
        assert second is not None
        _wait_ready(list(before))
        resync_s = time.perf_counter() - started
        after = _generations(collection.id)
        reembedded = sum(1 for document_id, generation in after.items() if before[document_id] != generation)

        result.update(
            {
                "pages": first.new,
                "first_sync_status": first.status,
                "first_sync_failed_items": first.failed,
                "first_sync_failed_documents": first_failed,
                "upload_s": round(upload_s, 2),
                "first_sync_s": round(first_s, 2),
                "upload_pages_per_s": round(len(bodies) / upload_s, 2),
                "first_sync_pages_per_s": round(first.new / first_s, 2),
                "first_sync_ratio": round((first.new / first_s) / (len(bodies) / upload_s), 3),
                "resync_status": second.status,
                "resync_s": round(resync_s, 2),
                "resync_time_ratio": round(resync_s / first_s, 4),
                "resync_changed": second.changed,
                "resync_reembedded": reembedded,
                "resync_requests": len(site.gets()),
            }
        )
    result.update(_ocr(scans))
    return result


def _ocr(scans: int) -> dict[str, object]:
    from ingest.parsers import parse
    from tests.ingest.test_ocr import SCANNED, character_accuracy, scanned_pdf

    documents = [scanned_pdf(SCANNED, degrees=(0.0, 2.0, -3.0)[n % 3], seed=n) for n in range(scans)]
    accuracies = []
    started = time.perf_counter()
    for number, data in enumerate(documents):
        parsed = parse(data, filename=f"scan{number}.pdf")
        accuracies.append(character_accuracy(parsed.text, " ".join(SCANNED)))
    elapsed = time.perf_counter() - started
    return {
        "ocr_pages": scans,
        "ocr_char_accuracy": round(sum(accuracies) / len(accuracies), 4),
        "ocr_min_char_accuracy": round(min(accuracies), 4),
        "ocr_pages_per_s": round(scans / elapsed, 3),
    }


def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--pages", type=int, default=2000, help="pages of the site, index included")
    parser.add_argument("--concurrency", type=int, default=8, help="ingest worker processes")
    parser.add_argument("--scans", type=int, default=6, help="generated scanned pages to OCR")
    args = parser.parse_args()

    from tests.processes import start_inference, start_worker

    logs = Path(tempfile.mkdtemp(prefix="bench-sync-"))
    media = logs / "media"
    os.environ["MEDIA_ROOT"] = str(media)
    os.environ["RAGSITE_SOURCES_CACHE_DIR"] = str(logs / "sources-cache")
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "ragsite.settings.test")
    inference = None
    if not os.environ.get("INFERENCE_URL"):
        inference = start_inference(
            log_dir=logs, chat_engine="none", extra_env={"INFERENCE_REQUEST_TIMEOUT_S": str(TIMEOUT_S)}
        )
        os.environ["INFERENCE_URL"] = inference.url
    worker = None
    try:
        import django

        django.setup()
        # One INFO line per page fetched would bury the result.
        logging.getLogger("httpx").setLevel(logging.WARNING)
        from django.conf import settings
        from django.core.management import call_command

        settings.INFERENCE_TIMEOUT_S = TIMEOUT_S
        call_command("migrate", verbosity=0)
        database = urlsplit(os.environ["DATABASE_URL"]).path.lstrip("/")
        worker = start_worker(
            database_name=database,
            log_dir=logs,
            queues="ingest",
            concurrency=args.concurrency,
            extra_env={
                "DJANGO_SETTINGS_MODULE": "tests.ingest.worker_settings",
                "INFERENCE_URL": os.environ["INFERENCE_URL"],
                "INFERENCE_TIMEOUT_S": str(TIMEOUT_S),
                "MEDIA_ROOT": str(media),
            },
        )
        result = _run(pages=args.pages, scans=args.scans)
        result["concurrency"] = args.concurrency
    finally:
        if worker is not None:
            worker.stop()
        if inference is not None:
            inference.stop()
    print(json.dumps(result))
    return 0


if __name__ == "__main__":
    sys.exit(main())
