"""Reads for asking: which collections a user may read, retrieval of passages, one passage."""

from __future__ import annotations

import time
from collections.abc import Sequence
from datetime import datetime
from typing import Any

from django.db.models import QuerySet, Sum
from django.http import Http404

from ingest.models import Chunk, Collection
from search.models import Feedback, LexemeFrequency
from search.retrieval import (
    DEFAULT_CANDIDATES,
    DEFAULT_DENSE_WEIGHT,
    DEFAULT_EF_SEARCH,
    MODES,
    Mode,
    RetrievedChunk,
    run_search,
)

__all__ = [
    "RetrievedChunk",
    "chunk_get_for_user",
    "chunk_search",
    "collection_ids_readable_by",
    "feedback_list",
    "lexeme_frequencies",
]


def collection_ids_readable_by(*, user: Any) -> list[int]:
    """Superusers read every collection; others those sharing a group with them; anonymous users none."""
    if user is None or not user.is_authenticated or not user.is_active:
        return []
    collections = Collection.objects.all()
    if not user.is_superuser:
        collections = collections.filter(groups__user=user).distinct()
    return sorted(collections.values_list("id", flat=True))


def chunk_search(
    *,
    collection_ids: Sequence[int],
    query: str,
    query_embedding: Sequence[float] | None,
    k: int = 10,
    mode: str = "hybrid",
    dense_weight: float = DEFAULT_DENSE_WEIGHT,
    candidates: int = DEFAULT_CANDIDATES,
    ef_search: int = DEFAULT_EF_SEARCH,
    embedding_column: str = "embedding",
) -> list[RetrievedChunk]:
    """The k best live passages of the given collections, best first, in one SQL statement.

    `collection_ids` must come from `collection_ids_readable_by`: the filter is applied inside the SQL.
    `keyword` needs no embedding; `dense` and `hybrid` need the query's embedding, made by the model whose
    vectors `embedding_column` holds (`retrievers.selectors.embedding_slot_active` gives both).
    """
    if mode not in MODES:
        raise ValueError(f"unknown retrieval mode {mode!r}; expected one of {', '.join(MODES)}")
    if k < 1:
        raise ValueError("k must be at least 1")
    if not 0 <= dense_weight <= 1:
        raise ValueError("dense_weight must be between 0 and 1")
    if mode != "keyword" and query_embedding is None:
        raise ValueError(f"{mode} retrieval needs the query's embedding")
    if not collection_ids:
        return []
    search_mode: Mode = mode  # type: ignore[assignment]
    return run_search(
        collections_in_all=_collections_counted(),
        collection_ids=collection_ids,
        query=query,
        query_embedding=query_embedding,
        k=k,
        mode=search_mode,
        dense_weight=dense_weight,
        candidates=candidates,
        ef_search=ef_search,
        embedding_column=embedding_column,
    )


# How many collections exist, counted at most this often per process: the count only chooses a plan for
# run_search (a broad or a narrow search), so a minute-old count costs at worst a few milliseconds.
COLLECTIONS_COUNT_TTL_S = 60.0
_collections_count: tuple[float, int] | None = None


def _collections_counted() -> int:
    global _collections_count
    now = time.monotonic()
    if _collections_count is None or now - _collections_count[0] > COLLECTIONS_COUNT_TTL_S:
        _collections_count = (now, Collection.objects.count())
    return _collections_count[1]


def chunk_get_for_user(*, user: Any, chunk_id: int) -> Chunk:
    """The chunk, with its document and collection, if `user` may read its collection; else Http404."""
    chunk = (
        Chunk.objects.select_related("document", "collection")
        .filter(id=chunk_id, collection_id__in=collection_ids_readable_by(user=user))
        .first()
    )
    if chunk is None:
        raise Http404("No such passage.")
    return chunk


def feedback_list(*, rating: str | None = None, since: datetime | None = None) -> QuerySet[Feedback]:
    """Feedback on answers, oldest first, for export (an operator's tool: no per-user filter)."""
    feedback = Feedback.objects.order_by("created_at", "id")
    if rating is not None:
        feedback = feedback.filter(rating=rating)
    if since is not None:
        feedback = feedback.filter(updated_at__gte=since)
    return feedback


def lexeme_frequencies(
    *, lexemes: Sequence[str], collection_ids: Sequence[int]
) -> tuple[dict[str, int], int]:
    """How many chunks of `collection_ids` hold each of `lexemes` (absent ones are left out), and how many
    chunks they have: the document frequencies keyword retrieval weighs the same search's words by."""
    wanted = set(lexemes) | {LexemeFrequency.ALL_CHUNKS}
    counts = {
        lexeme: int(held)
        for lexeme, held in LexemeFrequency.objects.filter(
            lexeme__in=wanted, collection_id__in=list(collection_ids)
        )
        .values("lexeme")
        .annotate(held=Sum("chunks"))
        .values_list("lexeme", "held")
    }
    return counts, int(counts.pop(LexemeFrequency.ALL_CHUNKS, 0))
