"""Sources that documents come from by themselves, what each sync found, and each sync's record."""

from django.db import models

from ingest.models import Collection, Document

from .connectors import connector_choices


class Source(models.Model):
    """A place documents are synced from into one collection (a git repository, a web site, a share)."""

    name = models.CharField(max_length=200, unique=True)
    kind = models.CharField(max_length=30, choices=connector_choices)
    location = models.CharField(max_length=2000, help_text="A URL, or a path on the workers.")
    # A Fernet token of the JSON credentials (sources.crypto); never shown back.
    credentials_encrypted = models.TextField(blank=True, default="")
    collection = models.ForeignKey(Collection, on_delete=models.PROTECT, related_name="sources")
    # Minutes between scheduled syncs; 0: only by hand.
    schedule_minutes = models.PositiveIntegerField(default=60)
    # Glob patterns over an item's identity (a path, a URL), one a line; no include pattern takes every item.
    include_patterns = models.TextField(blank=True, default="")
    exclude_patterns = models.TextField(blank=True, default="")
    options = models.JSONField(default=dict, blank=True)
    enabled = models.BooleanField(default=True)
    # When a sync of it was last queued (by hand or by the schedule): the schedule counts from here.
    last_queued_at = models.DateTimeField(null=True, blank=True)
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["name"]

    def __str__(self) -> str:
        return self.name


class SourceItem(models.Model):
    """One item a source held at its last sync: its identity there, its version, and its document."""

    source = models.ForeignKey(Source, on_delete=models.CASCADE, related_name="items")
    identity = models.CharField(max_length=2000)
    version = models.CharField(max_length=500)
    url = models.CharField(max_length=2000, blank=True, default="")
    # Null once its document was deleted by hand: the next sync creates it again.
    document = models.ForeignKey(
        Document, null=True, blank=True, on_delete=models.SET_NULL, related_name="source_items"
    )
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        ordering = ["source_id", "identity"]
        constraints = [
            models.UniqueConstraint(fields=["source", "identity"], name="source_item_unique_identity")
        ]

    def __str__(self) -> str:
        return f"{self.source_id}:{self.identity}"


class SyncRun(models.Model):
    """One sync of a source: its counts, updated as it goes, and how it ended."""

    class Status(models.TextChoices):
        RUNNING = "running", "Running"
        SUCCEEDED = "succeeded", "Succeeded"
        FAILED = "failed", "Failed"

    source = models.ForeignKey(Source, on_delete=models.CASCADE, related_name="runs")
    status = models.CharField(max_length=20, choices=Status.choices, default=Status.RUNNING)
    started_at = models.DateTimeField(auto_now_add=True)
    finished_at = models.DateTimeField(null=True, blank=True)
    seen = models.PositiveIntegerField(default=0)
    new = models.PositiveIntegerField(default=0)
    changed = models.PositiveIntegerField(default=0)
    deleted = models.PositiveIntegerField(default=0)
    failed = models.PositiveIntegerField(default=0)
    # Why it failed, or which items failed and why; for a person to act on.
    message = models.TextField(blank=True, default="")

    class Meta:
        ordering = ["-started_at", "-id"]
        indexes = [models.Index(fields=["source", "-started_at"], name="sync_run_source_recent")]

    def __str__(self) -> str:
        return f"{self.source} {self.started_at:%Y-%m-%d %H:%M} {self.status}"
