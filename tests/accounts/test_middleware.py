"""Single sign-on sessions are rechecked with the provider once RAGSITE_OIDC_SESSION_RECHECK_S has passed."""

from __future__ import annotations

import pytest
from django.test import Client

from tests.accounts.conftest import sign_in_start
from tests.accounts.oidc import CLIENT_ID, ForgingProvider
from tests.search.factories import PASSWORD, make_user

pytestmark = pytest.mark.django_db
PAGE = {"Accept": "text/html,application/xhtml+xml"}


def _signed_in(client: Client, sso: ForgingProvider) -> None:
    state, nonce = sign_in_start(client)
    sso.id_token = sso.sign(sso.claims(nonce=nonce, client_id=CLIENT_ID))
    sso.userinfo = {"sub": "alice"}
    assert client.get(f"/oidc/callback/?code=c&state={state}").status_code == 302


def _recheck_due(client: Client) -> None:
    session = client.session
    session["oidc_id_token_expiration"] = 0
    session.save()


def test_within_the_interval_pages_load_without_asking_the_provider(
    client: Client, sso: ForgingProvider
) -> None:
    _signed_in(client, sso)

    assert client.get("/", headers=PAGE).status_code == 200


def test_after_the_interval_a_page_load_asks_the_provider_silently(
    client: Client, sso: ForgingProvider
) -> None:
    _signed_in(client, sso)
    _recheck_due(client)

    response = client.get("/?q=1", headers=PAGE)

    assert response.status_code == 302
    assert response["Location"].startswith(f"{sso.issuer}/auth?") and "prompt=none" in response["Location"]
    assert client.session["oidc_login_next"] == "/?q=1"


def test_after_the_interval_an_htmx_request_is_sent_to_the_provider_with_hx_redirect(
    client: Client, sso: ForgingProvider
) -> None:
    _signed_in(client, sso)
    _recheck_due(client)

    response = client.post(
        "/ask/",
        {"question": "q"},
        HTTP_HX_REQUEST="true",
        HTTP_HX_CURRENT_URL="http://testserver/conversations/7/",
    )

    assert response.status_code == 200 and "prompt=none" in response["HX-Redirect"]
    assert client.session["oidc_login_next"] == "/conversations/7/"


def test_the_provider_saying_login_required_ends_the_session(client: Client, sso: ForgingProvider) -> None:
    _signed_in(client, sso)
    _recheck_due(client)
    client.get("/", headers=PAGE)
    state = next(iter(client.session["oidc_states"]))

    response = client.get(f"/oidc/callback/?error=login_required&state={state}")

    assert response.status_code == 403
    assert "_auth_user_id" not in client.session
    assert client.get("/", headers=PAGE)["Location"].startswith("/accounts/login/")


def test_password_sessions_and_event_streams_are_not_rechecked(client: Client, sso: ForgingProvider) -> None:
    make_user(username="demo")
    client.post("/accounts/login/", {"username": "demo", "password": PASSWORD})
    _recheck_due(client)
    assert client.get("/", headers=PAGE).status_code == 200

    sso_client = Client()
    _signed_in(sso_client, sso)
    _recheck_due(sso_client)
    stream = sso_client.get("/answers/999999/stream/", HTTP_ACCEPT="text/event-stream")
    assert stream.status_code != 302
