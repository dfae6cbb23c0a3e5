from collections.abc import Iterator
from typing import Any
from urllib.parse import parse_qs, urlsplit

import pytest
from django.test import Client

from tests.accounts.oidc import CLIENT_ID, CLIENT_SECRET, ForgingProvider


@pytest.fixture
def forging_provider() -> Iterator[ForgingProvider]:
    from ragsite.devstack import free_port

    provider = ForgingProvider(port=free_port())
    provider.start()
    yield provider
    provider.stop()


@pytest.fixture
def sso(settings: Any, forging_provider: ForgingProvider) -> Iterator[ForgingProvider]:
    """Single sign-on on, against the forging provider."""
    from accounts.provider import provider_metadata_forget

    settings.RAGSITE_OIDC_ISSUER = forging_provider.issuer
    settings.RAGSITE_OIDC_PROVIDER_NAME = "Test IdP"
    settings.OIDC_RP_CLIENT_ID = CLIENT_ID
    settings.OIDC_RP_CLIENT_SECRET = CLIENT_SECRET
    provider_metadata_forget()
    yield forging_provider
    provider_metadata_forget()


def sign_in_start(client: Client, next_path: str = "/") -> tuple[str, str]:
    """Start a sign-in as the browser would; returns the state and nonce the site sent to the provider."""
    response = client.get(f"/oidc/authenticate/?next={next_path}")
    assert response.status_code == 302, response.content
    query = parse_qs(urlsplit(response["Location"]).query)
    return query["state"][0], query["nonce"][0]
