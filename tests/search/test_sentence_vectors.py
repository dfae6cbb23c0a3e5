"""Sentence vectors made ahead of questions: filled once per live chunk, read back by the extract."""

from __future__ import annotations

import math
from typing import Any

import pytest
from django.db import connection

from ingest.models import Chunk, Document
from search import answers, sentence_vectors, tasks
from search.models import ChunkSentences
from tests.search.factories import add_chunks, make_document
from tests.search.fake_inference import EMBEDDING_MODEL, Fail, FakeInference, embed_text
from tests.search.test_services import REFUNDS, collect

pytestmark = pytest.mark.django_db

TWO_SENTENCES = "Laptops are replaced every four years. Phones are replaced every two years."


def test_a_fill_embeds_each_live_chunks_quotable_sentences_once(fake_inference: FakeInference) -> None:
    document = make_document()
    chunk, short = add_chunks(document, TWO_SENTENCES, "See above.")

    assert sentence_vectors.sentence_vectors_fill(budget_s=60) == 2
    assert sorted(fake_inference.embedding_inputs) == [
        "Laptops are replaced every four years.",
        "Phones are replaced every two years.",
    ]
    row = ChunkSentences.objects.get(chunk=chunk, model_id=EMBEDDING_MODEL)
    assert row.starts == [0, TWO_SENTENCES.index("Phones")]
    # A chunk with nothing worth quoting is marked done, with no sentences, so it is not read again.
    assert ChunkSentences.objects.get(chunk=short).starts == []

    fake_inference.embedding_inputs.clear()
    assert sentence_vectors.sentence_vectors_fill(budget_s=60) == 0
    assert fake_inference.embedding_inputs == []


def test_only_ready_documents_live_generation_is_filled(fake_inference: FakeInference) -> None:
    pending = make_document(status=Document.Status.EMBEDDING)
    add_chunks(pending, TWO_SENTENCES)
    ready = make_document()
    (old,) = add_chunks(ready, "The old text of the policy says ten days.")
    Document.objects.filter(id=ready.id).update(generation=2)
    ready.refresh_from_db()
    (live,) = add_chunks(ready, TWO_SENTENCES)

    assert sentence_vectors.sentence_vectors_fill(budget_s=60) == 1
    assert list(ChunkSentences.objects.values_list("chunk_id", flat=True)) == [live.id]
    assert old.id != live.id


def test_stored_similarities_are_the_cosines_of_the_sentences_to_the_question(
    fake_inference: FakeInference,
) -> None:
    (chunk,) = add_chunks(make_document(), TWO_SENTENCES)
    sentence_vectors.sentence_vectors_fill(budget_s=60)
    question = embed_text("How often are laptops replaced?")

    similarities = sentence_vectors.sentence_similarities(
        chunk_ids=[chunk.id], model_id=EMBEDDING_MODEL, query_embedding=question
    )

    for sentence in answers.quotable_sentences(TWO_SENTENCES):
        expected = answers.cosine(question, embed_text(sentence.reading))
        # float16 storage moves a cosine by well under a thousandth.
        assert math.isclose(similarities[(chunk.id, sentence.span.start)], expected, abs_tol=1e-3)
    # Another model's question finds nothing stored: its sentences would be embedded when asked.
    assert (
        sentence_vectors.sentence_similarities(
            chunk_ids=[chunk.id], model_id="another-model", query_embedding=question
        )
        == {}
    )


def test_the_extract_reads_stored_vectors_instead_of_embedding_while_the_asker_waits(
    fake_inference: FakeInference,
) -> None:
    document = make_document(title="Returns policy")
    add_chunks(document, REFUNDS, heading_path="Returns > Laptops")
    question = "How long do I have to return a laptop?"
    live = collect(collection_ids=[document.collection_id], question=question)
    embedded_live = list(fake_inference.embedding_inputs)

    sentence_vectors.sentence_vectors_fill(budget_s=60)
    fake_inference.reset()
    stored = collect(collection_ids=[document.collection_id], question=question)

    assert REFUNDS in embedded_live  # before the fill, the extract embedded its sentence
    assert REFUNDS not in fake_inference.embedding_inputs
    extract = next(event for event in stored if event.kind == "extract")
    assert extract.text == next(event for event in live if event.kind == "extract").text


def test_a_deleted_chunk_takes_its_sentence_vectors_with_it(fake_inference: FakeInference) -> None:
    (chunk,) = add_chunks(make_document(), TWO_SENTENCES)
    sentence_vectors.sentence_vectors_fill(budget_s=60)

    Chunk.objects.filter(id=chunk.id).delete()
    with connection.cursor() as cursor:
        cursor.execute("SET CONSTRAINTS ALL IMMEDIATE")  # the test's transaction defers the cascade's check

    assert not ChunkSentences.objects.exists()


def test_the_task_leaves_chunks_pending_when_the_model_service_fails(
    fake_inference: FakeInference, caplog: Any
) -> None:
    add_chunks(make_document(), TWO_SENTENCES)
    fake_inference.embedding_script = [Fail(500)] * 3

    tasks.sentence_vectors_fill()

    assert not ChunkSentences.objects.exists()
    assert "sentence vectors not filled this time" in caplog.text
    fake_inference.embedding_script = []
    tasks.sentence_vectors_fill()
    assert ChunkSentences.objects.count() == 1


def test_one_fill_at_a_time(fake_inference: FakeInference) -> None:
    add_chunks(make_document(), TWO_SENTENCES)
    other = connection.copy()
    try:
        with other.cursor() as cursor:
            cursor.execute("SELECT pg_advisory_lock(%s, %s)", list(sentence_vectors._LOCK))
        # Another worker's fill holds the lock: this one returns at once and embeds nothing.
        assert sentence_vectors.sentence_vectors_fill(budget_s=60) == 0
        assert fake_inference.embedding_inputs == []
    finally:
        other.close()
