"""Checks of the outside services the web app and the workers depend on."""

import logging

import redis
from django.conf import settings
from django.db import connection

logger = logging.getLogger(__name__)


def database_check() -> bool:
    """Whether PostgreSQL answers; why it does not goes to the log (it names hosts and roles)."""
    try:
        with connection.cursor() as cursor:
            cursor.execute("SELECT 1")
    except Exception as exc:
        logger.warning(
            "health check: the database does not answer: %s: %s", type(exc).__name__, exc, exc_info=True
        )
        return False
    return True


def broker_check() -> bool:
    """Whether the Celery broker (Redis) answers; why it does not goes to the log."""
    client = redis.Redis.from_url(settings.CELERY_BROKER_URL, socket_connect_timeout=2, socket_timeout=2)
    try:
        client.ping()
    except Exception as exc:
        logger.warning(
            "health check: the broker does not answer: %s: %s", type(exc).__name__, exc, exc_info=True
        )
        return False
    finally:
        client.close()
    return True
