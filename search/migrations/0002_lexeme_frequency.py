# The document frequencies of the chunks' lexemes, kept by statement-level triggers on the chunk table: each
# INSERT, DELETE, UPDATE or TRUNCATE of chunks adds its per-lexeme difference in the same transaction. Rows are
# upserted in lexeme order, so concurrent writers take the row locks in the same order and cannot deadlock on
# them; a lexeme no chunk holds any more is deleted.

from django.db import migrations, models

TRACK_FUNCTION = r"""
CREATE FUNCTION search_lexeme_frequency_track() RETURNS trigger LANGUAGE plpgsql AS $$
DECLARE
    lexemes text[];
    deltas bigint[];
    emptied text[];
BEGIN
    IF TG_OP = 'TRUNCATE' THEN
        DELETE FROM search_lexemefrequency;
        RETURN NULL;
    END IF;
    IF TG_OP = 'INSERT' THEN
        SELECT array_agg(lexeme), array_agg(delta) INTO lexemes, deltas FROM (
            SELECT lexeme, count(*) AS delta
            FROM added, unnest(tsvector_to_array(added.search_vector)) AS lexeme GROUP BY lexeme
            UNION ALL SELECT '', count(*) FROM added
        ) changes;
    ELSIF TG_OP = 'DELETE' THEN
        SELECT array_agg(lexeme), array_agg(delta) INTO lexemes, deltas FROM (
            SELECT lexeme, -count(*) AS delta
            FROM removed, unnest(tsvector_to_array(removed.search_vector)) AS lexeme GROUP BY lexeme
            UNION ALL SELECT '', -count(*) FROM removed
        ) changes;
    ELSE
        SELECT array_agg(lexeme), array_agg(delta) INTO lexemes, deltas FROM (
            SELECT lexeme, sum(delta) AS delta FROM (
                SELECT unnest(tsvector_to_array(new_version.search_vector)) AS lexeme, 1 AS delta
                FROM added new_version JOIN removed old_version ON old_version.id = new_version.id
                WHERE new_version.search_vector IS DISTINCT FROM old_version.search_vector
                UNION ALL
                SELECT unnest(tsvector_to_array(old_version.search_vector)), -1
                FROM added new_version JOIN removed old_version ON old_version.id = new_version.id
                WHERE new_version.search_vector IS DISTINCT FROM old_version.search_vector
            ) changed
            GROUP BY lexeme
        ) changes;
    END IF;
    WITH counted AS (
        INSERT INTO search_lexemefrequency AS frequency (lexeme, chunks)
        SELECT lexeme, delta FROM unnest(lexemes, deltas) AS change(lexeme, delta)
        WHERE delta <> 0
        ORDER BY lexeme
        ON CONFLICT (lexeme) DO UPDATE SET chunks = frequency.chunks + excluded.chunks
        RETURNING frequency.lexeme, frequency.chunks
    )
    SELECT array_agg(lexeme) INTO emptied FROM counted WHERE chunks <= 0;
    IF emptied IS NOT NULL THEN
        DELETE FROM search_lexemefrequency WHERE lexeme = ANY(emptied) AND chunks <= 0;
    END IF;
    RETURN NULL;
END
$$;
"""

TRIGGERS = """
CREATE TRIGGER chunk_lexemes_inserted AFTER INSERT ON ingest_chunk
    REFERENCING NEW TABLE AS added FOR EACH STATEMENT EXECUTE FUNCTION search_lexeme_frequency_track();
CREATE TRIGGER chunk_lexemes_deleted AFTER DELETE ON ingest_chunk
    REFERENCING OLD TABLE AS removed FOR EACH STATEMENT EXECUTE FUNCTION search_lexeme_frequency_track();
CREATE TRIGGER chunk_lexemes_updated AFTER UPDATE ON ingest_chunk
    REFERENCING OLD TABLE AS removed NEW TABLE AS added
    FOR EACH STATEMENT EXECUTE FUNCTION search_lexeme_frequency_track();
CREATE TRIGGER chunk_lexemes_truncated AFTER TRUNCATE ON ingest_chunk
    FOR EACH STATEMENT EXECUTE FUNCTION search_lexeme_frequency_track();
"""

COUNT_EXISTING = """
INSERT INTO search_lexemefrequency (lexeme, chunks)
SELECT lexeme, count(*) FROM ingest_chunk, unnest(tsvector_to_array(search_vector)) AS lexeme GROUP BY lexeme
UNION ALL
SELECT '', count(*) FROM ingest_chunk HAVING count(*) > 0;
"""

DROP = """
DROP TRIGGER chunk_lexemes_inserted ON ingest_chunk;
DROP TRIGGER chunk_lexemes_deleted ON ingest_chunk;
DROP TRIGGER chunk_lexemes_updated ON ingest_chunk;
DROP TRIGGER chunk_lexemes_truncated ON ingest_chunk;
DROP FUNCTION search_lexeme_frequency_track();
"""


class Migration(migrations.Migration):
    dependencies = [
        ("ingest", "0001_initial"),
        ("search", "0001_initial"),
    ]

    operations = [
        migrations.CreateModel(
            name="LexemeFrequency",
            fields=[
                ("lexeme", models.TextField(primary_key=True, serialize=False)),
                ("chunks", models.BigIntegerField()),
            ],
        ),
        migrations.RunSQL(TRACK_FUNCTION + TRIGGERS + COUNT_EXISTING, reverse_sql=DROP),
    ]
