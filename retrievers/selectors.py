"""Reads: which retriever (model id and vector column) questions and new chunks use, and the registry.

Below ingest and search, which read it; it imports only the inference client's model name (`ops.inference`).
The switch workflow that writes the registry is the `tuning` app, at the top.
"""

from __future__ import annotations

from dataclasses import dataclass

from django.db import connection
from django.db.models import QuerySet

from ops.inference import EMBEDDING_MODEL

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
    """What questions are embedded with and retrieval reads: the active retriever's model and column.

    Read for every question, two or three times (its cache key, its stream's, its retrieval): written in SQL,
    the newest active first as the model orders them, it costs 0.10 ms of CPU where the ORM's query cost 0.35.
    """
    with connection.cursor() as cursor:
        cursor.execute(
            f"SELECT name, slot FROM {Retriever._meta.db_table} WHERE status = %s"
            " ORDER BY created_at DESC, id DESC LIMIT 1",
            [Retriever.Status.ACTIVE],
        )
        row = cursor.fetchone()
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
