from django.db import models
from django.db.models import Q

# Which column of ingest.Chunk holds each slot's vectors.
SLOT_COLUMNS = {"a": "embedding", "b": "embedding_b"}


class Retriever(models.Model):
    """An embedding model questions and chunks can be embedded with, and the vector slot it owns."""

    class Status(models.TextChoices):
        REGISTERED = "registered", "Registered"  # no vectors of its own
        EMBEDDING = "embedding", "Embedding"  # its slot is being filled, questions still use the active one
        EVALUATING = "evaluating", "Evaluating"  # its slot is complete; the quality gate runs
        ACTIVE = "active", "Active"  # questions and new chunks use it
        PREVIOUS = "previous", "Previous"  # was active; its slot is kept, so rollback is a switch
        REFUSED = "refused", "Refused"  # scored worse than the active one; the numbers are in `gate`
        FAILED = "failed", "Failed"  # the build stopped; `message` says why

    class Slot(models.TextChoices):
        A = "a", "a (embedding)"
        B = "b", "b (embedding_b)"

    # The inference API's model id: the name of its directory under RAGSITE_RETRIEVERS_DIR.
    name = models.CharField(max_length=100, unique=True)
    # Empty for the base model, which the inference API serves by default.
    model_dir = models.CharField(max_length=1000, blank=True)
    source_dir = models.CharField(max_length=1000, blank=True)
    # The training job's metrics.json (eval.score is its own nDCG@10 on the held-out split).
    metrics = models.JSONField(default=dict, blank=True)
    # Empty when it owns no slot (its vectors were replaced, or it never had any).
    slot = models.CharField(max_length=1, choices=Slot.choices, blank=True, default="")
    status = models.CharField(max_length=20, choices=Status.choices, default=Status.REGISTERED)
    # The quality gate's record: dataset, mode, both retrievers' scores, the decision.
    gate = models.JSONField(default=dict, blank=True)
    message = models.TextField(blank=True)
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)
    activated_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["-created_at", "-id"]
        constraints = [
            models.UniqueConstraint(
                fields=["slot"], condition=~Q(slot=""), name="retriever_one_owner_per_slot"
            ),
            models.UniqueConstraint(
                fields=["status"], condition=Q(status="active"), name="retriever_one_active"
            ),
        ]

    def __str__(self) -> str:
        return self.name

    @property
    def column(self) -> str | None:
        """The Chunk column of its vectors, if it owns a slot."""
        return SLOT_COLUMNS[self.slot] if self.slot else None
