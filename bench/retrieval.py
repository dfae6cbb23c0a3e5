"""Retrieval at 100,000 chunks: hybrid latency of the real `chunk_search`, and HNSW recall@10 vs exact search.

    make bench-retrieval            # throwaway PostgreSQL + inference API; prints one JSON object last
    python bench/retrieval.py [--chunks 100000] [--corpus DIR] [--runs 400]   # inside bench/with_inference.py

The base set is real: the corpus passages, parsed and chunked by the ingest code and embedded by the
inference API (embeddings are cached in .cache/bench/, keyed by model and text). Embedding 100,000 texts on a
CPU takes too long, so the rest are derived from the base in SQL, and the output says how: chunk r copies the
text of base chunk b = r mod B and gets the embedding l2_normalize(v_b + lambda * v_o + noise), with o another
base chunk, lambda ~ U(0, 0.5) and noise ~ N(0, 0.02^2) per dimension (setseed fixed). Copies thus lie near,
but not on, real passages and between them, like paraphrases and passages on related subjects do. Rows are
loaded with COPY and INSERT ... SELECT with the indexes dropped, which are then rebuilt from the migration's
own definitions.

Most of the 100,000 are therefore synthetic (`synthetic_chunks`; with the dev corpus, 94,801 of them), and
the output says so. `p50_ms` / `p99_ms` are the wall time of `chunk_search` alone (one SQL round trip) per
query, with the question's embedding excluded (it is computed once, beforehand); `end_to_end` is what a
question costs before the model is asked: the question embedded through the inference API (the same client
the web app uses, `ops.inference`), then `chunk_search`.
Recall@10 compares the dense top 10 of `chunk_search` with the exact top 10 (index scans off, unprepared).
"""

from __future__ import annotations

import argparse
import hashlib
import json
import math
import os
import sys
import time
from collections.abc import Callable, Iterable, Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
os.environ.setdefault("DJANGO_SETTINGS_MODULE", "ragsite.settings.test")

import django  # noqa: E402

django.setup()

from django.db import connection, transaction  # noqa: E402

from evaluation.datasets import CorpusEntry, dataset_load  # noqa: E402
from evaluation.services import embed_with_retries  # noqa: E402
from ingest.models import Chunk, Collection, Document  # noqa: E402
from ops import inference  # noqa: E402
from search.models import LexemeFrequency  # noqa: E402
from search.retrieval import (  # noqa: E402
    DEFAULT_CANDIDATES,
    DEFAULT_EF_SEARCH,
    vector_literal,
)
from search.selectors import chunk_search  # noqa: E402

CACHE = ROOT / ".cache" / "bench" / "embeddings.jsonl"
CHUNKS_PER_DOCUMENT = 10
MIX_MAX = 0.5
NOISE_SD = 0.02
SEED = 0.42


def log(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


def percentile(values: Sequence[float], fraction: float) -> float:
    ordered = sorted(values)
    return ordered[max(0, math.ceil(fraction * len(ordered)) - 1)]


# --- the base set ------------------------------------------------------------------------------------------


def base_chunks(entries: Iterable[CorpusEntry]) -> list[tuple[str, str, int, str]]:
    """(heading, text, tokens, embedding input) of every chunk of the corpus, as ingestion makes them."""
    from ingest.chunking import chunk_document
    from ingest.parsers import ParseError, parse

    chunks = []
    for entry in entries:
        try:
            parsed = parse(entry.text.encode(), filename=f"{entry.id}.txt")
        except ParseError:
            continue
        parsed.title = entry.title
        for draft in chunk_document(parsed):
            chunks.append((draft.heading, draft.text, draft.token_count, draft.embedding_input))
    return chunks


def _cached_keys() -> set[str]:
    if not CACHE.exists():
        return set()
    with CACHE.open() as handle:
        return {json.loads(line)["key"] for line in handle}


def choose_base(chunks: list[tuple[str, str, int, str]], count: int) -> list[tuple[str, str, int, str]]:
    """`count` of the corpus chunks, those already embedded (cached) first, then in corpus order."""
    cached = _cached_keys()
    ordered = sorted(chunks, key=lambda chunk: _key(chunk[3]) not in cached)
    return ordered[:count]


def _key(text: str) -> str:
    return hashlib.sha256(f"{inference.EMBEDDING_MODEL}\0{text}".encode()).hexdigest()


def embeddings_of(texts: Sequence[str], *, on_progress: Callable[[int, int], None]) -> list[list[float]]:
    """Real embeddings of `texts` from the inference API, through a cache on disk."""
    cached: dict[str, list[float]] = {}
    if CACHE.exists():
        with CACHE.open() as handle:
            for line in handle:
                row = json.loads(line)
                cached[row["key"]] = row["embedding"]
    missing = sorted({_key(t): t for t in texts if _key(t) not in cached}.items())
    batches = [missing[i : i + 32] for i in range(0, len(missing), 32)]
    CACHE.parent.mkdir(parents=True, exist_ok=True)
    done = 0
    with CACHE.open("a") as out, ThreadPoolExecutor(max_workers=4) as pool:
        for batch, vectors in zip(
            batches, pool.map(lambda b: embed_with_retries([t for _, t in b]), batches), strict=True
        ):
            for (key, _), vector in zip(batch, vectors, strict=True):
                cached[key] = vector
                out.write(json.dumps({"key": key, "embedding": vector}) + "\n")
            done += len(batch)
            on_progress(done, len(missing))
    return [cached[_key(t)] for t in texts]


# --- loading -----------------------------------------------------------------------------------------------


def _index_definitions() -> dict[str, str]:
    with connection.cursor() as cursor:
        cursor.execute(
            "SELECT indexname, indexdef FROM pg_indexes WHERE tablename = %s AND indexname IN (%s, %s)",
            [Chunk._meta.db_table, "chunk_embedding_hnsw", "chunk_search_vector_gin"],
        )
        return dict(cursor.fetchall())


def load(
    *,
    base: Sequence[tuple[str, str, int, str]],
    vectors: Sequence[Sequence[float]],
    total: int,
    collections: int,
    m: int | None,
    ef_construction: int | None,
) -> dict[str, Any]:
    """Write `total` chunks into `collections` collections; the timings and index parameters."""
    definitions = _index_definitions()
    hnsw = definitions["chunk_embedding_hnsw"]
    if m is not None:
        hnsw = hnsw.replace("m='16'", f"m='{m}'").replace("m=16", f"m={m}")
    if ef_construction is not None:
        hnsw = hnsw.replace("ef_construction='64'", f"ef_construction='{ef_construction}'")
        hnsw = hnsw.replace("ef_construction=64", f"ef_construction={ef_construction}")
    made = [Collection.objects.create(name=f"bench {i}") for i in range(collections)]
    documents = Document.objects.bulk_create(
        Document(
            collection=made[n % collections],
            file="",
            original_name=f"bench-{n}.txt",
            sha256=f"{n:064x}",
            generation=1,
            status=Document.Status.READY,
        )
        for n in range(math.ceil(total / CHUNKS_PER_DOCUMENT))
    )
    timings: dict[str, Any] = {}
    table = Chunk._meta.db_table
    with connection.cursor() as cursor:
        for name in definitions:
            cursor.execute(f'DROP INDEX "{name}"')
        cursor.execute(
            "CREATE TEMP TABLE bench_base (i int PRIMARY KEY, heading text, body text, tokens int,"
            " embedding vector(384))"
        )
        cursor.execute(
            "CREATE TEMP TABLE bench_document (n int PRIMARY KEY, id bigint, collection_id bigint)"
        )
        started = time.monotonic()
        with cursor.cursor.copy("COPY bench_base FROM STDIN") as copy:
            for i, ((heading, text, tokens, _), vector) in enumerate(zip(base, vectors, strict=True)):
                copy.write_row((i, heading, text, tokens, vector_literal(vector)))
        with cursor.cursor.copy("COPY bench_document FROM STDIN") as copy:
            for n, document in enumerate(documents):
                copy.write_row((n, document.id, document.collection_id))
        cursor.execute("SELECT setseed(%s)", [SEED])
        cursor.execute(
            f"""
            INSERT INTO {table} (document_id, collection_id, generation, ordinal, text, heading_path,
                                 char_start, char_end, token_count, embedding)
            SELECT d.id, d.collection_id, 1, r.n %% {CHUNKS_PER_DOCUMENT}, b.body, b.heading, 0,
                   length(b.body), b.tokens,
                   CASE WHEN r.n < %(base)s THEN b.embedding ELSE l2_normalize((
                       SELECT array_agg(x + r.mix * y + random_normal(0, {NOISE_SD}) ORDER BY k)
                       FROM unnest(b.embedding::real[], o.embedding::real[]) WITH ORDINALITY AS u(x, y, k)
                   )::vector) END
            FROM (
                SELECT n, random() * {MIX_MAX} AS mix FROM generate_series(0, %(total)s - 1) AS n
            ) r
            JOIN bench_base b ON b.i = r.n %% %(base)s
            JOIN bench_base o ON o.i = (r.n * 7919 + 13) %% %(base)s
            JOIN bench_document d ON d.n = r.n / {CHUNKS_PER_DOCUMENT}
            """,
            {"base": len(base), "total": total},
        )
        timings["load_s"] = round(time.monotonic() - started, 1)
        cursor.execute("SET maintenance_work_mem = '2GB'")
        for name, definition in definitions.items():
            started = time.monotonic()
            cursor.execute(hnsw if name == "chunk_embedding_hnsw" else definition)
            timings[f"{name}_build_s"] = round(time.monotonic() - started, 1)
        # Every table a search reads, as autovacuum keeps them in a running system: the lexeme counts'
        # covering index then answers without visiting the table (search.0007).
        for vacuumed in (table, Document._meta.db_table, LexemeFrequency._meta.db_table):
            cursor.execute(f"VACUUM ANALYZE {vacuumed}")
    timings["hnsw_index"] = hnsw.split(" USING ", 1)[1]
    return timings


# --- measuring ---------------------------------------------------------------------------------------------


_exact: dict[tuple[tuple[int, ...], str, int], list[int]] = {}


def exact_top(*, collection_ids: list[int], embedding: Sequence[float], k: int) -> list[int]:
    """The exact nearest live chunks: a sequential scan and a sort, never the approximate index."""
    key = (tuple(collection_ids), vector_literal(embedding), k)
    if key not in _exact:
        _exact[key] = _exact_top(collection_ids=collection_ids, embedding=embedding, k=k)
    return _exact[key]


def _exact_top(*, collection_ids: list[int], embedding: Sequence[float], k: int) -> list[int]:
    # The same rows as chunk_search reads (readable collections, live generation), joined rather than
    # filtered by a correlated subquery, which without index scans would scan the documents once per chunk.
    sql = f"""
        SELECT c.id
        FROM {Chunk._meta.db_table} c
        JOIN {Document._meta.db_table} d ON d.id = c.document_id AND d.generation = c.generation
        WHERE c.collection_id = ANY(%(collection_ids)s)
        ORDER BY c.embedding <=> %(embedding)s::vector, c.id
        LIMIT %(k)s
    """
    params = {"collection_ids": collection_ids, "embedding": vector_literal(embedding), "k": k}
    with transaction.atomic(), connection.cursor() as cursor:
        cursor.execute("SET LOCAL enable_indexscan = off")
        # Unprepared: a prepared statement could keep a plan made with the index.
        cursor.cursor.execute(sql, params, prepare=False)
        return [row[0] for row in cursor.fetchall()]


def recall(
    *, queries: Sequence[tuple[str, list[float]]], collection_ids: list[int], k: int = 10, **search: Any
) -> float:
    hits = 0
    for text, embedding in queries:
        approximate = {
            r.chunk_id
            for r in chunk_search(
                collection_ids=collection_ids,
                query=text,
                query_embedding=embedding,
                k=k,
                mode="dense",
                **search,
            )
        }
        hits += len(
            approximate.intersection(exact_top(collection_ids=collection_ids, embedding=embedding, k=k))
        )
    return round(hits / (k * len(queries)), 4)


def latency(
    *,
    queries: Sequence[tuple[str, list[float]]],
    collection_ids: list[int],
    runs: int,
    mode: str,
    **search: Any,
) -> dict[str, float]:
    for text, embedding in queries[:20]:  # warm the caches and the connection
        chunk_search(
            collection_ids=collection_ids, query=text, query_embedding=embedding, mode=mode, **search
        )
    timings = []
    short = 0
    for i in range(runs):
        text, embedding = queries[i % len(queries)]
        started = time.perf_counter()
        results = chunk_search(
            collection_ids=collection_ids, query=text, query_embedding=embedding, k=10, mode=mode, **search
        )
        timings.append((time.perf_counter() - started) * 1000)
        short += len(results) < 10
    return {
        "p50_ms": round(percentile(timings, 0.5), 2),
        "p99_ms": round(percentile(timings, 0.99), 2),
        "short_results": short,
    }


def end_to_end(
    *, queries: Sequence[tuple[str, list[float]]], collection_ids: list[int], runs: int
) -> dict[str, float]:
    """Per question: its embedding from the inference API (no cache), then the hybrid `chunk_search`.

    A question the API refuses (busy, on a loaded machine) is counted in `refused`, not timed.
    """
    for text, _ in queries[:5]:  # warm the client's connection and the API
        chunk_search(collection_ids=collection_ids, query=text, query_embedding=embed_with_retries([text])[0])
    embedding_ms, total_ms = [], []
    refused = 0
    for i in range(runs):
        text, _ = queries[i % len(queries)]
        started = time.perf_counter()
        try:
            embedding = inference.embed([text])[0]
        except inference.InferenceError:
            refused += 1
            continue
        embedded = time.perf_counter()
        chunk_search(collection_ids=collection_ids, query=text, query_embedding=embedding, k=10)
        total_ms.append((time.perf_counter() - started) * 1000)
        embedding_ms.append((embedded - started) * 1000)
    if not total_ms:
        return {"runs": runs, "refused": refused}
    return {
        "p50_ms": round(percentile(total_ms, 0.5), 2),
        "p99_ms": round(percentile(total_ms, 0.99), 2),
        "embed_p50_ms": round(percentile(embedding_ms, 0.5), 2),
        "embed_p99_ms": round(percentile(embedding_ms, 0.99), 2),
        "runs": runs,
        "refused": refused,
    }


def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--corpus", default="/work/shared/eval/python-faq", help="a BEIR-layout dataset")
    parser.add_argument("--chunks", type=int, default=100_000)
    parser.add_argument("--base", type=int, default=None, help="use at most this many real chunks")
    parser.add_argument("--collections", type=int, default=10)
    parser.add_argument("--runs", type=int, default=400, help="timed searches per configuration")
    parser.add_argument("--m", type=int, default=None, help="HNSW m (default: the migration's)")
    parser.add_argument("--ef-construction", type=int, default=None, help="HNSW ef_construction")
    parser.add_argument("--sweep", default="20,40,64,100,200", help="ef_search values for the recall sweep")
    args = parser.parse_args()

    dataset = dataset_load(args.corpus)
    base = choose_base(base_chunks(dataset.corpus), min(args.chunks, args.base or args.chunks))
    log(f"{len(base)} base chunks from {dataset.name}; embedding those not cached")
    vectors = embeddings_of(
        [b[3] for b in base],
        on_progress=lambda d, t: log(f"embedded {d}/{t}") if d % 640 == 0 or d == t else None,
    )
    query_texts = list(dataset.queries.values()) or [b[0] or b[1][:200] for b in base[:200]]
    queries = list(zip(query_texts, embeddings_of(query_texts, on_progress=lambda d, t: None), strict=True))
    log(f"loading {args.chunks} chunks")
    timings = load(
        base=base,
        vectors=vectors,
        total=args.chunks,
        collections=args.collections,
        m=args.m,
        ef_construction=args.ef_construction,
    )
    everything = list(Collection.objects.order_by("id").values_list("id", flat=True))
    one = everything[:1]
    log("measuring")
    hybrid = latency(queries=queries, collection_ids=everything, runs=args.runs, mode="hybrid")
    result: dict[str, Any] = {
        "chunks": Chunk.objects.count(),
        "p50_ms": hybrid["p50_ms"],
        "p99_ms": hybrid["p99_ms"],
        "latency_scope": "p50_ms/p99_ms: chunk_search (SQL) alone, the question's embedding excluded",
        "end_to_end": end_to_end(queries=queries, collection_ids=everything, runs=args.runs),
        # The index's recall: dense candidates as many as k, so document-aware re-ranking (which reorders a
        # wider candidate list on purpose) cannot move chunks out of the top k.
        "recall_at_10": recall(queries=queries, collection_ids=everything, candidates=10),
        # How many of the raw-cosine top 10 the product's dense ranking still shows (a choice, not an error).
        "document_aware_overlap_at_10": recall(queries=queries, collection_ids=everything),
        "mode": "hybrid",
        "k": 10,
        "queries": len(queries),
        "runs": args.runs,
        "ef_search": DEFAULT_EF_SEARCH,
        "candidates": DEFAULT_CANDIDATES,
        **timings,
        "one_collection_of": args.collections,
        "one_collection": {
            **latency(queries=queries, collection_ids=one, runs=args.runs, mode="hybrid"),
            "recall_at_10": recall(queries=queries, collection_ids=one, candidates=10),
        },
        # An asker who reads some of the collections: the planner must keep the HNSW scan (docs/retrieval.md).
        "three_collections": {
            **latency(queries=queries, collection_ids=everything[:3], runs=args.runs, mode="hybrid"),
            "recall_at_10": recall(queries=queries, collection_ids=everything[:3], candidates=10),
        },
        "dense_only": latency(queries=queries, collection_ids=everything, runs=args.runs, mode="dense"),
        "keyword_only": latency(queries=queries, collection_ids=everything, runs=args.runs, mode="keyword"),
        "ef_search_sweep": {
            ef: {
                "recall_at_10": recall(
                    queries=queries, collection_ids=everything, candidates=10, ef_search=ef
                ),
                **latency(
                    queries=queries,
                    collection_ids=everything,
                    runs=max(100, args.runs // 4),
                    mode="dense",
                    candidates=10,
                    ef_search=ef,
                ),
            }
            for ef in (int(v) for v in args.sweep.split(","))
        },
        "base_texts": len(base),
        "real_chunks": min(len(base), args.chunks),
        "synthetic_chunks": max(0, args.chunks - len(base)),
        "derivation": (
            f"{len(base)} real chunks of {dataset.name} embedded by {inference.EMBEDDING_MODEL}; the other "
            f"{max(0, args.chunks - len(base))} copy a base chunk's text with embedding "
            f"l2_normalize(v_b + U(0,{MIX_MAX}) * v_other + N(0,{NOISE_SD}^2))"
        ),
    }
    print(json.dumps(result))
    return 0


if __name__ == "__main__":
    sys.exit(main())
