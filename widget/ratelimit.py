"""The widget's rate limits: ops' fixed windows, under the widget's own keys and Redis."""

from __future__ import annotations

from collections.abc import Sequence

from django.conf import settings

from ops.ratelimit import Limit
from ops.ratelimit import rate_limit_hit as _rate_limit_hit

__all__ = ["KEY_PREFIX", "Limit", "rate_limit_hit"]

KEY_PREFIX = "ragsite:widget:rate:"


def _redis_url() -> str:
    return str(getattr(settings, "WIDGET_REDIS_URL", None) or settings.CELERY_BROKER_URL)


async def rate_limit_hit(*, limits: Sequence[Limit]) -> float | None:
    """Count one hit against every limit; None when allowed, else the seconds until it would be."""
    return await _rate_limit_hit(limits=limits, key_prefix=KEY_PREFIX, redis_url=_redis_url())
