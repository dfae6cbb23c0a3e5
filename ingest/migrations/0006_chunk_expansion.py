# Document expansion (issue 17 item 3): a chunk's kept generated questions, folded into its full-text vector at
# weight C. PostgreSQL 15 cannot change a generated column's expression, so `search_vector` is dropped and added
# again (with its GIN index). Every chunk's expansion is empty then, so each vector is what it was and
# search.LexemeFrequency's counts stay exact (ALTER TABLE fires no triggers; nothing changed to count).

import django.contrib.postgres.indexes
import django.contrib.postgres.search
from django.db import migrations, models


class Migration(migrations.Migration):
    dependencies = [
        ("ingest", "0005_document_notes"),
    ]

    operations = [
        migrations.AddField(
            model_name="chunk",
            name="expansion",
            field=models.TextField(blank=True, db_default="", default=""),
        ),
        migrations.RemoveIndex(model_name="chunk", name="chunk_search_vector_gin"),
        migrations.RemoveField(model_name="chunk", name="search_vector"),
        migrations.AddField(
            model_name="chunk",
            name="search_vector",
            field=models.GeneratedField(
                db_persist=True,
                expression=django.contrib.postgres.search.CombinedSearchVector(
                    django.contrib.postgres.search.CombinedSearchVector(
                        django.contrib.postgres.search.SearchVector(
                            "heading_path", config="english", weight="A"
                        ),
                        "||",
                        django.contrib.postgres.search.SearchVector("text", config="english", weight="B"),
                        django.contrib.postgres.search.SearchConfig("english"),
                    ),
                    "||",
                    django.contrib.postgres.search.SearchVector("expansion", config="english", weight="C"),
                    django.contrib.postgres.search.SearchConfig("english"),
                ),
                output_field=django.contrib.postgres.search.SearchVectorField(),
            ),
        ),
        migrations.AddIndex(
            model_name="chunk",
            index=django.contrib.postgres.indexes.GinIndex(
                fields=["search_vector"], name="chunk_search_vector_gin"
            ),
        ),
    ]
