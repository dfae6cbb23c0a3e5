from django.conf import settings
from django.contrib.auth.models import Group
from django.contrib.postgres.indexes import GinIndex
from django.contrib.postgres.search import SearchVector, SearchVectorField
from django.db import models
from pgvector.django import HnswIndex, VectorField

EMBEDDING_DIMENSIONS = 384


class Collection(models.Model):
    """A set of documents; only members of its groups (and superusers) may read it."""

    name = models.CharField(max_length=200, unique=True)
    description = models.TextField(blank=True)
    groups = models.ManyToManyField(Group, blank=True, related_name="collections")
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["name"]

    def __str__(self) -> str:
        return self.name


class Document(models.Model):
    class Status(models.TextChoices):
        QUEUED = "queued", "Queued"
        PARSING = "parsing", "Parsing"
        EMBEDDING = "embedding", "Embedding"
        READY = "ready", "Ready"
        FAILED = "failed", "Failed"

    collection = models.ForeignKey(Collection, on_delete=models.CASCADE, related_name="documents")
    file = models.FileField(upload_to="documents/%Y/%m/")
    original_name = models.CharField(max_length=255)
    title = models.CharField(max_length=500, blank=True)
    content_type = models.CharField(max_length=100, blank=True)
    sha256 = models.CharField(max_length=64)
    size = models.BigIntegerField(default=0)
    status = models.CharField(max_length=20, choices=Status.choices, default=Status.QUEUED)
    progress = models.PositiveSmallIntegerField(default=0)
    error = models.TextField(blank=True)
    # What the parser could not read in a document that was indexed (a page OCR could not read), one per line.
    notes = models.TextField(blank=True)
    # The generation whose chunks are live; a re-ingest writes the next one, then drops this one.
    generation = models.PositiveIntegerField(default=0)
    uploaded_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL
    )
    # Runs started (a crashed worker's run included); a document that keeps killing workers is failed.
    attempts = models.PositiveSmallIntegerField(default=0)
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)
    started_at = models.DateTimeField(null=True, blank=True)
    finished_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["-created_at"]
        constraints = [
            models.UniqueConstraint(
                fields=["collection", "sha256"], name="document_unique_content_per_collection"
            )
        ]
        indexes = [
            # Retrieval checks each candidate chunk's generation against its document's: with this index
            # that lookup is an index-only scan (hybrid p50 about 7% lower at 100k chunks, docs/retrieval.md).
            models.Index(fields=["id"], include=["generation"], name="document_live_generation"),
        ]

    def __str__(self) -> str:
        return self.title or self.original_name


class Chunk(models.Model):
    document = models.ForeignKey(Document, on_delete=models.CASCADE, related_name="chunks")
    # Denormalised from the document so that retrieval filters by permission inside the index scan.
    collection = models.ForeignKey(Collection, on_delete=models.CASCADE, related_name="+")
    generation = models.PositiveIntegerField()
    ordinal = models.PositiveIntegerField()
    text = models.TextField()
    heading_path = models.TextField(blank=True)
    page = models.PositiveIntegerField(null=True, blank=True)
    char_start = models.PositiveIntegerField()
    char_end = models.PositiveIntegerField()
    token_count = models.PositiveIntegerField()
    # Two vector slots, so that a new retriever is embedded beside the active one and switching (or rolling
    # back) is a change of which column retrieval reads; `retrievers.Retriever.slot` says which one is whose.
    # A slot is NULL until its retriever's re-embedding reaches the chunk (NULLs are not indexed).
    embedding = VectorField(dimensions=EMBEDDING_DIMENSIONS, null=True)
    embedding_b = VectorField(dimensions=EMBEDDING_DIMENSIONS, null=True)
    # Document expansion (docs/retrieval.md, issue 17 item 3): questions the chat model wrote for this chunk
    # that retrieve it near the top, one per line. Searched (weight C, below the text), never shown: a
    # citation quotes `text`. A new generation starts without (its questions belong to the old chunk).
    expansion = models.TextField(blank=True, default="", db_default="")
    search_vector = models.GeneratedField(
        expression=SearchVector("heading_path", weight="A", config="english")
        + SearchVector("text", weight="B", config="english")
        + SearchVector("expansion", weight="C", config="english"),
        output_field=SearchVectorField(),
        db_persist=True,
    )

    class Meta:
        ordering = ["document_id", "ordinal"]
        constraints = [
            models.UniqueConstraint(
                fields=["document", "generation", "ordinal"], name="chunk_unique_position"
            )
        ]
        indexes = [
            HnswIndex(
                name="chunk_embedding_hnsw",
                fields=["embedding"],
                m=16,
                ef_construction=64,
                opclasses=["vector_cosine_ops"],
            ),
            HnswIndex(
                name="chunk_embedding_b_hnsw",
                fields=["embedding_b"],
                m=16,
                ef_construction=64,
                opclasses=["vector_cosine_ops"],
            ),
            GinIndex(name="chunk_search_vector_gin", fields=["search_vector"]),
            models.Index(name="chunk_collection", fields=["collection"]),
        ]

    def __str__(self) -> str:
        return f"{self.document_id}#{self.ordinal} (gen {self.generation})"
