"""Checks of the outside services the web app and the workers depend on."""

import redis
from django.conf import settings
from django.db import connection


def database_check() -> str | None:
    """Return None when PostgreSQL answers, else the reason it does not."""
    try:
        with connection.cursor() as cursor:
            cursor.execute("SELECT 1")
    except Exception as exc:
        return f"{type(exc).__name__}: {exc}".strip()
    return None


def broker_check() -> str | None:
    """Return None when the Celery broker (Redis) answers, else the reason it does not."""
    client = redis.Redis.from_url(settings.CELERY_BROKER_URL, socket_connect_timeout=2, socket_timeout=2)
    try:
        client.ping()
    except Exception as exc:
        return f"{type(exc).__name__}: {exc}".strip()
    finally:
        client.close()
    return None
