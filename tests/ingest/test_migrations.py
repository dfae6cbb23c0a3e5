import pytest
from django.db import connection


@pytest.mark.django_db
def test_vector_extension_is_at_least_0_8() -> None:
    with connection.cursor() as cursor:
        cursor.execute("SELECT extversion FROM pg_extension WHERE extname = 'vector'")
        row = cursor.fetchone()
    assert row is not None, "the vector extension was not created by the migrations"
    major, minor = (int(part) for part in row[0].split(".")[:2])
    assert (major, minor) >= (0, 8)


@pytest.mark.django_db(transaction=True)
def test_adding_the_expansion_keeps_every_chunks_vector_and_the_lexeme_counts_exact() -> None:
    """ingest.0006 rebuilds `search_vector` with the empty expansion: nothing searched or counted changes."""
    from django.db.migrations.executor import MigrationExecutor

    from tests.search.test_models import counted, per_collection, recounted

    before, after = [("ingest", "0005_document_notes")], [("ingest", "0006_chunk_expansion")]
    executor = MigrationExecutor(connection)
    executor.migrate(before)
    apps = executor.loader.project_state(before).apps
    collection = apps.get_model("ingest", "Collection").objects.create(name="migrated")
    document = apps.get_model("ingest", "Document").objects.create(
        collection=collection, file="", original_name="a.txt", sha256="0" * 64, generation=1
    )
    texts = ["Parking permits are issued in April.", "Annual leave is booked in the HR portal."]
    apps.get_model("ingest", "Chunk").objects.bulk_create(
        apps.get_model("ingest", "Chunk")(
            document=document,
            collection=collection,
            generation=1,
            ordinal=n,
            text=text,
            heading_path="Handbook",
            char_start=0,
            char_end=len(text),
            token_count=len(text.split()),
        )
        for n, text in enumerate(texts)
    )
    with connection.cursor() as cursor:
        cursor.execute("SELECT id, search_vector::text FROM ingest_chunk ORDER BY id")
        vectors = cursor.fetchall()
        # The table of search.0002 (one count per lexeme), which this state has.
        cursor.execute("SELECT lexeme, chunks FROM search_lexemefrequency")
        counts = dict(cursor.fetchall())

    executor = MigrationExecutor(connection)
    executor.migrate(after)
    executor = MigrationExecutor(connection)
    executor.migrate(executor.loader.graph.leaf_nodes())

    with connection.cursor() as cursor:
        cursor.execute("SELECT id, search_vector::text FROM ingest_chunk ORDER BY id")
        assert cursor.fetchall() == vectors
    assert counted() == counts
    assert per_collection() == recounted()
    assert counts["permit"] == 1


@pytest.mark.django_db
def test_a_chunks_vectors_stay_in_its_row() -> None:
    """ingest.0007: a chunk of ordinary size is not toasted, so a distance is read without a TOAST lookup."""
    from ingest.models import EMBEDDING_DIMENSIONS, Chunk, Collection, Document

    collection = Collection.objects.create(name="inline")
    document = Document.objects.create(
        collection=collection, file="", original_name="a.txt", sha256="1" * 64, generation=1
    )
    # A full chunk: 250 words of prose from a vocabulary of 60 (its tsvector beside it), both vector slots.
    words = [f"term{n % 60}" for n in range(250)]
    text = " ".join(words)
    vector = [((n * 37) % 101 - 50) / 50 for n in range(EMBEDDING_DIMENSIONS)]
    Chunk.objects.create(
        document=document,
        collection=collection,
        generation=1,
        ordinal=0,
        text=text,
        char_start=0,
        char_end=len(text),
        token_count=len(words),
        embedding=vector,
        embedding_b=vector,
    )
    with connection.cursor() as cursor:
        cursor.execute("SELECT pg_column_size(c.*) FROM ingest_chunk c")
        row = cursor.fetchone()
        assert row is not None and row[0] > 2 * 1544  # over PostgreSQL's default 2 kB toasting threshold
        cursor.execute("SELECT reltoastrelid::regclass::text FROM pg_class WHERE relname = 'ingest_chunk'")
        toast = cursor.fetchone()
        assert toast is not None
        cursor.execute(f"SELECT count(*) FROM {toast[0]}")
        assert cursor.fetchone() == (0,)


@pytest.mark.django_db(transaction=True)
def test_counting_lexemes_per_collection_counts_the_existing_chunks_and_goes_back() -> None:
    """search.0007 replaces the global counts with per-collection ones, counted from the chunks there are;
    reversed, it counts them globally again."""
    from django.db.migrations.executor import MigrationExecutor

    from tests.search.test_models import per_collection, recounted

    before = [("search", "0006_generated_question")]
    executor = MigrationExecutor(connection)
    executor.migrate(before)
    apps = executor.loader.project_state(before).apps
    Chunk = apps.get_model("ingest", "Chunk")
    collections = []
    for name, texts in [("first", ["Quokkas visit.", "Parking rules."]), ("second", ["Quokka sightings."])]:
        collection = apps.get_model("ingest", "Collection").objects.create(name=name)
        document = apps.get_model("ingest", "Document").objects.create(
            collection=collection, file="", original_name=f"{name}.txt", sha256="0" * 64, generation=1
        )
        Chunk.objects.bulk_create(
            Chunk(
                document=document,
                collection=collection,
                generation=1,
                ordinal=n,
                text=text,
                char_start=0,
                char_end=len(text),
                token_count=len(text.split()),
            )
            for n, text in enumerate(texts)
        )
        collections.append(collection.id)

    executor = MigrationExecutor(connection)
    executor.migrate(executor.loader.graph.leaf_nodes())

    first, second = collections
    assert per_collection() == recounted()
    assert per_collection()[(first, "quokka")] == 1 and per_collection()[(second, "quokka")] == 1
    assert per_collection()[(first, "")] == 2 and per_collection()[(second, "")] == 1

    executor = MigrationExecutor(connection)
    executor.migrate(before)
    with connection.cursor() as cursor:
        cursor.execute("SELECT lexeme, chunks FROM search_lexemefrequency")
        counts = dict(cursor.fetchall())
        # The trigger function of search.0002 counts again: a deleted chunk is uncounted from the global rows.
        cursor.execute("DELETE FROM ingest_chunk WHERE collection_id = %s", [second])
        cursor.execute("SELECT chunks FROM search_lexemefrequency WHERE lexeme = 'quokka'")
        after_delete = cursor.fetchone()
    assert counts["quokka"] == 2 and counts[""] == 3
    assert after_delete == (1,)

    executor = MigrationExecutor(connection)
    executor.migrate(executor.loader.graph.leaf_nodes())
    assert per_collection() == recounted()


@pytest.mark.django_db(transaction=True)
def test_counting_collection_document_changes_starts_every_collection_and_goes_back() -> None:
    """search.0008 gives every collection there is a counter, which a new document then moves; reversed, its
    triggers go with the table, and documents are written as before."""
    from django.db.migrations.executor import MigrationExecutor

    before = [("search", "0007_lexeme_frequency_per_collection")]
    executor = MigrationExecutor(connection)
    executor.migrate(before)
    apps = executor.loader.project_state(before).apps
    Collection = apps.get_model("ingest", "Collection")
    Document = apps.get_model("ingest", "Document")
    full, empty = Collection.objects.create(name="full"), Collection.objects.create(name="empty")
    Document.objects.create(collection=full, file="", original_name="a.txt", sha256="0" * 64, generation=1)

    executor = MigrationExecutor(connection)
    executor.migrate(executor.loader.graph.leaf_nodes())
    with connection.cursor() as cursor:
        cursor.execute("SELECT collection_id, version FROM search_collectiondocumentsversion")
        started = dict(cursor.fetchall())
    assert set(started) == {full.id, empty.id}
    Document.objects.create(collection=empty, file="", original_name="b.txt", sha256="1" * 64)
    with connection.cursor() as cursor:
        cursor.execute(
            "SELECT version FROM search_collectiondocumentsversion WHERE collection_id = %s", [empty.id]
        )
        assert cursor.fetchone()[0] != started[empty.id]

    executor = MigrationExecutor(connection)
    executor.migrate(before)
    Document.objects.create(collection=full, file="", original_name="c.txt", sha256="2" * 64)
    Document.objects.filter(collection=full).delete()
    with connection.cursor() as cursor:
        cursor.execute("SELECT to_regclass('search_collectiondocumentsversion')")
        assert cursor.fetchone() == (None,)

    executor = MigrationExecutor(connection)
    executor.migrate(executor.loader.graph.leaf_nodes())
