import redis
from django.conf import settings

_clients: dict[str, redis.Redis] = {}


def redis_client() -> redis.Redis:
    """The Redis of the broker, shared by throttling and status checks."""
    url = str(settings.CELERY_BROKER_URL)
    client = _clients.get(url)
    if client is None:
        client = redis.Redis.from_url(url, socket_connect_timeout=2, socket_timeout=2)
        _clients[url] = client
    return client
