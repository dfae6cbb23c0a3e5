# A counter per collection of the changes to its documents (search.models.CollectionDocumentsVersion), kept by
# triggers on the document table: the answer cache's key reads a collection's counter instead of digesting
# every document it holds (63 ms a key at 100,000 documents, docs/web_load.md). Rows are upserted in
# collection order, so concurrent writers take the row locks in the same order and cannot deadlock on them;
# every write takes the lexeme counts' locks (0007) before these: a move updates its chunks, then itself.
# A new value is drawn from one sequence each time, not added to, so a collection's value never comes back:
# not after its row is dropped with the collection, nor after the tables are emptied and their ids restart.
# An update counts only when it changes what the key stood for before: the live generation, the title or the
# collection (a document's progress and status change often during ingestion and count for nothing).

from django.db import migrations, models

BUMP_FUNCTION = r"""
CREATE SEQUENCE search_collection_documents_version;

CREATE FUNCTION search_collection_documents_bump() RETURNS trigger LANGUAGE plpgsql AS $$
DECLARE
    changed bigint[];
BEGIN
    IF TG_OP = 'TRUNCATE' THEN
        UPDATE search_collectiondocumentsversion SET version = nextval('search_collection_documents_version');
        RETURN NULL;
    END IF;
    IF TG_LEVEL = 'ROW' THEN
        -- An update of the live generation, the title or the collection: both collections of a move count.
        changed := ARRAY[OLD.collection_id, NEW.collection_id];
    ELSIF TG_OP = 'INSERT' THEN
        SELECT array_agg(collection_id) INTO changed FROM added;
    ELSE
        SELECT array_agg(collection_id) INTO changed FROM removed;
    END IF;
    INSERT INTO search_collectiondocumentsversion AS counter (collection_id, version)
    SELECT collection_id, nextval('search_collection_documents_version')
    FROM (SELECT DISTINCT collection_id FROM unnest(changed) AS collection_id) collections
    ORDER BY collection_id
    ON CONFLICT (collection_id) DO UPDATE SET version = excluded.version;
    RETURN NULL;
END
$$;

CREATE FUNCTION search_collection_documents_forget() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    DELETE FROM search_collectiondocumentsversion counter
    USING removed WHERE counter.collection_id = removed.id;
    RETURN NULL;
END
$$;

CREATE TRIGGER search_collection_documents_added AFTER INSERT ON ingest_document
    REFERENCING NEW TABLE AS added FOR EACH STATEMENT EXECUTE FUNCTION search_collection_documents_bump();
CREATE TRIGGER search_collection_documents_removed AFTER DELETE ON ingest_document
    REFERENCING OLD TABLE AS removed FOR EACH STATEMENT EXECUTE FUNCTION search_collection_documents_bump();
CREATE TRIGGER search_collection_documents_changed
    AFTER UPDATE OF generation, title, collection_id ON ingest_document
    FOR EACH ROW WHEN (
        OLD.generation IS DISTINCT FROM NEW.generation
        OR OLD.title IS DISTINCT FROM NEW.title
        OR OLD.collection_id IS DISTINCT FROM NEW.collection_id
    ) EXECUTE FUNCTION search_collection_documents_bump();
CREATE TRIGGER search_collection_documents_truncated AFTER TRUNCATE ON ingest_document
    FOR EACH STATEMENT EXECUTE FUNCTION search_collection_documents_bump();
CREATE TRIGGER search_collection_documents_forgotten AFTER DELETE ON ingest_collection
    REFERENCING OLD TABLE AS removed FOR EACH STATEMENT EXECUTE FUNCTION search_collection_documents_forget();

INSERT INTO search_collectiondocumentsversion (collection_id, version)
SELECT id, nextval('search_collection_documents_version') FROM ingest_collection;
"""

DROP = """
DROP TRIGGER search_collection_documents_added ON ingest_document;
DROP TRIGGER search_collection_documents_removed ON ingest_document;
DROP TRIGGER search_collection_documents_changed ON ingest_document;
DROP TRIGGER search_collection_documents_truncated ON ingest_document;
DROP TRIGGER search_collection_documents_forgotten ON ingest_collection;
DROP FUNCTION search_collection_documents_bump();
DROP FUNCTION search_collection_documents_forget();
DROP SEQUENCE search_collection_documents_version;
"""


class Migration(migrations.Migration):
    dependencies = [
        ("ingest", "0007_chunk_vectors_inline"),
        ("search", "0007_lexeme_frequency_per_collection"),
    ]

    operations = [
        migrations.CreateModel(
            name="CollectionDocumentsVersion",
            fields=[
                ("collection_id", models.BigIntegerField(primary_key=True, serialize=False)),
                ("version", models.BigIntegerField()),
            ],
        ),
        migrations.RunSQL(BUMP_FUNCTION, reverse_sql=DROP),
    ]
