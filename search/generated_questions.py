"""Domain adaptation with the product's own parts (issue 17 item 3): questions for an organisation's chunks.

The chat model writes up to three questions a chunk answers (doc2query, Nogueira et al. 2019; InPars,
Bonifacio et al. 2022, few-shot). A question is **kept** only when the product's own retrieval, searching the
chunk's collection for it, puts the chunk among its first `CONSISTENCY_TOP_K` results: the round-trip
consistency filter of Alberti et al. (ACL 2019) and Promptagator (Dai et al., ICLR 2023); doc2query--
(Gospodinov et al., ECIR 2023) shows that unfiltered generated questions add noise that filtering removes.
Kept questions expand the chunk's full-text vector (`Chunk.expansion`, weight C) and become fine-tuning pairs
(`tuning.training_data`). Questions are made from the passage alone, never from anyone's queries.
"""

from __future__ import annotations

import re
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

from asgiref.sync import async_to_sync
from django.db.models import Exists, F, OuterRef, QuerySet

from ingest.models import Chunk
from ingest.services import chunks_expansion_clear, chunks_expansion_set
from ops import inference
from retrievers.selectors import EmbeddingSlot, embedding_slot_active
from search.models import GeneratedQuestion
from search.selectors import chunk_search

MAX_QUESTIONS = 3
# A question is kept when its chunk is among this many results. Not 1: a passage cut into chunks, or a
# document that says the same thing twice, has neighbours that may fairly come first; the filter is there to
# drop questions that find something else entirely (vague or off the passage), not to demand a unique answer.
CONSISTENCY_TOP_K = 3
PASSAGE_CHARS = 2000
MAX_TOKENS = 120
MIN_WORDS, MAX_WORDS = 3, 40
RETRIES = 5


SYSTEM_PROMPT = (
    "You write the questions a reader would ask that the given passage answers. Write one to three short, "
    "self-contained questions, one per line, each ending with a question mark. Use only the passage. "
    "Write nothing else."
)
# One made-up example (no evaluation set's text), so that the small model sees the reply's form.
EXAMPLE_PASSAGE = (
    "Loans\n\nThe library lends up to eight books at a time, for three weeks. A loan can be renewed twice "
    "online, unless another reader has reserved the book. Overdue books cost 20 pence a day."
)
EXAMPLE_REPLY = (
    "How many books can I borrow from the library at once?\n"
    "Can I renew a library loan online?\n"
    "What is the fine for an overdue book?"
)

_LEADER = re.compile(r"^\s*(?:[-*•]+|\d+\s*[.):]|q(?:uestion)?\s*\d*\s*[.):])\s*", re.IGNORECASE)


def questions_prompt(*, heading: str, text: str) -> list[dict[str, str]]:
    """The chat messages asking for the questions one passage answers (few-shot, one example)."""
    passage = f"{heading}\n\n{text}" if heading else text
    return [
        {"role": "system", "content": SYSTEM_PROMPT},
        {"role": "user", "content": f"Passage:\n{EXAMPLE_PASSAGE}"},
        {"role": "assistant", "content": EXAMPLE_REPLY},
        {"role": "user", "content": f"Passage:\n{passage[:PASSAGE_CHARS]}"},
    ]


def questions_parse(reply: str, *, limit: int = MAX_QUESTIONS) -> list[str]:
    """The distinct questions of a reply, in order: one per line, numbering and bullets removed, each cut
    after its first question mark; lines without one, and questions too short or long to be real, dropped."""
    questions: list[str] = []
    seen: set[str] = set()
    for line in reply.splitlines():
        line = _LEADER.sub("", line).strip().strip("\"'*").strip()
        if "?" not in line:
            continue
        question = line[: line.index("?") + 1].strip()
        if not MIN_WORDS <= len(question.split()) <= MAX_WORDS or question.casefold() in seen:
            continue
        seen.add(question.casefold())
        questions.append(question)
        if len(questions) == limit:
            break
    return questions


def chunks_pending(*, model: str, collection_ids: Sequence[int] | None = None) -> QuerySet[Chunk]:
    """Live chunks with no questions from `model` yet, round-robin over documents: every document's first
    chunk (in document order), then every second chunk, and so on, so that a budget covers many documents."""
    chunks = Chunk.objects.filter(generation=F("document__generation")).exclude(text="")
    if collection_ids is not None:
        chunks = chunks.filter(collection_id__in=collection_ids)
    done = GeneratedQuestion.objects.filter(chunk_id=OuterRef("id"), model=model)
    return chunks.filter(~Exists(done)).order_by("ordinal", "document_id", "id")


def chunk_rank_for(
    *, chunk: Chunk, question: str, embedding: Sequence[float], slot: EmbeddingSlot
) -> int | None:
    """The chunk's place (1 = first) among the first `CONSISTENCY_TOP_K` hybrid results for `question` in
    its own collection, as the product searches; None when it is not among them."""
    results = chunk_search(
        collection_ids=[chunk.collection_id],
        query=question,
        query_embedding=embedding,
        k=CONSISTENCY_TOP_K,
        mode="hybrid",
        embedding_column=slot.column,
    )
    return next((n for n, result in enumerate(results, 1) if result.chunk_id == chunk.id), None)


def chunk_questions_generate(*, chunk: Chunk, model: str, slot: EmbeddingSlot) -> list[GeneratedQuestion]:
    """Ask the chat model for `chunk`'s questions, filter them by retrieval and store them all (a reply with
    no question stores one empty, rejected row, so the chunk counts as done)."""
    reply = inference.with_retries(
        lambda: async_to_sync(inference.chat_complete)(
            messages=questions_prompt(heading=chunk.heading_path, text=chunk.text),
            max_tokens=MAX_TOKENS,
            temperature=0.0,
        ),
        attempts=RETRIES,
    )
    questions = questions_parse(reply)
    embeddings = (
        inference.with_retries(lambda: inference.embed(questions, model=slot.model_id), attempts=RETRIES)
        if questions
        else []
    )
    rows = []
    for question, embedding in zip(questions, embeddings, strict=True):
        rank = chunk_rank_for(chunk=chunk, question=question, embedding=embedding, slot=slot)
        rows.append(
            GeneratedQuestion(chunk=chunk, model=model, text=question, kept=rank is not None, rank=rank)
        )
    return GeneratedQuestion.objects.bulk_create(
        rows or [GeneratedQuestion(chunk=chunk, model=model, text="", kept=False, rank=None)]
    )


@dataclass
class GenerationProgress:
    """Where a `questions_generate` run stands; passed to its `on_progress` after each chunk."""

    chunks_total: int
    chunks_done: int = 0
    questions: int = 0
    kept: int = 0
    chunks_with_kept: int = 0
    seconds: float = 0.0
    model: str = ""
    stopped_by: str = ""
    ranks: dict[int, int] = field(default_factory=dict)

    @property
    def kept_rate(self) -> float:
        return self.kept / self.questions if self.questions else 0.0

    @property
    def seconds_per_chunk(self) -> float:
        return self.seconds / self.chunks_done if self.chunks_done else 0.0

    def as_dict(self) -> dict[str, object]:
        return {
            "model": self.model,
            "chunks_done": self.chunks_done,
            "chunks_total": self.chunks_total,
            "questions": self.questions,
            "kept": self.kept,
            "kept_rate": round(self.kept_rate, 3),
            "chunks_with_kept": self.chunks_with_kept,
            "seconds": round(self.seconds, 1),
            "s_per_chunk": round(self.seconds_per_chunk, 2),
            "kept_by_rank": {str(rank): count for rank, count in sorted(self.ranks.items())},
            "stopped_by": self.stopped_by,
        }


def questions_generate(
    *,
    collection_ids: Sequence[int] | None = None,
    budget: int,
    seconds: float | None = None,
    expand: bool = True,
    on_progress: Callable[[GenerationProgress], None] | None = None,
) -> GenerationProgress:
    """Generate and filter questions for up to `budget` pending chunks (and for at most `seconds`), one chunk
    at a time; with `expand`, each chunk's kept questions are written into its expansion at once.

    Resumable: chunks that already have questions from the served chat model are skipped.
    """
    model = async_to_sync(inference.chat_model_name)()
    slot = embedding_slot_active()
    pending = chunks_pending(model=model, collection_ids=collection_ids)
    progress = GenerationProgress(chunks_total=min(budget, pending.count()), model=model)
    started = time.monotonic()
    for chunk in pending.only("id", "collection_id", "heading_path", "text")[:budget]:
        if seconds is not None and time.monotonic() - started >= seconds:
            progress.stopped_by = "seconds"
            break
        rows = chunk_questions_generate(chunk=chunk, model=model, slot=slot)
        kept = [row for row in rows if row.kept]
        if expand and kept:
            chunks_expansion_set(expansions={chunk.id: expansion_text(chunk_id=chunk.id)})
        progress.chunks_done += 1
        progress.questions += sum(1 for row in rows if row.text)
        progress.kept += len(kept)
        progress.chunks_with_kept += bool(kept)
        for row in kept:
            assert row.rank is not None
            progress.ranks[row.rank] = progress.ranks.get(row.rank, 0) + 1
        progress.seconds = time.monotonic() - started
        if on_progress is not None:
            on_progress(progress)
    else:
        progress.stopped_by = "budget" if progress.chunks_done == budget else "done"
    progress.seconds = time.monotonic() - started
    return progress


def expansion_text(*, chunk_id: int) -> str:
    """A chunk's expansion: its kept questions (from every chat model), one per line, oldest first."""
    questions = GeneratedQuestion.objects.filter(chunk_id=chunk_id, kept=True).order_by("id")
    return "\n".join(dict.fromkeys(questions.values_list("text", flat=True)))


def expansions_apply(*, collection_ids: Sequence[int], enabled: bool = True) -> int:
    """Write every live chunk's expansion from its kept questions (`enabled`) or empty them all (not);
    how many chunks changed. Evaluation compares the two on one loaded corpus."""
    if not enabled:
        return chunks_expansion_clear(collection_ids=collection_ids)
    chunk_ids = (
        GeneratedQuestion.objects.filter(kept=True, chunk__collection_id__in=collection_ids)
        .values_list("chunk_id", flat=True)
        .distinct()
    )
    return chunks_expansion_set(
        expansions={chunk_id: expansion_text(chunk_id=chunk_id) for chunk_id in chunk_ids}
    )
