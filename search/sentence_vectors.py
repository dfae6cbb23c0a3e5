"""Sentence vectors made ahead of questions: what lets the extractive answer score by meaning within 50 ms.

`sentence_vectors_fill` (run by search.tasks in the background, on the re-embedding queue) embeds the
quotable sentences of every live chunk that has none yet for the active embedding model;
`sentence_similarities` reads them back for the passages of one answer and scores them against the question.
A sentence without a stored vector (its chunk is newer than the last fill) is embedded while the asker waits,
as before.
"""

from __future__ import annotations

import logging
import math
import operator
import struct
import time
from collections.abc import Sequence

from django.db import connection
from django.db.models import Exists, F, OuterRef

from ingest.models import Chunk, Document
from ops import inference
from retrievers.selectors import embedding_slot_active
from search import answers
from search.models import ChunkSentences

logger = logging.getLogger(__name__)

# Chunks read and embedded per step: their sentences (about ten each) make one request of a few hundred
# inputs, under the inference API's INFERENCE_EMBEDDING_MAX_INPUTS (256) only when cut, which `_embed` does.
FILL_CHUNKS_PER_STEP = 32
MAX_INPUTS_PER_REQUEST = 256
# Arbitrary 32-bit namespace and key of the advisory lock that keeps one fill running at a time.
_LOCK = (0x5E7E, 1)


def _unit(vector: Sequence[float]) -> list[float]:
    norm = math.sqrt(sum(value * value for value in vector))
    return [value / norm for value in vector] if norm else list(vector)


def _embed(texts: list[str], *, model: str) -> list[list[float]]:
    vectors: list[list[float]] = []
    for start in range(0, len(texts), MAX_INPUTS_PER_REQUEST):
        batch = texts[start : start + MAX_INPUTS_PER_REQUEST]
        vectors.extend(_unit(vector) for vector in inference.embed(batch, model=model, truncate=True))
    return vectors


def pack(vectors: Sequence[Sequence[float]]) -> bytes:
    """Unit vectors as little-endian float16, one after another."""
    return b"".join(struct.pack(f"<{len(vector)}e", *vector) for vector in vectors)


def unpack(data: bytes, count: int) -> list[tuple[float, ...]]:
    if not count:
        return []
    dimensions = len(data) // 2 // count
    return list(struct.iter_unpack(f"<{dimensions}e", data)) if dimensions else []


def _pending(model_id: str) -> list[tuple[int, str]]:
    """Live chunks of ready documents without sentence vectors for `model_id`, oldest first."""
    done = ChunkSentences.objects.filter(chunk=OuterRef("pk"), model_id=model_id)
    return list(
        Chunk.objects.filter(document__status=Document.Status.READY, generation=F("document__generation"))
        .filter(~Exists(done))
        .order_by("id")
        .values_list("id", "text")[:FILL_CHUNKS_PER_STEP]
    )


def sentence_vectors_fill_step(*, model_id: str) -> int:
    """Embed the sentences of up to FILL_CHUNKS_PER_STEP pending chunks; how many chunks were done."""
    pending = _pending(model_id)
    if not pending:
        return 0
    spans = {chunk_id: answers.quotable_sentences(text) for chunk_id, text in pending}
    texts = [answers.embed_input(sentence.reading) for chunk_id, _ in pending for sentence in spans[chunk_id]]
    vectors = _embed(texts, model=model_id) if texts else []
    rows = []
    offset = 0
    for chunk_id, _ in pending:
        count = len(spans[chunk_id])
        rows.append(
            ChunkSentences(
                chunk_id=chunk_id,
                model_id=model_id,
                starts=[sentence.span.start for sentence in spans[chunk_id]],
                vectors=pack(vectors[offset : offset + count]),
            )
        )
        offset += count
    # A chunk deleted meanwhile (its document re-ingested) makes its row fail the foreign key at commit:
    # such rows are left out by writing only those whose chunk is still there.
    alive = set(Chunk.objects.filter(id__in=[row.chunk_id for row in rows]).values_list("id", flat=True))
    ChunkSentences.objects.bulk_create([row for row in rows if row.chunk_id in alive], ignore_conflicts=True)
    return len(pending)


def sentence_vectors_fill(*, budget_s: float) -> int:
    """Fill pending chunks for the active model until none is left or `budget_s` has passed; chunks done.

    One fill runs at a time (a session advisory lock, freed if the worker dies); a second returns 0 at once.
    """
    with connection.cursor() as cursor:
        cursor.execute("SELECT pg_try_advisory_lock(%s, %s)", list(_LOCK))
        if not cursor.fetchone()[0]:
            return 0
    try:
        model_id = embedding_slot_active().model_id
        deadline = time.monotonic() + budget_s
        done = 0
        while time.monotonic() < deadline:
            step = sentence_vectors_fill_step(model_id=model_id)
            if not step:
                break
            done += step
        if done:
            logger.info("embedded the sentences of %d chunks for %s", done, model_id)
        return done
    finally:
        with connection.cursor() as cursor:
            cursor.execute("SELECT pg_advisory_unlock(%s, %s)", list(_LOCK))


def sentence_similarities(
    *, chunk_ids: Sequence[int], model_id: str, query_embedding: Sequence[float]
) -> dict[tuple[int, int], float]:
    """The cosine of each stored sentence of these chunks to the question, by (chunk id, sentence start)."""
    query = _unit(query_embedding)
    if not chunk_ids or not any(query):
        return {}
    similarities: dict[tuple[int, int], float] = {}
    rows = ChunkSentences.objects.filter(chunk_id__in=list(chunk_ids), model_id=model_id).values_list(
        "chunk_id", "starts", "vectors"
    )
    for chunk_id, starts, vectors in rows:
        if not starts:
            continue
        stored = unpack(bytes(vectors), len(starts))
        if len(stored) != len(starts) or any(len(vector) != len(query) for vector in stored):
            continue  # written by another model of the same name: embedded again when asked
        for start, vector in zip(starts, stored, strict=True):
            similarities[(chunk_id, start)] = sum(map(operator.mul, vector, query))
    return similarities
