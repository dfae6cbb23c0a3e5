"""Ingestion throughput end to end (upload, Celery, parse, chunk, embed, store) vs the model's ceiling.

    make bench-ingest [BENCH_ARGS="--documents 200 --concurrency 8"]
    python bench/ingest.py ...     # inside `python -m ragsite.devstack exec --`

Starts an embeddings-only inference API (unless INFERENCE_URL is set) and a Celery worker on the run's
throwaway PostgreSQL and Redis, stops both at the end, and prints one JSON object as its last line.

The corpus is the first N passages of the python-faq BEIR corpus, each uploaded as one text document through
`document_create` and followed until every one is ready. `ceiling_chunks_per_s` is the inference API's raw
throughput for the very same embedding inputs (the chunks' heading path and text), sent in full batches of
`EMBED_BATCH_SIZE` from as many client threads as the worker has processes. `ratio` = chunks_per_s / ceiling.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from urllib.parse import urlsplit

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
# Generous: on a busy machine a full batch can take longer than the defaults allow.
TIMEOUT_S = 300
DEFAULT_CORPUS = ROOT.parent / "shared" / "eval" / "python-faq" / "corpus.jsonl"


def _passages(path: Path, count: int) -> list[tuple[str, bytes]]:
    passages = []
    with path.open() as lines:
        for line in lines:
            row = json.loads(line)
            text = "\n\n".join(part for part in (row.get("title", ""), row["text"]) if part)
            passages.append((f"{row['_id']}.txt", text.encode()))
            if len(passages) == count:
                break
    return passages


def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--documents", type=int, default=200)
    parser.add_argument("--concurrency", type=int, default=8, help="worker processes (and ceiling clients)")
    parser.add_argument("--corpus", type=Path, default=DEFAULT_CORPUS)
    args = parser.parse_args()

    from tests.processes import start_inference, start_worker

    logs = Path(tempfile.mkdtemp(prefix="bench-ingest-"))
    media = logs / "media"
    os.environ["MEDIA_ROOT"] = str(media)
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
        result = _run(_passages(args.corpus, args.documents), concurrency=args.concurrency)
        result["concurrency"] = args.concurrency
    finally:
        if worker is not None:
            worker.stop()
        if inference is not None:
            inference.stop()
    print(json.dumps(result))
    return 0


def _run(passages: list[tuple[str, bytes]], *, concurrency: int) -> dict[str, object]:
    from ingest import services
    from ingest.chunking import chunk_document
    from ingest.models import Chunk, Document
    from ingest.parsers import parse
    from ops.inference import embed

    inputs = [
        draft.embedding_input
        for name, data in passages
        for draft in chunk_document(parse(data, filename=name))
    ]
    batches = [
        inputs[i : i + services.EMBED_BATCH_SIZE] for i in range(0, len(inputs), services.EMBED_BATCH_SIZE)
    ]
    embed(inputs[:8])  # warm up the model
    started = time.perf_counter()
    with ThreadPoolExecutor(max_workers=concurrency) as pool:
        list(pool.map(embed, batches))
    ceiling = len(inputs) / (time.perf_counter() - started)

    collection = services.collection_get_or_create(name=f"bench-{time.time_ns()}")
    started = time.perf_counter()
    ids = [
        services.document_create_from_bytes(collection=collection, data=data, name=name).id
        for name, data in passages
    ]
    done = [Document.Status.READY, Document.Status.FAILED]
    while Document.objects.filter(id__in=ids, status__in=done).count() < len(ids):
        time.sleep(0.05)
    elapsed = time.perf_counter() - started
    failed = Document.objects.filter(id__in=ids, status=Document.Status.FAILED).count()
    chunks = Chunk.objects.filter(document_id__in=ids).count()
    return {
        "documents": len(ids),
        "failed": failed,
        "chunks": chunks,
        "seconds": round(elapsed, 2),
        "documents_per_s": round(len(ids) / elapsed, 2),
        "chunks_per_s": round(chunks / elapsed, 2),
        "ceiling_chunks_per_s": round(ceiling, 2),
        "ratio": round(chunks / elapsed / ceiling, 3),
    }


if __name__ == "__main__":
    sys.exit(main())
