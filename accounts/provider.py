"""The one client of the OpenID Connect provider's discovery document (the login flow itself is
mozilla-django-oidc's, which calls the endpoints found here)."""

from __future__ import annotations

import threading
import time
from typing import Any

import httpx
from django.conf import settings

from .errors import ProviderUnavailable

# Endpoints rarely move; an hour's cache spares each login a round trip, and a process restart refreshes it.
DISCOVERY_TTL_S = 3600.0
REQUIRED_METADATA = ("issuer", "authorization_endpoint", "token_endpoint", "jwks_uri")

_lock = threading.Lock()
_cache: dict[str, tuple[float, dict[str, Any]]] = {}


def oidc_enabled() -> bool:
    return bool(settings.RAGSITE_OIDC_ISSUER)


def provider_metadata() -> dict[str, Any]:
    """The provider's .well-known/openid-configuration, fetched on first use and cached per issuer."""
    issuer = settings.RAGSITE_OIDC_ISSUER.rstrip("/")
    now = time.monotonic()
    with _lock:
        cached = _cache.get(issuer)
        if cached is not None and now - cached[0] < DISCOVERY_TTL_S:
            return cached[1]
    url = f"{issuer}/.well-known/openid-configuration"
    try:
        response = httpx.get(url, timeout=settings.OIDC_TIMEOUT, follow_redirects=False)
        response.raise_for_status()
        metadata = response.json()
    except (httpx.HTTPError, ValueError) as exc:
        raise ProviderUnavailable(
            f"The identity provider at {issuer} did not answer its OpenID Connect discovery document "
            f"({type(exc).__name__}). Try again in a moment; if it persists, tell an administrator."
        ) from exc
    if not isinstance(metadata, dict) or any(not isinstance(metadata.get(k), str) for k in REQUIRED_METADATA):
        raise ProviderUnavailable(
            f"{url} is not an OpenID Connect discovery document (it lacks {', '.join(REQUIRED_METADATA)})."
        )
    # OpenID Connect Discovery 1.0, section 4.3: the document must name the issuer it was fetched from.
    if metadata["issuer"].rstrip("/") != issuer:
        raise ProviderUnavailable(
            f"The provider at {issuer} calls itself {metadata['issuer']}: check RAGSITE_OIDC_ISSUER."
        )
    with _lock:
        _cache[issuer] = (now, metadata)
    return metadata


def provider_metadata_forget() -> None:
    """Drop the cached discovery documents (tests, or after the provider moved its endpoints)."""
    with _lock:
        _cache.clear()
