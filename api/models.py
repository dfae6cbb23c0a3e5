from django.conf import settings
from django.core.validators import MinValueValidator
from django.db import models

from ingest.models import Collection


class ApiToken(models.Model):
    """A staff member's personal token for the ask API: stored hashed, revocable, expiring, maybe scoped.

    The token itself is `rs_<prefix>_<secret>`; only `prefix` (to find the row) and the SHA-256 of the whole
    token are kept, so the database alone cannot be used to call the API (see api/tokens.py).
    """

    user = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="api_tokens")
    name = models.CharField(max_length=200, help_text="What uses it, e.g. “Support chat bot”.")
    prefix = models.CharField(max_length=16, unique=True, editable=False)
    token_hash = models.CharField(max_length=64, editable=False)
    collections = models.ManyToManyField(
        Collection,
        blank=True,
        related_name="api_tokens",
        help_text="Empty: every collection its owner may read; never more than the owner reads now.",
    )
    expires_at = models.DateTimeField()
    revoked_at = models.DateTimeField(null=True, blank=True)
    rate_limit_per_minute = models.PositiveIntegerField(
        default=60, validators=[MinValueValidator(1)], help_text="Requests per minute through this token."
    )
    created_at = models.DateTimeField(auto_now_add=True)
    last_used_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["-created_at"]

    def __str__(self) -> str:
        return f"{self.name} (rs_{self.prefix}_…)"
