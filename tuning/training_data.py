"""Reads: (anchor, positive) pairs from the organisation's own chunks and rated answers, for training/.

It reads search's feedback, so it sits above search with the retriever workflow (the `tuning` app);
`retrievers.selectors` and `retrievers.slots`, which say which vector slot is live, sit below ingest.
"""

from __future__ import annotations

from collections.abc import Collection
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


# The kinds of pair. Which help depends on the organisation's data: on python-faq, whose titles are file
# paths, heading pairs turned a fine-tune's gain into a loss, while the kept generated questions alone helped
# on both public sets (docs/retrieval.md, "Domain adaptation").
PAIR_KINDS = ("heading", "generated", "feedback")


def training_pairs_list(
    *, collection_ids: list[int] | None = None, kinds: Collection[str] = PAIR_KINDS
) -> list[TrainingPair]:
    """Pairs from the organisation's own data, of the `kinds` asked for: heading path -> the live chunk's
    text ("heading"), a kept generated question -> its live chunk's text ("generated", `manage.py
    generate_questions`), and question -> each passage a helpful answer cited ("feedback", thumbs up).
    Chunks and generated questions group by document, feedback by itself."""
    pairs: list[TrainingPair] = []
    if "heading" in kinds:
        pairs += _heading_pairs(collection_ids)
    if "generated" in kinds:
        pairs += _generated_pairs(collection_ids)
    if "feedback" in kinds:
        for feedback in feedback_list(rating="up"):
            pairs += [
                TrainingPair(
                    anchor=row["anchor"], positive=row["positive"], source=row["source"], group=row["source"]
                )
                for row in as_pairs(feedback)
            ]
    return pairs


def _heading_pairs(collection_ids: list[int] | None) -> list[TrainingPair]:
    chunks = Chunk.objects.filter(generation=F("document__generation")).exclude(heading_path="")
    if collection_ids:
        chunks = chunks.filter(collection_id__in=collection_ids)
    return [
        TrainingPair(
            anchor=heading, positive=text, source=f"chunk:{chunk_id}", group=f"document:{document_id}"
        )
        for chunk_id, document_id, heading, text in chunks.order_by("id").values_list(
            "id", "document_id", "heading_path", "text"
        )
        if text.strip()
    ]


def _generated_pairs(collection_ids: list[int] | None) -> list[TrainingPair]:
    generated = GeneratedQuestion.objects.filter(
        kept=True, chunk__generation=F("chunk__document__generation")
    ).exclude(text="")
    if collection_ids:
        generated = generated.filter(chunk__collection_id__in=collection_ids)
    return [
        TrainingPair(
            anchor=question, positive=text, source=f"generated:{question_id}", group=f"document:{document_id}"
        )
        for question_id, document_id, question, text in generated.order_by("id").values_list(
            "id", "chunk__document_id", "text", "chunk__text"
        )
        if text.strip()
    ]
