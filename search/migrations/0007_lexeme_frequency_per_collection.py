# Lexeme document frequencies per collection (docs/retrieval.md, "IDF of the collections searched"): a search
# sums the counts of the collections it reads. Django cannot move a table to a composite primary key, so the
# table is made anew and counted afresh from the chunk table; the trigger function, which the chunk table's
# triggers of 0002 call by name, now counts per (collection, lexeme) and also when a chunk moves between
# collections (the row of all chunks, '' here, moves with them). Rows are upserted in (collection, lexeme) order, so concurrent writers take the row locks in
# the same order and cannot deadlock on them; a pair no chunk holds any more is deleted.

import importlib

from django.db import migrations, models

before = importlib.import_module("search.migrations.0002_lexeme_frequency")
# The function of 0002, put back when this migration is reversed.
TRACK_FUNCTION_BEFORE = before.TRACK_FUNCTION.replace("CREATE FUNCTION", "CREATE OR REPLACE FUNCTION", 1)

TRACK_FUNCTION = r"""
CREATE OR REPLACE FUNCTION search_lexeme_frequency_track() RETURNS trigger LANGUAGE plpgsql AS $$
DECLARE
    collections bigint[];
    lexemes text[];
    deltas bigint[];
    emptied_collections bigint[];
    emptied_lexemes text[];
BEGIN
    IF TG_OP = 'TRUNCATE' THEN
        DELETE FROM search_lexemefrequency;
        RETURN NULL;
    END IF;
    IF TG_OP = 'INSERT' THEN
        SELECT array_agg(collection_id), array_agg(lexeme), array_agg(delta)
        INTO collections, lexemes, deltas FROM (
            SELECT collection_id, lexeme, count(*) AS delta
            FROM added, unnest(tsvector_to_array(added.search_vector)) AS lexeme GROUP BY collection_id, lexeme
            UNION ALL SELECT collection_id, '', count(*) FROM added GROUP BY collection_id
        ) changes;
    ELSIF TG_OP = 'DELETE' THEN
        SELECT array_agg(collection_id), array_agg(lexeme), array_agg(delta)
        INTO collections, lexemes, deltas FROM (
            SELECT collection_id, lexeme, -count(*) AS delta
            FROM removed, unnest(tsvector_to_array(removed.search_vector)) AS lexeme
            GROUP BY collection_id, lexeme
            UNION ALL SELECT collection_id, '', -count(*) FROM removed GROUP BY collection_id
        ) changes;
    ELSE
        SELECT array_agg(collection_id), array_agg(lexeme), array_agg(delta)
        INTO collections, lexemes, deltas FROM (
            SELECT collection_id, lexeme, sum(delta) AS delta FROM (
                SELECT new_version.collection_id, lexeme, 1 AS delta
                FROM added new_version JOIN removed old_version ON old_version.id = new_version.id,
                    unnest(array_prepend('', tsvector_to_array(new_version.search_vector))) AS lexeme
                WHERE new_version.search_vector IS DISTINCT FROM old_version.search_vector
                    OR new_version.collection_id <> old_version.collection_id
                UNION ALL
                SELECT old_version.collection_id, lexeme, -1
                FROM added new_version JOIN removed old_version ON old_version.id = new_version.id,
                    unnest(array_prepend('', tsvector_to_array(old_version.search_vector))) AS lexeme
                WHERE new_version.search_vector IS DISTINCT FROM old_version.search_vector
                    OR new_version.collection_id <> old_version.collection_id
            ) changed
            GROUP BY collection_id, lexeme
        ) changes;
    END IF;
    WITH counted AS (
        INSERT INTO search_lexemefrequency AS frequency (collection_id, lexeme, chunks)
        SELECT collection_id, lexeme, delta
        FROM unnest(collections, lexemes, deltas) AS change(collection_id, lexeme, delta)
        WHERE delta <> 0
        ORDER BY collection_id, lexeme
        ON CONFLICT (collection_id, lexeme) DO UPDATE SET chunks = frequency.chunks + excluded.chunks
        RETURNING frequency.collection_id, frequency.lexeme, frequency.chunks
    )
    SELECT array_agg(collection_id), array_agg(lexeme) INTO emptied_collections, emptied_lexemes
    FROM counted WHERE chunks <= 0;
    IF emptied_lexemes IS NOT NULL THEN
        DELETE FROM search_lexemefrequency frequency
        USING unnest(emptied_collections, emptied_lexemes) AS emptied(collection_id, lexeme)
        WHERE frequency.collection_id = emptied.collection_id AND frequency.lexeme = emptied.lexeme
            AND frequency.chunks <= 0;
    END IF;
    RETURN NULL;
END
$$;
"""

# The primary key carries the count, so that a search's lookups (every lexeme of the question in every
# collection searched) are index-only scans once autovacuum has marked the pages visible: about 0.1 ms for a
# question's lexemes in ten collections, against about 1 ms fetching each row from the table.
COVERING_KEY = """
ALTER TABLE search_lexemefrequency
    DROP CONSTRAINT search_lexemefrequency_pkey,
    ADD CONSTRAINT search_lexemefrequency_pkey PRIMARY KEY (lexeme, collection_id) INCLUDE (chunks);
"""

COUNT_EXISTING = """
INSERT INTO search_lexemefrequency (collection_id, lexeme, chunks)
SELECT collection_id, lexeme, count(*)
FROM ingest_chunk, unnest(tsvector_to_array(search_vector)) AS lexeme GROUP BY collection_id, lexeme
UNION ALL
SELECT collection_id, '', count(*) FROM ingest_chunk GROUP BY collection_id;
"""


class Migration(migrations.Migration):
    dependencies = [
        ("ingest", "0007_chunk_vectors_inline"),
        ("search", "0006_generated_question"),
    ]

    operations = [
        # Reversed last: the table of 0002 is back by then, and is counted afresh.
        migrations.RunSQL(migrations.RunSQL.noop, reverse_sql=before.COUNT_EXISTING),
        migrations.DeleteModel(name="LexemeFrequency"),
        migrations.CreateModel(
            name="LexemeFrequency",
            fields=[
                (
                    "pk",
                    models.CompositePrimaryKey(
                        "lexeme",
                        "collection_id",
                        blank=True,
                        editable=False,
                        primary_key=True,
                        serialize=False,
                    ),
                ),
                ("collection_id", models.BigIntegerField()),
                ("lexeme", models.TextField()),
                ("chunks", models.BigIntegerField()),
            ],
        ),
        migrations.RunSQL(COVERING_KEY, reverse_sql=migrations.RunSQL.noop),
        migrations.RunSQL(TRACK_FUNCTION + COUNT_EXISTING, reverse_sql=TRACK_FUNCTION_BEFORE),
    ]
