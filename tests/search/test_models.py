"""LexemeFrequency: the chunk table's triggers keep the lexemes' document frequencies exact on every write;
CollectionDocumentsVersion: the document table's triggers move a collection's counter on every change."""

from __future__ import annotations

import pytest
from django.db import connection

from ingest.models import Chunk, Document
from ingest.services import document_delete, document_generation_activate, document_move
from search.models import CollectionDocumentsVersion, LexemeFrequency
from tests.search.factories import add_chunks, make_collection, make_document

pytestmark = pytest.mark.django_db


def per_collection() -> dict[tuple[int, str], int]:
    return {
        (c, lexeme): n
        for c, lexeme, n in LexemeFrequency.objects.values_list("collection_id", "lexeme", "chunks")
    }


def counted() -> dict[str, int]:
    """The counts summed over every collection, by lexeme."""
    summed: dict[str, int] = {}
    for (_, lexeme), chunks in per_collection().items():
        summed[lexeme] = summed.get(lexeme, 0) + chunks
    return summed


def recounted() -> dict[tuple[int, str], int]:
    """The frequencies counted afresh from the chunk table, per collection, as the table should hold them."""
    with connection.cursor() as cursor:
        cursor.execute(
            "SELECT collection_id, lexeme, count(*)"
            " FROM ingest_chunk, unnest(tsvector_to_array(search_vector)) AS lexeme GROUP BY 1, 2"
            " UNION ALL SELECT collection_id, '', count(*) FROM ingest_chunk GROUP BY 1"
        )
        return {(c, lexeme): n for c, lexeme, n in cursor.fetchall()}


def test_written_chunks_are_counted_per_lexeme_and_in_all() -> None:
    document = make_document()
    add_chunks(document, "Parking permits for staff.", "Permits expire in June.", heading_path="Parking")

    assert per_collection() == recounted()
    assert counted()["permit"] == 2
    assert counted()["park"] == 2  # the heading path counts, like in search_vector
    assert counted()["june"] == 1
    assert counted()[LexemeFrequency.ALL_CHUNKS] == 2


def test_a_reingest_counts_the_new_generation_and_forgets_the_old() -> None:
    document = make_document()
    add_chunks(document, "Quokkas are welcome in the office.", "Bring your quokka on Fridays.")
    Chunk.objects.bulk_create(
        Chunk(
            document=document,
            collection_id=document.collection_id,
            generation=2,
            ordinal=ordinal,
            text=text,
            char_start=0,
            char_end=len(text),
            token_count=len(text.split()),
        )
        for ordinal, text in enumerate(["Quokkas are not allowed in the office."])
    )
    assert counted()["quokka"] == 3  # both generations, until the new one goes live

    document_generation_activate(document=document, generation=2)

    assert per_collection() == recounted()
    assert counted()["quokka"] == 1
    assert "friday" not in counted()


def test_deleting_a_document_or_a_collection_uncounts_its_chunks() -> None:
    kept, deleted = make_document(), make_document()
    add_chunks(kept, "Mileage is paid monthly.")
    add_chunks(deleted, "Mileage forms go to finance.", "Finance closes at five.")
    other_collection = make_collection()
    add_chunks(make_document(collection=other_collection), "Finance reviews mileage.")

    document_delete(document=deleted)
    assert per_collection() == recounted()
    assert counted()["mileag"] == 2
    assert counted()["financ"] == 1

    other_collection.delete()
    assert per_collection() == recounted()
    assert counted()["mileag"] == 1
    assert "financ" not in counted()
    assert counted()[LexemeFrequency.ALL_CHUNKS] == 1


def test_edited_text_is_recounted_and_other_updates_change_nothing() -> None:
    document = make_document()
    (chunk,) = add_chunks(document, "The canteen opens at eight.")
    before = counted()

    Chunk.objects.filter(id=chunk.id).update(page=3, embedding=[0.5] * len(chunk.embedding))
    assert counted() == before

    Chunk.objects.filter(id=chunk.id).update(text="The library opens at nine.")
    assert per_collection() == recounted()
    assert "canteen" not in counted()
    assert counted()["librari"] == 1


def test_emptying_the_chunk_table_empties_the_counts() -> None:
    add_chunks(make_document(), "Printers are on every floor.")
    with connection.cursor() as cursor:
        cursor.execute("SET CONSTRAINTS ALL IMMEDIATE")  # the test's transaction defers foreign-key checks
        cursor.execute("TRUNCATE ingest_chunk CASCADE")  # with its sentence vectors

    assert counted() == {}


def test_each_collection_counts_its_own_chunks() -> None:
    first, second = make_collection(), make_collection()
    add_chunks(make_document(collection=first), "Quokkas at the office.", "Parking for quokkas.")
    add_chunks(make_document(collection=second), "Parking permits.")

    assert per_collection() == recounted()
    assert per_collection()[(first.id, "quokka")] == 2
    assert (second.id, "quokka") not in per_collection()
    assert per_collection()[(first.id, "park")] == 1 and per_collection()[(second.id, "park")] == 1
    assert per_collection()[(first.id, LexemeFrequency.ALL_CHUNKS)] == 2
    assert per_collection()[(second.id, LexemeFrequency.ALL_CHUNKS)] == 1


def test_a_chunk_moved_to_another_collection_is_counted_there() -> None:
    first, second = make_collection(), make_collection()
    (moved, _) = add_chunks(make_document(collection=first), "Quokkas at the office.", "Parking rules.")

    Chunk.objects.filter(id=moved.id).update(collection_id=second.id)

    assert per_collection() == recounted()
    assert (first.id, "quokka") not in per_collection()
    assert per_collection()[(second.id, "quokka")] == 1
    assert per_collection()[(first.id, LexemeFrequency.ALL_CHUNKS)] == 1
    assert per_collection()[(second.id, LexemeFrequency.ALL_CHUNKS)] == 1


def counters() -> dict[int, int]:
    return dict(CollectionDocumentsVersion.objects.values_list("collection_id", "version"))


def test_every_change_to_what_a_collections_documents_hold_draws_it_a_new_counter() -> None:
    """CollectionDocumentsVersion: an addition, a new live generation, a new title, a move (both collections),
    a deletion and a bulk deletion each draw a new value; progress and status do not."""
    collection, other = make_collection(), make_collection()
    document = make_document(collection=collection, title="Parking")
    seen = [counters()[collection.id]]

    def moved() -> bool:
        value = counters()[collection.id]
        fresh = value not in seen
        seen.append(value)
        return fresh

    Document.objects.filter(id=document.id).update(progress=50, status=Document.Status.EMBEDDING)
    assert not moved()
    document_generation_activate(document=document, generation=document.generation + 1)
    assert moved()
    Document.objects.filter(id=document.id).update(title="Parking rules")
    assert moved()
    second = make_document(collection=collection, title="Holidays")
    assert moved()
    before_move = counters().get(other.id)
    document_move(document=second, collection=other)
    assert moved()
    assert counters()[other.id] != before_move
    document_delete(document=document)
    assert moved()
    make_document(collection=collection)
    make_document(collection=collection)
    assert moved()
    Document.objects.filter(collection=collection).delete()
    assert moved()


def test_a_deleted_collection_takes_its_counter_and_an_emptied_table_moves_every_counter() -> None:
    kept, dropped = make_collection(), make_collection()
    make_document(collection=kept)
    make_document(collection=dropped)
    before = counters()[kept.id]
    dropped.delete()
    assert dropped.id not in counters()
    with connection.cursor() as cursor:
        cursor.execute("SET CONSTRAINTS ALL IMMEDIATE")  # the test's transaction defers foreign-key checks
        cursor.execute("TRUNCATE ingest_document CASCADE")
    assert counters()[kept.id] != before
