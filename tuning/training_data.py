"""Reads: (anchor, positive) pairs from the organisation's own chunks and rated answers, for training/.

It reads search's feedback, so it sits above search with the retriever workflow (the `tuning` app);
`retrievers.selectors` and `retrievers.slots`, which say which vector slot is live, sit below ingest.
"""

from __future__ import annotations

from dataclasses import dataclass

from django.db.models import F

from ingest.models import Chunk
from search.management.commands.export_feedback import as_pairs
from search.models import GeneratedQuestion
from search.selectors import feedback_list


@dataclass(frozen=True)
class TrainingPair:
    """One (anchor, positive) pair for training/, and the unit its held-out split is decided by."""

    anchor: str
    positive: str
    source: str
    group: str


def training_pairs_list(*, collection_ids: list[int] | None = None) -> list[TrainingPair]:
    """Pairs from the organisation's own data: heading path -> the live chunk's text, a kept generated
    question -> its live chunk's text (`manage.py generate_questions`), and question -> each passage a
    helpful answer cited (thumbs up). Chunks and generated questions group by document, feedback by itself."""
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
    generated = GeneratedQuestion.objects.filter(
        kept=True, chunk__generation=F("chunk__document__generation")
    ).exclude(text="")
    if collection_ids:
        generated = generated.filter(chunk__collection_id__in=collection_ids)
    pairs += [
        TrainingPair(
            anchor=question, positive=text, source=f"generated:{question_id}", group=f"document:{document_id}"
        )
        for question_id, document_id, question, text in generated.order_by("id").values_list(
            "id", "chunk__document_id", "text", "chunk__text"
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
