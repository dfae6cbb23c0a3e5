"""ID tokens the provider's token endpoint answers: a genuine one signs in, no forged one does."""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
from typing import Any

import jwt
import pytest
from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat
from django.contrib.auth.models import User
from django.test import Client

from accounts.models import OidcIdentity
from ops.models import AuditEvent
from tests.accounts.conftest import sign_in_start
from tests.accounts.oidc import CLIENT_ID, ForgingProvider, new_rsa_key
from tests.search.factories import make_group, make_user

pytestmark = pytest.mark.django_db


def _callback(client: Client, state: str) -> Any:
    return client.get(f"/oidc/callback/?code=the-code&state={state}")


def _assert_not_signed_in(client: Client, response: Any, status: int) -> None:
    assert response.status_code == status
    assert b'id="sso-error"' in response.content
    assert "_auth_user_id" not in client.session
    assert not OidcIdentity.objects.exists()


def test_a_genuine_id_token_signs_in_creates_the_user_and_maps_the_groups_claim(
    client: Client, sso: ForgingProvider
) -> None:
    state, nonce = sign_in_start(client, "/ingest/")
    sso.id_token = sso.sign(sso.claims(nonce=nonce, client_id=CLIENT_ID, sub="alice"))
    sso.userinfo = {"sub": "alice", "email": "alice@example.org", "name": "Alice Liddell", "groups": ["hr"]}

    response = _callback(client, state)

    assert response.status_code == 302 and response["Location"] == "/ingest/"
    user = User.objects.get(oidc_identity__subject="alice", oidc_identity__issuer=sso.issuer)
    assert client.session["_auth_user_id"] == str(user.pk)
    assert (user.username, user.email, user.first_name) == ("alice@example.org", "alice@example.org", "Alice")
    assert list(user.groups.values_list("name", flat=True)) == ["hr"]
    assert not user.has_usable_password()
    event = AuditEvent.objects.get(action="user.oidc_login")
    assert event.details["groups_added"] == ["hr"] and event.details["created"] is True
    # The code was exchanged with the client's credentials and the PKCE verifier.
    assert "code_verifier=" in sso.token_requests[0]["body"]


@pytest.mark.parametrize(
    ("overrides", "reason"),
    [
        ({"aud": "another-client"}, "audience"),
        ({"aud": ["another-client", CLIENT_ID], "azp": "another-client"}, "azp"),
        ({"iss": "http://127.0.0.1:9/evil"}, "issuer"),
        ({"exp": 1_000_000_000, "iat": 999_999_000}, "expired"),
        ({"nonce": "a-nonce-from-another-sign-in"}, "nonce"),
        ({"nonce": None}, "nonce"),
        ({"exp": None}, "not valid"),
        ({"sub": None}, "not valid"),
    ],
)
def test_an_id_token_with_a_wrong_claim_is_refused(
    client: Client, sso: ForgingProvider, overrides: dict[str, Any], reason: str
) -> None:
    state, nonce = sign_in_start(client)
    sso.id_token = sso.sign(sso.claims(client_id=CLIENT_ID, **{"nonce": nonce, **overrides}))
    sso.userinfo = {"sub": "alice", "groups": []}

    response = _callback(client, state)

    _assert_not_signed_in(client, response, 401)
    assert reason in response.content.decode()


def _hs256_keyed_with(secret: bytes, claims: dict[str, Any], kid: str) -> str:
    """The algorithm-confusion forgery: HMAC keyed with the public key (PyJWT refuses to make it)."""

    def b64(data: bytes) -> str:
        return base64.urlsafe_b64encode(data).rstrip(b"=").decode()

    header = b64(json.dumps({"alg": "HS256", "typ": "JWT", "kid": kid}).encode())
    signing_input = f"{header}.{b64(json.dumps(claims).encode())}"
    return f"{signing_input}.{b64(hmac.new(secret, signing_input.encode(), hashlib.sha256).digest())}"


def forgeries(sso: ForgingProvider, claims: dict[str, Any]) -> dict[str, str]:
    """ID tokens for `claims` that the provider did not sign as they are."""
    public_pem = sso.key.public_key().public_bytes(Encoding.PEM, PublicFormat.SubjectPublicKeyInfo)
    header, _, signature = sso.sign(claims).split(".")
    mallory = sso.sign({**claims, "sub": "mallory"}).split(".")[1]
    return {
        "signed by another key": sso.sign(claims, key=new_rsa_key()),
        "signed by another key under an unknown kid": sso.sign(claims, key=new_rsa_key(), kid="attacker"),
        "alg none": jwt.encode(claims, "", algorithm="none", headers={"kid": sso.kid}),
        "HS256 keyed with the public key": _hs256_keyed_with(public_pem, claims, sso.kid),
        "payload swapped under a genuine signature": f"{header}.{mallory}.{signature}",
        "signature stripped": f"{header}.{mallory}.",
        "not a JWT": "not-a-jwt",
        "empty": "",
    }


def test_no_forged_id_token_is_accepted(client: Client, sso: ForgingProvider) -> None:
    sso.userinfo = {"sub": "alice", "groups": []}
    accepted = []
    for name in forgeries(sso, {}):
        client.logout()
        state, nonce = sign_in_start(client)
        sso.id_token = forgeries(sso, sso.claims(nonce=nonce, client_id=CLIENT_ID))[name]
        response = _callback(client, state)
        if response.status_code != 401 or "_auth_user_id" in client.session:
            accepted.append((name, response.status_code))
    assert accepted == []
    assert not OidcIdentity.objects.exists()


def test_a_userinfo_answer_about_another_subject_is_refused(client: Client, sso: ForgingProvider) -> None:
    state, nonce = sign_in_start(client)
    sso.id_token = sso.sign(sso.claims(nonce=nonce, client_id=CLIENT_ID, sub="alice"))
    sso.userinfo = {"sub": "mallory", "groups": ["admins"]}

    _assert_not_signed_in(client, _callback(client, state), 401)


def test_an_address_shared_with_a_local_account_does_not_sign_into_it(
    client: Client, sso: ForgingProvider
) -> None:
    admin = make_user(username="admin", is_staff=True, is_superuser=True, email="admin@example.org")
    state, nonce = sign_in_start(client)
    sso.id_token = sso.sign(sso.claims(nonce=nonce, client_id=CLIENT_ID, sub="someone"))
    sso.userinfo = {"sub": "someone", "email": "admin@example.org", "preferred_username": "admin"}

    assert _callback(client, state).status_code == 302

    assert client.session["_auth_user_id"] != str(admin.pk)
    user = User.objects.get(oidc_identity__subject="someone")
    assert user.username.startswith("admin-") and not user.is_superuser


def test_a_user_disabled_here_cannot_sign_in(client: Client, sso: ForgingProvider) -> None:
    state, nonce = sign_in_start(client)
    sso.id_token = sso.sign(sso.claims(nonce=nonce, client_id=CLIENT_ID, sub="alice"))
    sso.userinfo = {"sub": "alice", "groups": []}
    assert _callback(client, state).status_code == 302
    User.objects.filter(oidc_identity__subject="alice").update(is_active=False)
    client.logout()

    state, nonce = sign_in_start(client)
    sso.id_token = sso.sign(sso.claims(nonce=nonce, client_id=CLIENT_ID, sub="alice"))
    response = _callback(client, state)

    assert response.status_code == 403 and b"disabled" in response.content
    assert "_auth_user_id" not in client.session


def test_a_groups_claim_that_is_not_a_list_of_names_is_refused(client: Client, sso: ForgingProvider) -> None:
    make_group(name="hr")
    state, nonce = sign_in_start(client)
    sso.id_token = sso.sign(sso.claims(nonce=nonce, client_id=CLIENT_ID, sub="alice"))
    sso.userinfo = {"sub": "alice", "groups": {"hr": True}}

    response = _callback(client, state)

    assert response.status_code == 403 and b"groups" in response.content
    assert not User.objects.filter(oidc_identity__subject="alice").exists()
