from django.db import models


class Heartbeat(models.Model):
    """A round trip through the broker to a worker and back into the database."""

    created_at = models.DateTimeField(auto_now_add=True)
    processed_at = models.DateTimeField(null=True, blank=True)
    worker = models.CharField(max_length=255, blank=True)

    def __str__(self) -> str:
        return f"heartbeat {self.pk} ({'done' if self.processed_at else 'pending'})"
