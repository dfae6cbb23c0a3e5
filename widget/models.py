from django.conf import settings
from django.contrib.postgres.fields import ArrayField
from django.core.validators import MinValueValidator
from django.db import models

from ingest.models import Collection


class WidgetKey(models.Model):
    """What one embedded widget may read, from which sites, how often, and whether it needs visitor tokens."""

    public_id = models.CharField(max_length=40, unique=True, editable=False)
    name = models.CharField(max_length=200, help_text="Where it is embedded, e.g. “Helpdesk (Zendesk)”.")
    collections = models.ManyToManyField(Collection, related_name="widget_keys")
    allowed_origins = ArrayField(models.CharField(max_length=255), default=list, blank=True)
    rate_limit_per_minute = models.PositiveIntegerField(
        default=60,
        validators=[MinValueValidator(1)],
        help_text="Questions per minute through this key, all visitors together.",
    )
    visitor_rate_limit_per_minute = models.PositiveIntegerField(
        default=10,
        validators=[MinValueValidator(1)],
        help_text="Questions per minute from one visitor (token visitor id, else IP address).",
    )
    is_enabled = models.BooleanField(default=True)
    requires_visitor_token = models.BooleanField(
        default=True,
        help_text="Refuse questions without a token minted by the host site's backend. Untick only for a "
        "widget meant for anonymous visitors (a public help centre).",
    )
    # The signing secret is derived from SECRET_KEY and this salt (see widget/tokens.py): the database
    # alone holds nothing that can mint tokens, and a rotation replaces the salt.
    secret_salt = models.CharField(max_length=64, editable=False)
    created_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    created_at = models.DateTimeField(auto_now_add=True)
    secret_rotated_at = models.DateTimeField(null=True, blank=True)
    last_used_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["name"]

    def __str__(self) -> str:
        return f"{self.name} ({self.public_id})"


class WidgetExchange(models.Model):
    """One question asked through a widget and what it was answered."""

    class Status(models.TextChoices):
        STREAMING = "streaming", "Streaming"
        ANSWERED = "answered", "Answered"
        BUSY = "busy", "Busy (model at capacity)"
        FAILED = "failed", "Failed"
        CANCELLED = "cancelled", "Cancelled by the visitor"

    class Feedback(models.TextChoices):
        NONE = "", "No feedback"
        HELPFUL = "helpful", "Helpful"
        WRONG = "wrong", "Wrong or unhelpful"

    # Kept with the key: disabling a key is how it is retired, so the log of what it answered survives.
    key = models.ForeignKey(WidgetKey, on_delete=models.PROTECT, related_name="exchanges")
    visitor = models.CharField(max_length=200, blank=True)
    origin = models.CharField(max_length=255, blank=True)
    question = models.TextField()
    answer = models.TextField(blank=True)
    sources = models.JSONField(default=list, blank=True)
    status = models.CharField(max_length=20, choices=Status.choices, default=Status.STREAMING)
    error = models.TextField(blank=True)
    request_id = models.CharField(max_length=64, blank=True)
    feedback = models.CharField(max_length=20, choices=Feedback.choices, blank=True, default=Feedback.NONE)
    feedback_note = models.TextField(blank=True)
    feedback_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    created_at = models.DateTimeField(auto_now_add=True, db_index=True)
    finished_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["-created_at"]

    def __str__(self) -> str:
        return f"{self.key.public_id}: {self.question[:60]}"
