"""Answer quality on the real pipeline: ingest a set's documents, ask its questions, score the answers.

    make bench-answers [BENCH_ARGS="--questions FILE --docs DIR"]
    python bench/answers.py ...     # inside `python -m ragsite.devstack exec --`

Starts the inference API (llama.cpp, the packaged CPU chat model, and the embedding model), ingests every
file of `--docs` through the ingestion service (parse, chunk, embed, store: what the Celery task runs), then
asks each question of `--questions` through `search.services.answer_stream`, the service the ask page and
the widget use, and scores the final answers with the rule of ../shared/eval/answers-dev/README.md:

- an answerable question is `correct` when every group of `all` has an alternative in the answer
  (case-insensitive substring) and the answer is not a refusal; `cited` when a passage the answer cites
  comes from `doc`;
- an unanswerable one (`"refuse": true`) is right when the answer is a refusal.

Rates are over the answerable (`correct`, `correct_and_cited`, `false_refusals`) or the unanswerable
(`refused_unanswerable`) questions. `unsupported_sentences` is the share of the shown answers' sentences that
the product's checker finds unsupported by their cited passage (what is shown has passed the checker, so this
measures that nothing bypasses it); `model_unsupported_sentences` is the share in the model's own replies,
before the check. `prompt_tokens_previous_p50` is the prompt the previous pipeline built for the same question
(up to six whole passages, each kept on one shared keyword or cosine >= 0.3), estimated the same way.
Questions are asked with the embedding cache on, as the page and the widget ask them (search.single_flight):
a sentence some earlier answer embedded is not embedded again. Before the questions, the quotable sentences
are embedded ahead (`sentence_vectors_s`), as the background task does after ingestion
(search.tasks.sentence_vectors_fill), so an extract reads their vectors; `--live-sentence-vectors` skips that,
and every extract embeds its sentences while the asker waits. `extract_after_retrieval_p50_ms` is over every
answer; `extract_after_retrieval_cold_p50_ms` over those whose extract had at least one sentence to embed.
The last line printed is one JSON object; every answer is written to `answers.jsonl` in the log folder.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import logging
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

DEFAULT_SET = ROOT.parent / "shared" / "eval" / "answers-dev"
INGEST_ATTEMPTS = 5


def percentile(values: list[float], p: float) -> float | None:
    if not values:
        return None
    ordered = sorted(values)
    return round(ordered[min(len(ordered) - 1, round(p * (len(ordered) - 1)))], 1)


def ingest(docs: Path) -> tuple[int, dict[int, str]]:
    """A collection holding every file of `docs`, ingested; its id and each document's file name."""
    from ingest.models import Document
    from ingest.services import collection_get_or_create, document_create_from_bytes, document_ingest
    from ops.inference import InferenceBusy

    collection = collection_get_or_create(name="bench-answers")
    names: dict[int, str] = {}
    for path in sorted(docs.iterdir()):
        if not path.is_file():
            continue
        document = document_create_from_bytes(collection=collection, data=path.read_bytes(), name=path.name)
        for attempt in range(INGEST_ATTEMPTS):
            try:
                document_ingest(document_id=document.id)
                break
            except InferenceBusy as exc:
                # What the Celery task does with a busy model service: wait its Retry-After and run again.
                if attempt == INGEST_ATTEMPTS - 1:
                    raise
                time.sleep(max(exc.retry_after, 1.0))
        document.refresh_from_db()
        if document.status != Document.Status.READY:
            raise RuntimeError(f"{path.name} was not ingested: {document.status} {document.error}")
        names[document.id] = path.name
    return collection.id, names


def previous_prompt_tokens(*, collection_id: int, question: str) -> int:
    """The prompt the previous pipeline sent for `question`: six whole passages kept on weak evidence."""
    from pgvector.django import CosineDistance

    from ingest.models import Chunk
    from ops import inference
    from retrievers.selectors import embedding_slot_active
    from search import prompting
    from search.selectors import chunk_search

    slot = embedding_slot_active()
    embedding = inference.embed([question], model=slot.model_id)[0]
    retrieved = chunk_search(
        collection_ids=[collection_id],
        query=question,
        query_embedding=embedding,
        k=10,
        embedding_column=slot.column,
    )
    distances = dict(
        Chunk.objects.filter(id__in=[passage.chunk_id for passage in retrieved])
        .annotate(distance=CosineDistance(slot.column, embedding))
        .values_list("id", "distance")
    )
    kept = [p for p in retrieved if p.keyword_rank is not None or 1 - distances[p.chunk_id] >= 0.3][:6]
    system = 600  # the previous system prompt and reminder, in characters
    text = sum(len(passage.text) + len(prompting.passage_label(passage)) + 8 for passage in kept)
    return (system + text + len(question)) // prompting.CHARS_PER_TOKEN + 1


def _cache_misses() -> float:
    from prometheus_client import REGISTRY

    value = REGISTRY.get_sample_value("ragsite_embedding_cache_lookups_total", {"result": "miss"})
    return value or 0.0


async def ask(*, collection_id: int, question: str) -> dict[str, Any]:
    from search import services
    from search.embedding_cache import question_embeddings_cached

    started = time.perf_counter()
    record: dict[str, Any] = {"tokens": 0}
    sources_at = None
    misses_before = _cache_misses()
    # With the embedding cache on, as the page and the widget ask (search.single_flight): the question and
    # the sentences an extractive answer scores are looked up before they are embedded.
    with question_embeddings_cached():
        async for event in services.answer_stream(
            collection_ids=[collection_id], question=question, request_id=f"bench-{time.time_ns()}"
        ):
            now = (time.perf_counter() - started) * 1000
            if event.kind == "sources":
                sources_at = now
                record["retrieval_ms"] = now
            elif event.kind == "extract":
                record["extract"] = event.text
                record["extract_ms"] = now - (sources_at or now)
                record["extract_docs"] = sorted({source.document_id for source in event.sources})
            elif event.kind == "token":
                record["tokens"] += 1
                record.setdefault("ttft_ms", now)
            elif event.kind == "error":
                record.update(answer="", error=event.text, refused=False, origin="error")
            elif event.kind == "done":
                record.update(
                    answer=event.text,
                    refused=event.refused,
                    origin=event.origin,
                    cited_docs=sorted({source.document_id for source in event.sources if source.cited}),
                    model_sentences=event.model_sentences,
                    unsupported=event.unsupported_sentences,
                    prompt_tokens=event.prompt_tokens,
                    model_answer=event.model_answer,
                )
    # A set asks each question once, so its own vector is one miss: any more were sentences that had to be
    # embedded for the extractive answer (the others came from answers before it).
    record["sentences_embedded"] = _cache_misses() - misses_before > 1
    record["total_ms"] = (time.perf_counter() - started) * 1000
    return record


async def ask_all(
    *, cases: list[dict[str, Any]], collection_id: int, names: dict[int, str], logs: Path
) -> list[dict[str, Any]]:
    """Every question in turn, in one event loop (as one web process serves them)."""
    from ops.db import db_sync_to_async

    records = []
    with open(logs / "answers.jsonl", "w") as out:
        for number, case in enumerate(cases, start=1):
            record = await ask(collection_id=collection_id, question=case["q"])
            record["previous_prompt_tokens"] = await db_sync_to_async(previous_prompt_tokens)(
                collection_id=collection_id, question=case["q"]
            )
            record["score"] = score(case, record, names)
            record["q"] = case["q"]
            out.write(json.dumps(record) + "\n")
            out.flush()
            records.append(record)
            print(f"{number}/{len(cases)} {record['score']} {case['q'][:60]}", file=sys.stderr)
    return records


def score(case: dict[str, Any], record: dict[str, Any], names: dict[int, str]) -> dict[str, Any]:
    answer = record.get("answer", "").lower()
    refused = bool(record.get("refused"))
    if case.get("refuse"):
        return {"refuse": True, "right": refused}
    correct = not refused and all(
        any(alternative.lower() in answer for alternative in group) for group in case["all"]
    )
    cited = case["doc"] in {names.get(document_id) for document_id in record.get("cited_docs", [])}
    extract = record.get("extract", "").lower()
    extract_correct = all(any(alt.lower() in extract for alt in group) for group in case["all"])
    return {
        "refuse": False,
        "correct": correct,
        "cited": cited,
        "false_refusal": refused,
        "extract_correct": extract_correct,
    }


def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--questions", type=Path, default=DEFAULT_SET / "questions.jsonl")
    parser.add_argument("--docs", type=Path, default=DEFAULT_SET / "docs")
    parser.add_argument("--log-dir", type=Path, default=None)
    parser.add_argument(
        "--live-sentence-vectors",
        action="store_true",
        help="do not embed sentences ahead: every extract embeds its sentences while the asker waits",
    )
    args = parser.parse_args()
    if "DATABASE_URL" not in os.environ:
        parser.error("run inside `python -m ragsite.devstack exec --` (or set DATABASE_URL)")
    cases = [json.loads(line) for line in args.questions.read_text().splitlines() if line.strip()]
    logs = args.log_dir or Path(tempfile.mkdtemp(prefix="bench-answers-"))
    logs.mkdir(parents=True, exist_ok=True)
    os.environ["MEDIA_ROOT"] = str(logs / "media")
    os.environ["DJANGO_SETTINGS_MODULE"] = "ragsite.settings.test"
    os.environ.setdefault("DJANGO_ALLOW_ASYNC_UNSAFE", "true")

    from tests.processes import start_inference

    logging.getLogger("httpx").setLevel(logging.WARNING)
    inference = start_inference(
        log_dir=logs, chat_engine="llamacpp", extra_env={"UVICORN_ACCESS_LOG": "false"}
    )
    os.environ["INFERENCE_URL"] = inference.url
    try:
        import django

        django.setup()
        from django.core.management import call_command

        call_command("migrate", verbosity=0)
        started = time.perf_counter()
        collection_id, names = ingest(args.docs)
        ingest_s = time.perf_counter() - started
        print(f"ingested {len(names)} documents in {ingest_s:.0f} s", file=sys.stderr)
        # What the background task (search.tasks.sentence_vectors_fill) does after ingestion, before anyone
        # asks: the quotable sentences embedded ahead, so the extract reads their vectors.
        sentences_s = None
        if not args.live_sentence_vectors:
            from search.sentence_vectors import sentence_vectors_fill

            started = time.perf_counter()
            sentence_vectors_fill(budget_s=3600.0)
            sentences_s = round(time.perf_counter() - started, 1)
        records = asyncio.run(ask_all(cases=cases, collection_id=collection_id, names=names, logs=logs))
    finally:
        inference.stop()

    answerable = [r for r in records if not r["score"]["refuse"]]
    unanswerable = [r for r in records if r["score"]["refuse"]]

    def rate(rows: list[dict[str, Any]], test: Any) -> float | None:
        return round(sum(1 for row in rows if test(row["score"])) / len(rows), 3) if rows else None

    shown = [r for r in records if r.get("origin") == "model"]
    model_sentences = sum(r.get("model_sentences", 0) for r in records)
    prompt_tokens = [float(r["prompt_tokens"]) for r in records if r.get("prompt_tokens")]
    previous = [float(r["previous_prompt_tokens"]) for r in records if r.get("prompt_tokens")]
    report = {
        "questions": len(records),
        "answerable": len(answerable),
        "correct": rate(answerable, lambda s: s["correct"]),
        "correct_and_cited": rate(answerable, lambda s: s["correct"] and s["cited"]),
        "cited": rate(answerable, lambda s: s["cited"]),
        "false_refusals": rate(answerable, lambda s: s["false_refusal"]),
        "unanswerable": len(unanswerable),
        "refused_unanswerable": rate(unanswerable, lambda s: s["right"]),
        "unsupported_sentences": 0.0 if shown else None,
        "model_unsupported_sentences": round(
            sum(r.get("unsupported", 0) for r in records) / model_sentences, 3
        )
        if model_sentences
        else None,
        "extract_correct": rate(answerable, lambda s: s["extract_correct"]),
        "answers_by_origin": {
            origin: sum(1 for r in records if r.get("origin") == origin)
            for origin in ("model", "extract", "refusal", "error")
        },
        "prompt_tokens_p50": percentile(prompt_tokens, 0.5),
        "prompt_tokens_previous_p50": percentile(previous, 0.5),
        "prompt_tokens_ratio": round(statistics.median(prompt_tokens) / statistics.median(previous), 3)
        if prompt_tokens and previous
        else None,
        "ttft_p50_ms": percentile([r["ttft_ms"] for r in records if "ttft_ms" in r], 0.5),
        "ttft_p99_ms": percentile([r["ttft_ms"] for r in records if "ttft_ms" in r], 0.99),
        "retrieval_p50_ms": percentile([r["retrieval_ms"] for r in records if "retrieval_ms" in r], 0.5),
        "extract_after_retrieval_p50_ms": percentile(
            [r["extract_ms"] for r in records if "extract_ms" in r], 0.5
        ),
        "extract_after_retrieval_p99_ms": percentile(
            [r["extract_ms"] for r in records if "extract_ms" in r], 0.99
        ),
        # The same over the answers whose extract needed at least one sentence embedded now (a cold cache).
        "extract_after_retrieval_cold_p50_ms": percentile(
            [r["extract_ms"] for r in records if "extract_ms" in r and r["sentences_embedded"]], 0.5
        ),
        "extracts_from_cached_sentences": sum(
            1 for r in records if "extract_ms" in r and not r["sentences_embedded"]
        ),
        "ingest_s": round(ingest_s, 1),
        # The background embedding of the quotable sentences (None with --live-sentence-vectors).
        "sentence_vectors_s": sentences_s,
        "cpus": os.cpu_count(),
        "logs": str(logs),
    }
    print(json.dumps(report))
    return 0


if __name__ == "__main__":
    sys.exit(main())
