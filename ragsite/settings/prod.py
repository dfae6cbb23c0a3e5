from django.core.exceptions import ImproperlyConfigured

from .base import *  # noqa: F403
from .base import SECRET_KEY, env

DEBUG = env.bool("DEBUG", default=False)

_INSECURE_MARKERS = ("insecure", "change-me", "django-insecure")
if len(SECRET_KEY) < 50 or any(marker in SECRET_KEY for marker in _INSECURE_MARKERS):
    raise ImproperlyConfigured(
        "SECRET_KEY is missing or insecure: set it to a random string of at least 50 characters "
        "(e.g. python -c 'import secrets; print(secrets.token_urlsafe(50))')."
    )

SESSION_COOKIE_SECURE = True
CSRF_COOKIE_SECURE = True
SECURE_SSL_REDIRECT = env.bool("SECURE_SSL_REDIRECT", default=True)
SECURE_HSTS_SECONDS = env.int("SECURE_HSTS_SECONDS", default=31536000)
SECURE_HSTS_INCLUDE_SUBDOMAINS = True
SECURE_PROXY_SSL_HEADER = ("HTTP_X_FORWARDED_PROTO", "https")
