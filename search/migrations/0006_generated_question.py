import django.db.models.deletion
from django.db import migrations, models


class Migration(migrations.Migration):
    dependencies = [
        ("ingest", "0006_chunk_expansion"),
        ("search", "0005_message_wait_until"),
    ]

    operations = [
        migrations.CreateModel(
            name="GeneratedQuestion",
            fields=[
                (
                    "id",
                    models.BigAutoField(
                        auto_created=True, primary_key=True, serialize=False, verbose_name="ID"
                    ),
                ),
                ("model", models.CharField(max_length=200)),
                ("text", models.TextField()),
                ("kept", models.BooleanField()),
                ("rank", models.PositiveSmallIntegerField(blank=True, null=True)),
                ("created_at", models.DateTimeField(auto_now_add=True)),
                (
                    "chunk",
                    models.ForeignKey(
                        db_constraint=False,
                        on_delete=django.db.models.deletion.DO_NOTHING,
                        related_name="+",
                        to="ingest.chunk",
                    ),
                ),
            ],
            options={
                "indexes": [models.Index(fields=["chunk", "model"], name="generated_question_chunk")],
            },
        ),
        migrations.RunSQL(
            "ALTER TABLE search_generatedquestion ADD CONSTRAINT search_generatedquestion_chunk_fk "
            "FOREIGN KEY (chunk_id) REFERENCES ingest_chunk (id) ON DELETE CASCADE DEFERRABLE INITIALLY DEFERRED",
            "ALTER TABLE search_generatedquestion DROP CONSTRAINT search_generatedquestion_chunk_fk",
        ),
    ]
