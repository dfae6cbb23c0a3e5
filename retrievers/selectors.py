"""Reads: which retriever (model id and vector column) questions and new chunks use, and the registry."""

from __future__ import annotations

from dataclasses import dataclass

from django.db.models import QuerySet

from ingest.models import Chunk
from search.inference import EMBEDDING_MODEL

from .models import SLOT_COLUMNS, Retriever

BASE_SLOT = "a"


@dataclass(frozen=True)
class EmbeddingSlot:
    """A model id of the inference API and the Chunk column that holds its vectors."""

    model_id: str
    column: str


# Before any retriever is registered, the base model is active in slot a.
BASE_EMBEDDING_SLOT = EmbeddingSlot(model_id=EMBEDDING_MODEL, column=SLOT_COLUMNS[BASE_SLOT])


def embedding_slot_active() -> EmbeddingSlot:
    """What questions are embedded with and retrieval reads: the active retriever's model and column."""
    row = Retriever.objects.filter(status=Retriever.Status.ACTIVE).values_list("name", "slot").first()
    if row is None or not row[1]:
        return BASE_EMBEDDING_SLOT
    return EmbeddingSlot(model_id=row[0], column=SLOT_COLUMNS[row[1]])


def embedding_slot_of(*, retriever: Retriever) -> EmbeddingSlot:
    if retriever.column is None:
        raise ValueError(f"{retriever} owns no vector slot")
    return EmbeddingSlot(model_id=retriever.name, column=retriever.column)


def retriever_list() -> QuerySet[Retriever]:
    return Retriever.objects.order_by("created_at", "id")


def retriever_get(*, name: str) -> Retriever | None:
    """A retriever by name, or by id when `name` is a number."""
    retrievers = Retriever.objects.all()
    if name.isdigit():
        return retrievers.filter(id=int(name)).first()
    return retrievers.filter(name=name).first()


def retriever_building() -> Retriever | None:
    """The candidate being embedded or evaluated, if any."""
    building = [Retriever.Status.EMBEDDING, Retriever.Status.EVALUATING]
    return Retriever.objects.filter(status__in=building).first()


def chunks_missing_slot_count(*, column: str, collection_id: int | None = None) -> int:
    """Chunks whose vector in `column` is not written yet."""
    chunks = Chunk.objects.filter(**{f"{column}__isnull": True})
    if collection_id is not None:
        chunks = chunks.filter(collection_id=collection_id)
    return chunks.count()


@dataclass(frozen=True)
class TrainingPair:
    """One (anchor, positive) pair for training/, and the unit its held-out split is decided by."""

    anchor: str
    positive: str
    source: str
    group: str


def training_pairs_list(*, collection_ids: list[int] | None = None) -> list[TrainingPair]:
    """Pairs from the organisation's own data: heading path -> the live chunk's text, and question -> each
    passage a helpful answer cited (thumbs up). Chunks group by document, feedback by itself."""
    from django.db.models import F

    from search.management.commands.export_feedback import as_pairs
    from search.selectors import feedback_list

    chunks = Chunk.objects.filter(generation=F("document__generation")).exclude(heading_path="")
    if collection_ids:
        chunks = chunks.filter(collection_id__in=collection_ids)
    pairs = [
        TrainingPair(
            anchor=heading, positive=text, source=f"chunk:{chunk_id}", group=f"document:{document_id}"
        )
        for chunk_id, document_id, heading, text in chunks.order_by("id").values_list(
            "id", "document_id", "heading_path", "text"
        )
        if text.strip()
    ]
    for feedback in feedback_list(rating="up"):
        pairs += [
            TrainingPair(
                anchor=row["anchor"], positive=row["positive"], source=row["source"], group=row["source"]
            )
            for row in as_pairs(feedback)
        ]
    return pairs
