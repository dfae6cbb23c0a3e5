"""The login page with and without single sign-on, and the callback's answers to bad or failed sign-ins."""

from __future__ import annotations

from typing import Any

import pytest
from django.test import Client

from ragsite.devstack import free_port
from tests.accounts.conftest import sign_in_start
from tests.accounts.oidc import CLIENT_ID, ForgingProvider
from tests.search.factories import PASSWORD, make_user

pytestmark = pytest.mark.django_db


def test_without_an_issuer_sso_is_off_and_password_login_works_as_before(client: Client) -> None:
    make_user(username="demo")

    page = client.get("/accounts/login/")
    assert page.status_code == 200
    assert b"Sign in with" not in page.content and b'id="id_password"' in page.content
    assert client.get("/oidc/authenticate/").status_code == 404
    assert client.get("/oidc/callback/?code=x&state=y").status_code == 404

    response = client.post("/accounts/login/", {"username": "demo", "password": PASSWORD})
    assert response.status_code == 302 and "_auth_user_id" in client.session


def test_with_an_issuer_the_login_page_offers_the_provider_beside_the_password_form(
    client: Client, sso: ForgingProvider
) -> None:
    page = client.get("/accounts/login/?next=/ingest/")

    assert b"Sign in with Test IdP" in page.content
    assert b"/oidc/authenticate/?next=/ingest/" in page.content
    assert b'id="id_password"' in page.content


def test_the_sign_in_starts_at_the_discovered_endpoint_with_state_nonce_and_pkce(
    client: Client, sso: ForgingProvider
) -> None:
    response = client.get("/oidc/authenticate/?next=/ingest/")

    location = response["Location"]
    assert location.startswith(f"{sso.issuer}/auth?")
    for parameter in (
        "state=",
        "nonce=",
        "code_challenge=",
        "code_challenge_method=S256",
        f"client_id={CLIENT_ID}",
    ):
        assert parameter in location
    assert "scope=openid+email+profile+groups" in location


def test_password_login_turned_off_refuses_passwords_even_the_demo_admins(
    client: Client, sso: ForgingProvider, settings: Any
) -> None:
    settings.RAGSITE_LOCAL_LOGIN = False
    settings.AUTHENTICATION_BACKENDS = ["accounts.backends.OidcBackend"]
    make_user(username="admin", is_staff=True, is_superuser=True)

    page = client.get("/accounts/login/")
    assert b"Sign in with Test IdP" in page.content and b'id="id_password"' not in page.content

    refused = client.post("/accounts/login/", {"username": "admin", "password": PASSWORD})
    assert refused.status_code == 403 and b"Password login is turned off" in refused.content
    admin = client.post("/admin/login/", {"username": "admin", "password": PASSWORD})
    assert admin.status_code == 403
    assert "_auth_user_id" not in client.session


def test_a_replayed_state_is_refused(client: Client, sso: ForgingProvider) -> None:
    state, nonce = sign_in_start(client)
    sso.id_token = sso.sign(sso.claims(nonce=nonce, client_id=CLIENT_ID))
    sso.userinfo = {"sub": "alice"}
    assert client.get(f"/oidc/callback/?code=c&state={state}").status_code == 302

    # The same callback URL again: in the browser that used it, and in another one that captured it.
    replayed = client.get(f"/oidc/callback/?code=c&state={state}")
    elsewhere = Client()
    stolen = elsewhere.get(f"/oidc/callback/?code=c&state={state}")

    assert replayed.status_code == 400 and b"used already" in replayed.content
    assert stolen.status_code == 400 and "_auth_user_id" not in elsewhere.session
    assert len(sso.token_requests) == 1


def test_a_state_started_in_another_browser_is_refused(client: Client, sso: ForgingProvider) -> None:
    state, _ = sign_in_start(Client())

    response = client.get(f"/oidc/callback/?code=c&state={state}")

    assert response.status_code == 400 and b'id="sso-error"' in response.content
    assert sso.token_requests == []


def test_a_crafted_callback_link_signs_no_one_out(client: Client, sso: ForgingProvider) -> None:
    make_user(username="demo")
    client.post("/accounts/login/", {"username": "demo", "password": PASSWORD})

    assert client.get("/oidc/callback/?error=login_required&state=made-up").status_code == 403
    assert client.get("/oidc/callback/?code=c&state=made-up").status_code == 400

    assert "_auth_user_id" in client.session


def test_a_callback_without_code_or_state_is_a_readable_error(client: Client, sso: ForgingProvider) -> None:
    response = client.get("/oidc/callback/?state=abc")

    assert response.status_code == 400 and b"incomplete" in response.content


def test_the_providers_refusal_is_shown_and_forgets_the_state(client: Client, sso: ForgingProvider) -> None:
    state, _ = sign_in_start(client)

    response = client.get(
        f"/oidc/callback/?error=access_denied&error_description=User+cancelled&state={state}"
    )

    assert response.status_code == 403 and b"User cancelled" in response.content
    assert state not in client.session.get("oidc_states", {})


def test_a_provider_that_is_down_before_the_sign_in_is_a_readable_503(client: Client, settings: Any) -> None:
    from accounts.provider import provider_metadata_forget

    settings.RAGSITE_OIDC_ISSUER = f"http://127.0.0.1:{free_port()}"
    provider_metadata_forget()

    response = client.get("/oidc/authenticate/")

    assert response.status_code == 503
    assert b"did not answer its OpenID Connect discovery document" in response.content
    provider_metadata_forget()


def test_a_provider_that_goes_down_during_the_sign_in_is_a_readable_503(
    client: Client, sso: ForgingProvider
) -> None:
    state, _ = sign_in_start(client)
    sso.stop()

    response = client.get(f"/oidc/callback/?code=c&state={state}")

    assert response.status_code == 503 and b"could not be reached" in response.content
    assert "_auth_user_id" not in client.session


def test_a_code_the_provider_will_not_exchange_is_refused(client: Client, sso: ForgingProvider) -> None:
    state, _ = sign_in_start(client)
    sso.token_status = 400

    response = client.get(f"/oidc/callback/?code=used&state={state}")

    assert response.status_code == 403 and b"would not exchange" in response.content


def test_a_discovery_document_naming_another_issuer_is_refused(
    client: Client, sso: ForgingProvider, settings: Any
) -> None:
    from accounts.provider import provider_metadata_forget

    settings.RAGSITE_OIDC_ISSUER = sso.issuer.replace("127.0.0.1", "localhost")
    provider_metadata_forget()

    response = client.get("/oidc/authenticate/")

    assert response.status_code == 503 and b"check RAGSITE_OIDC_ISSUER" in response.content
