"""The answer cache on the real PostgreSQL and Redis: the key, what is kept and for how big; the embedding
cache's bound. (Reuse through the ask page and the widget: tests/search/test_shared_answers.py.)"""

from __future__ import annotations

from typing import Any

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext

from ingest.models import Chunk, Document
from search import embedding_cache
from search.answer_cache import (
    answer_cache_get,
    answer_cache_set,
    answer_cacheable,
    answer_key,
    documents_fingerprint,
    question_normalised,
)
from search.answers import MODEL_UNAVAILABLE_NOTE
from search.services import NOT_FOUND_ANSWER, AnswerEvent
from tests.search.answer_scripts import ANSWER, LAPTOPS, QUESTION, run
from tests.search.factories import add_chunks, make_collection, make_document

pytestmark = pytest.mark.django_db


@pytest.fixture
def laptops() -> Any:
    document = make_document(title="Returns policy")
    add_chunks(document, LAPTOPS, heading_path="Returns > Laptops", page=2)
    return document


def test_a_question_is_normalised_for_its_case_spacing_and_punctuation_but_keeps_its_tokens() -> None:
    assert question_normalised("  How LONG can I return a laptop?? ") == "how long can i return a laptop"
    assert question_normalised("How long can I return a “laptop”!") == "how long can i return a laptop"
    assert (
        question_normalised("What does bzip2 -s do with .bz2 files?")
        == "what does bzip2 -s do with .bz2 files"
    )
    assert question_normalised("Is C++ allowed?") != question_normalised("Is C allowed?")
    assert question_normalised("?!") == ""


def test_the_key_changes_with_a_new_generation_or_an_added_deleted_renamed_or_moved_document(
    laptops: Document,
) -> None:
    collection_id = laptops.collection_id

    def key() -> str:
        return run(lambda: answer_key(collection_ids=[collection_id], question=QUESTION))

    keys = [key()]
    assert (
        run(lambda: answer_key(collection_ids=[collection_id], question="how long can I return a laptop"))
        == keys[0]
    )
    # A re-ingest makes the next generation live.
    Chunk.objects.filter(document=laptops).update(generation=2)
    Document.objects.filter(id=laptops.id).update(generation=2)
    keys.append(key())
    other = make_document(collection=laptops.collection, title="Old policy")
    keys.append(key())
    other.delete()
    keys.append(key())
    Document.objects.filter(id=laptops.id).update(title="Returns")
    keys.append(key())
    # Progress and status change all through an ingestion and say nothing of what an answer holds.
    Document.objects.filter(id=laptops.id).update(progress=40, status=Document.Status.EMBEDDING)
    assert key() == keys[-1]
    elsewhere = make_document(title="Elsewhere")
    Document.objects.filter(id=elsewhere.id).update(collection_id=collection_id)
    keys.append(key())
    # Who may read what is part of the key: the same question over another set of collections.
    keys.append(
        run(lambda: answer_key(collection_ids=[collection_id, elsewhere.collection_id], question=QUESTION))
    )
    assert len(set(keys)) == 7


def test_the_documents_part_of_the_key_reads_one_row_per_collection_not_the_documents(
    laptops: Document,
) -> None:
    """Its cost does not grow with the documents: no scan of the document table, one counter a collection."""
    for n in range(3):
        make_document(collection=laptops.collection, title=f"Policy {n}")
    with CaptureQueriesContext(connection) as queries:
        fingerprint = documents_fingerprint(collection_ids=[laptops.collection_id, laptops.collection_id])
    assert len(queries) == 1
    assert Document._meta.db_table not in queries[0]["sql"]
    assert fingerprint.startswith(f"{laptops.collection_id}:")
    # A collection that never held a document has no counter yet, and a part of its own.
    empty = make_collection()
    assert documents_fingerprint(collection_ids=[empty.id]) == f"{empty.id}:0"


def test_only_a_finished_checked_answer_is_kept() -> None:
    busy = AnswerEvent(kind="busy", text="busy", retry_after=1.0)
    cut_short = AnswerEvent(
        kind="done", text=f"*{MODEL_UNAVAILABLE_NOTE}*\n\nWithin 30 days [1].", origin="extract"
    )
    refusal = AnswerEvent(kind="done", text=NOT_FOUND_ANSWER, refused=True, origin="refusal")
    assert answer_cacheable(events=list(ANSWER))
    assert answer_cacheable(events=[AnswerEvent(kind="sources"), refusal])
    assert not answer_cacheable(events=[*ANSWER[:2], cut_short])
    assert not answer_cacheable(events=[*ANSWER[:2], busy, ANSWER[-1]])
    assert not answer_cacheable(events=[ANSWER[0], AnswerEvent(kind="error", text="The model failed.")])


def test_a_kept_answer_comes_back_without_its_tokens_and_one_past_the_size_bound_is_not_kept(
    settings: Any,
) -> None:
    key = "test-" + QUESTION

    async def keep_and_read() -> tuple[Any, Any]:
        kept = await answer_cache_set(key, events=list(ANSWER))
        return kept, await answer_cache_get(key)

    kept, read = run(keep_and_read)
    assert read is not None and kept is not None and read.written_at == kept.written_at
    assert [event.kind for event in read.events] == ["sources", "extract", "done"]
    assert read.events == (ANSWER[0], ANSWER[1], ANSWER[-1])

    settings.RAGSITE_ANSWER_CACHE_MAX_BYTES = 200
    assert run(lambda: answer_cache_set("test-too-large", events=list(ANSWER))) is None
    assert run(lambda: answer_cache_get("test-too-large")) is None


def test_the_embedding_cache_of_a_process_keeps_at_most_its_bound(settings: Any) -> None:
    settings.RAGSITE_EMBED_CACHE_LOCAL_ENTRIES = 2
    texts = [f"question {number}" for number in range(5)]

    async def store() -> list[list[float] | None]:
        await embedding_cache.embeddings_store(
            model="m", texts=texts, vectors=[[float(n), 0.5] for n in range(5)]
        )
        asked = ["question  0", "question 4", "other"]
        return await embedding_cache.embeddings_cached(model="m", texts=asked)

    # From Redis (spacing normalised) and from this process; nothing for a text never embedded.
    assert run(store) == [[0.0, 0.5], [4.0, 0.5], None]
    assert len(embedding_cache._local) <= 2


def test_embedding_cache_lookups_are_counted_as_hits_and_misses() -> None:
    from prometheus_client import REGISTRY

    def count(result: str) -> float:
        value = REGISTRY.get_sample_value("ragsite_embedding_cache_lookups_total", {"result": result})
        return value or 0.0

    async def look_up() -> None:
        await embedding_cache.embeddings_store(model="m", texts=["counted"], vectors=[[1.0, 0.0]])
        await embedding_cache.embeddings_cached(model="m", texts=["counted", "never embedded", "nor this"])

    hits, misses = count("hit"), count("miss")
    run(look_up)
    assert (count("hit") - hits, count("miss") - misses) == (1, 2)
