"""Keep a chunk's vectors in its row instead of the TOAST table.

A row holds the chunk's text, its tsvector and one or two 384-dimension vectors (1,544 bytes each), about
2.7 kB, over PostgreSQL's default 2 kB toasting threshold; `vector` columns are stored EXTERNAL, so the vector
went out of line first. The HNSW scan reads vectors from the index, but every distance retrieval computes
from a row (each dense candidate's exact distance, its document opening's, a keyword-only candidate's and its
opening's: up to about 200 per hybrid search), and each was a TOAST index lookup and a second heap fetch. With
the target at its maximum a chunk row is toasted only past 8,160 bytes (docs/retrieval.md, "Vectors in the
row": hybrid SQL execution p50 13.9 -> 9.6 ms at 100,000 chunks). The table is about as large as before,
now in one relation instead of two.

The setting applies to rows written from now on (ingestion, re-ingestion, a retriever's re-embedding);
existing rows keep their out-of-line vectors until then. Nothing is rewritten here, so the migration takes no
time on a large table.
"""

from django.db import migrations

# PostgreSQL's maximum for toast_tuple_target (TOAST_TUPLE_TARGET_MAIN on 8 kB pages).
MAXIMUM_TOAST_TUPLE_TARGET = 8160


class Migration(migrations.Migration):
    dependencies = [
        ("ingest", "0006_chunk_expansion"),
    ]

    operations = [
        migrations.RunSQL(
            f"ALTER TABLE ingest_chunk SET (toast_tuple_target = {MAXIMUM_TOAST_TUPLE_TARGET})",
            reverse_sql="ALTER TABLE ingest_chunk RESET (toast_tuple_target)",
        ),
    ]
