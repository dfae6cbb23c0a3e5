from django.conf import settings
from django.contrib.postgres.fields import ArrayField
from django.db import models


class Conversation(models.Model):
    """A person's thread of questions; follow-ups are read in the light of the earlier turns."""

    user = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="conversations")
    title = models.CharField(max_length=200)
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        ordering = ["-updated_at", "-id"]
        indexes = [models.Index(name="conversation_user_recent", fields=["user", "-updated_at"])]

    def __str__(self) -> str:
        return self.title


class Message(models.Model):
    """One turn: a question and the answer streamed for it, with the numbered passages it was given."""

    class Status(models.TextChoices):
        PENDING = "pending", "Pending"
        STREAMING = "streaming", "Streaming"
        ANSWERED = "answered", "Answered"
        FAILED = "failed", "Failed"

    conversation = models.ForeignKey(Conversation, on_delete=models.CASCADE, related_name="messages")
    question = models.TextField()
    # The follow-up rewritten into a question that stands alone; what retrieval searched for.
    standalone_question = models.TextField(blank=True)
    answer = models.TextField(blank=True)
    # The passages numbered [1], [2], ... in the prompt, as search.services.SourceRef dicts.
    sources = models.JSONField(default=list, blank=True)
    status = models.CharField(max_length=20, choices=Status.choices, default=Status.PENDING)
    error = models.TextField(blank=True)
    request_id = models.CharField(max_length=64, blank=True)
    created_at = models.DateTimeField(auto_now_add=True)
    answered_at = models.DateTimeField(null=True, blank=True)
    # How the answer was made ("model", "extract", "refusal"); when it was first written, if it was reused
    # (search/shared_answers.py); and, when the model had no room, after how many seconds to ask again.
    origin = models.CharField(max_length=20, blank=True)
    reused_at = models.DateTimeField(null=True, blank=True)
    busy_retry_after = models.PositiveIntegerField(null=True, blank=True)
    # When the question stops waiting for a turn (its arrival at the web server's door plus the door's
    # RAGSITE_WEB_MAX_WAIT_S): its answer's stream, a request of its own, waits in retrieval's and the model's
    # queues only until then (ops.admission.wait_until). NULL when it came in by another way (tests, WSGI).
    wait_until = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["conversation_id", "created_at", "id"]

    def __str__(self) -> str:
        return self.question[:80]


class Feedback(models.Model):
    """A thumbs up or down on an answer, with what was asked, answered and retrieved at that moment.

    The copies are deliberate: evaluation and fine-tuning need the exact triple that was judged, even
    after a document is re-ingested or deleted.
    """

    class Rating(models.TextChoices):
        UP = "up", "Helpful"
        DOWN = "down", "Not helpful"

    message = models.OneToOneField(Message, on_delete=models.CASCADE, related_name="feedback")
    user = models.ForeignKey(settings.AUTH_USER_MODEL, null=True, on_delete=models.SET_NULL, related_name="+")
    rating = models.CharField(max_length=4, choices=Rating.choices)
    comment = models.TextField(blank=True)
    question = models.TextField()
    standalone_question = models.TextField(blank=True)
    answer = models.TextField()
    passages = models.JSONField(default=list, blank=True)
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        ordering = ["-updated_at"]

    def __str__(self) -> str:
        return f"{self.get_rating_display()}: {self.question[:60]}"


class LexemeFrequency(models.Model):
    """How many chunks of a collection hold a lexeme in their `search_vector`: the document frequencies of
    keyword IDF, counted per collection so that a search weighs words by the collections it searches.

    A search (or an answer's evidence check) sums the counts of the collections the asker reads: a word
    common in someone else's collection stays rare in the one searched, what another collection holds cannot
    move this one's ranking, and nothing about an unreadable collection's words shows through the weights
    (docs/retrieval.md, "IDF of the collections searched"). Kept by triggers on the chunk table in the
    transaction that writes the chunks (migrations 0002 and 0007), so that every path that adds, moves or
    removes chunks (ingestion, re-ingestion, a deleted document or collection, a bulk load) keeps it exact.
    The row with the empty lexeme (`ALL_CHUNKS`) counts a collection's chunks themselves. `collection_id` is
    not a foreign key: the rows go with their chunks, through the triggers, not through a cascade.
    """

    ALL_CHUNKS = ""

    pk = models.CompositePrimaryKey("lexeme", "collection_id")
    collection_id = models.BigIntegerField()
    lexeme = models.TextField()
    chunks = models.BigIntegerField()

    def __str__(self) -> str:
        return f"{self.collection_id}/{self.lexeme or '(all chunks)'}: {self.chunks}"


class CollectionDocumentsVersion(models.Model):
    """A counter of changes to a collection's documents: one is added, deleted, moved in or out, renamed, or
    given a new live generation. The answer cache's key holds the counters of the collections read
    (`search.answer_cache.documents_fingerprint`), so that what the key costs to compute does not grow with
    the documents. Kept by triggers on the document table in the transaction that writes the documents
    (migration 0008), so every path that changes them (ingestion, a move, a deletion, the admin, a bulk
    update) moves it; Django never writes it. `collection_id` is not a foreign key: a collection's row is
    dropped by a trigger when the collection is deleted.
    """

    collection_id = models.BigIntegerField(primary_key=True)
    version = models.BigIntegerField()

    def __str__(self) -> str:
        return f"{self.collection_id}: {self.version}"


class ChunkSentences(models.Model):
    """The sentences of a chunk that an extractive answer may quote, embedded ahead of any question.

    An extractive answer scores a passage's sentences by their meaning; embedding them while the asker waits
    cost more than the 50 ms the extract may take (about 0.3 ms a token on one CPU thread), so a background
    task (search.tasks.sentence_vectors_fill) embeds them once, after the chunk is written. One row per chunk
    and embedding model (a retriever switch needs its own vectors); a row with no sentences marks a chunk
    with none worth quoting. The vectors are float16 (768 bytes a sentence), which changes a cosine by less
    than 0.001; the chunk's own vectors stay float32 in pgvector.
    """

    # The database deletes the row with its chunk (ON DELETE CASCADE, migration 0004): a re-ingest's bulk
    # delete of the old generation stays one statement instead of Django collecting every chunk first.
    chunk = models.ForeignKey(
        "ingest.Chunk", on_delete=models.DO_NOTHING, db_constraint=False, related_name="+"
    )
    model_id = models.CharField(max_length=200)
    # Each sentence's offset in the chunk's text, and its unit vector (float16, in the same order).
    starts = ArrayField(models.PositiveIntegerField())
    vectors = models.BinaryField()

    class Meta:
        constraints = [
            models.UniqueConstraint(fields=["chunk", "model_id"], name="chunk_sentences_unique_model"),
        ]

    def __str__(self) -> str:
        return f"chunk {self.chunk_id}: {len(self.starts)} sentences ({self.model_id})"


class GeneratedQuestion(models.Model):
    """A question the chat model wrote for a chunk (doc2query), and whether it found its chunk again.

    `kept` questions retrieved their own chunk within the top `rank` limit (search/generated_questions.py);
    they expand the chunk's full-text vector and become fine-tuning pairs. Rejected ones are stored too, so
    that a run resumes where it stopped: a chunk with any row for a model is done for that model, and a
    row with empty `text` records a reply that held no question. The rows go with their chunk (ON DELETE
    CASCADE in the database, migration 0005), so a re-ingested document starts with none.
    """

    chunk = models.ForeignKey(
        "ingest.Chunk", on_delete=models.DO_NOTHING, db_constraint=False, related_name="+"
    )
    # The chat model that wrote it: a run for another model generates afresh.
    model = models.CharField(max_length=200)
    text = models.TextField()
    kept = models.BooleanField()
    # The chunk's place among the question's results (1 = first); NULL when it was not in the top ones.
    rank = models.PositiveSmallIntegerField(null=True, blank=True)
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        indexes = [models.Index(name="generated_question_chunk", fields=["chunk", "model"])]

    def __str__(self) -> str:
        return f"chunk {self.chunk_id}: {self.text[:60] or '(no question)'}"
