"""Retrieval quality on a BEIR-layout dataset: its corpus through ingest, its queries through search.

The corpus is loaded through the real ingest code (parse, chunk, embed, store, activate), each entry one
document; queries run through the real retrieval selector as a user allowed to read the collection; chunks
map back to their document's corpus id.
"""

from __future__ import annotations

import hashlib
import heapq
import math
import operator
import threading
import uuid
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor

from django.contrib.auth.models import Group, User
from django.db import connection, transaction

from ingest.chunking import chunk_document
from ingest.models import Chunk, Collection, Document
from ingest.parsers import ParseError, parse, title_from_filename
from ingest.services import chunks_embed_and_store, document_generation_activate, document_mark_failed
from ops import inference
from retrievers.selectors import EmbeddingSlot, embedding_slot_active
from search.selectors import chunk_search, collection_ids_readable_by

from .datasets import CorpusEntry, Dataset
from .metrics import RECALL_DEPTH, documents_in_rank_order, scores_compute

QUERY_EMBED_BATCH = 64
# A document may have several chunks; retrieve this many per document wanted so that enough distinct
# documents remain after keeping each document's best chunk.
CHUNKS_PER_DOCUMENT = 2
_COMPLETE = "complete"
TRANSIENT_RETRIES = 6


# --- the corpus in the database ----------------------------------------------------------------------------


def _collection_name(dataset: Dataset, *, keep: bool) -> str:
    suffix = dataset.fingerprint[:16] if keep else uuid.uuid4().hex[:16]
    return f"evaluation {dataset.name} {suffix}"[:200]


def corpus_find_kept(*, dataset: Dataset) -> Collection | None:
    """The collection a `--keep` run loaded (or began to load) from this very corpus."""
    return Collection.objects.filter(name=_collection_name(dataset, keep=True)).first()


def corpus_is_complete(collection: Collection) -> bool:
    return collection.description == _COMPLETE


def _ingest_entry(document: Document, entry: CorpusEntry) -> int:
    """Ingest one entry, retrying when the model service is busy or briefly unavailable."""
    return inference.with_retries(
        lambda: _ingest_entry_once(document, entry),
        attempts=TRANSIENT_RETRIES,
        before_retry=lambda: Chunk.objects.filter(document=document).delete(),  # the half-written generation
    )


def _ingest_entry_once(document: Document, entry: CorpusEntry) -> int:
    try:
        parsed = parse(entry.text.encode(), filename=f"{entry.id}.txt")
    except ParseError as exc:
        document_mark_failed(document_id=document.id, message=exc.message)
        return 0
    # The corpus title is the document's title (an id-derived file name would only add noise). An untitled
    # entry keeps a title the parser found in its own text (a short first line standing alone, a leading
    # Markdown heading), as an uploaded file would: the parser took that line out of the text, and dropping
    # the title too would lose it from the index.
    if entry.title or parsed.title == title_from_filename(f"{entry.id}.txt"):
        parsed.title = entry.title
    drafts = chunk_document(parsed)
    written = chunks_embed_and_store(document=document, drafts=drafts, generation=1)
    document_generation_activate(document=document, generation=1)
    return written


def corpus_load(
    *,
    dataset: Dataset,
    keep: bool,
    workers: int = 8,
    on_progress: Callable[[int, int], None] | None = None,
    resume: Collection | None = None,
) -> Collection:
    """Ingest every corpus entry as one document of a new collection, or finish loading `resume`.

    Documents are ingested concurrently so that the inference API can batch their chunks.
    """
    collection = resume or Collection.objects.create(
        name=_collection_name(dataset, keep=keep), description="loading"
    )
    if resume is None:
        Document.objects.bulk_create(
            Document(
                collection=collection,
                file="",
                original_name=entry.id[:255],
                title=entry.title[:500],
                content_type="text/plain",
                sha256=hashlib.sha256(f"{entry.id}\0{entry.text}".encode()).hexdigest(),
                size=len(entry.text.encode()),
                status=Document.Status.EMBEDDING,
            )
            for entry in dataset.corpus
        )
    pending = list(Document.objects.filter(collection=collection, status=Document.Status.EMBEDDING))
    # Chunks an interrupted load wrote for documents it did not finish.
    Chunk.objects.filter(document__in=pending).delete()
    entries = {entry.id[:255]: entry for entry in dataset.corpus}
    pairs = [(document, entries[document.original_name]) for document in pending]
    done = 0
    lock = threading.Lock()

    def ingest_share(share: Sequence[tuple[Document, CorpusEntry]]) -> None:
        nonlocal done
        try:
            for document, entry in share:
                _ingest_entry(document, entry)
                with lock:
                    done += 1
                    if on_progress is not None:
                        on_progress(done, len(pairs))
        finally:
            connection.close()  # this thread's own connection

    with ThreadPoolExecutor(max_workers=workers, thread_name_prefix="evaluate-load") as pool:
        list(pool.map(ingest_share, [pairs[i::workers] for i in range(workers)]))
    Collection.objects.filter(id=collection.id).update(description=_COMPLETE)
    collection.description = _COMPLETE
    return collection


def collection_delete(*, collection: Collection) -> None:
    with transaction.atomic():
        collection.delete()


# --- a run -------------------------------------------------------------------------------------------------


def _reader_of(collection: Collection) -> tuple[User, Group]:
    name = f"evaluation-{uuid.uuid4().hex[:12]}"
    group = Group.objects.create(name=name)
    collection.groups.add(group)
    user = User.objects.create_user(username=name)
    user.groups.add(group)
    return user, group


def embed_with_retries(
    texts: Sequence[str], *, model: str = inference.EMBEDDING_MODEL, truncate: bool = False
) -> list[list[float]]:
    """`inference.embed`, retried with backoff while the model service is busy or briefly unavailable."""
    return inference.with_retries(
        lambda: inference.embed(texts, model=model, truncate=truncate), attempts=TRANSIENT_RETRIES
    )


def _embed_queries(texts: Sequence[str], *, model: str) -> list[list[float]]:
    vectors: list[list[float]] = []
    for start in range(0, len(texts), QUERY_EMBED_BATCH):
        vectors.extend(embed_with_retries(texts[start : start + QUERY_EMBED_BATCH], model=model))
    return vectors


def dataset_evaluate(
    *, dataset: Dataset, collection: Collection, mode: str, k: int = 10, slot: EmbeddingSlot | None = None
) -> dict[str, float | int | str]:
    """Run every judged query through `chunk_search` as a reader of `collection`; the mean metrics.

    `slot` is the retriever to evaluate (its model embeds the queries, its column is searched); by default
    the active one. Its column must be filled for the collection's chunks (`chunks_slot_fill`).
    """
    slot = slot or embedding_slot_active()
    query_ids = [q for q in dataset.qrels if q in dataset.queries]
    texts = [dataset.queries[q] for q in query_ids]
    embeddings: Sequence[Sequence[float] | None] = (
        [None] * len(texts) if mode == "keyword" else _embed_queries(texts, model=slot.model_id)
    )
    corpus_ids = dict(Document.objects.filter(collection=collection).values_list("id", "original_name"))
    depth = CHUNKS_PER_DOCUMENT * max(k, RECALL_DEPTH)
    user, group = _reader_of(collection)
    try:
        collection_ids = collection_ids_readable_by(user=user)
        runs = {
            query_id: documents_in_rank_order(
                chunk_search(
                    collection_ids=collection_ids,
                    query=text,
                    query_embedding=embedding,
                    k=depth,
                    mode=mode,
                    candidates=depth,
                    embedding_column=slot.column,
                ),
                corpus_ids,
            )
            for query_id, text, embedding in zip(query_ids, texts, embeddings, strict=True)
        }
    finally:
        user.delete()
        group.delete()
    return {**scores_compute(runs, dataset.qrels, k=k), "mode": mode, "model": slot.model_id}


def _unit(vector: Sequence[float]) -> list[float]:
    norm = math.sqrt(sum(value * value for value in vector)) or 1.0
    return [value / norm for value in vector]


def dataset_evaluate_whole_passages(
    *, dataset: Dataset, k: int = 10, model: str = inference.EMBEDDING_MODEL
) -> dict[str, float | int | str]:
    """The outside baseline the product's dense retrieval must not fall below: each corpus entry (its title
    and text) embedded once, whole, by the same model (cut where the model stops reading), and ranked by
    cosine similarity to the query. No chunking, no database: what anyone gets from the model alone."""
    entries = dataset.corpus
    passages: list[list[float]] = []
    for start in range(0, len(entries), QUERY_EMBED_BATCH):
        batch = [
            f"{entry.title}\n{entry.text}".strip() or entry.id
            for entry in entries[start : start + QUERY_EMBED_BATCH]
        ]
        passages.extend(_unit(vector) for vector in embed_with_retries(batch, model=model, truncate=True))
    query_ids = [q for q in dataset.qrels if q in dataset.queries]
    queries = _embed_queries([dataset.queries[q] for q in query_ids], model=model)
    depth = max(k, RECALL_DEPTH)
    runs: dict[str, list[str]] = {}
    for query_id, query in zip(query_ids, queries, strict=True):
        unit = _unit(query)
        scores = [sum(map(operator.mul, unit, passage)) for passage in passages]
        best = heapq.nlargest(depth, range(len(entries)), key=scores.__getitem__)
        runs[query_id] = [entries[index].id for index in best]
    return {**scores_compute(runs, dataset.qrels, k=k), "mode": "baseline", "model": model}
