"""The API tokens page: create (the token shown once), revoke, staff only, scope limited to what one reads."""

from __future__ import annotations

import re
from datetime import timedelta
from typing import Any

import pytest
from django.contrib.auth.models import User
from django.test import Client
from django.utils import timezone

from api.models import ApiToken
from api.tokens import token_hash
from tests.factories import UserFactory

from .factories import make_collection, make_group, make_staff, make_token

pytestmark = pytest.mark.django_db

HTMX: dict[str, Any] = {"HTTP_HX_REQUEST": "true"}


@pytest.fixture
def staff() -> User:
    return make_staff()


@pytest.fixture
def client_for(staff: User) -> Client:
    client = Client()
    client.force_login(staff)
    return client


def _in_days(days: int) -> str:
    return (timezone.now() + timedelta(days=days)).date().isoformat()


def test_the_page_is_for_staff_only_and_linked_from_the_nav(client_for: Client) -> None:
    plain = Client()
    plain.force_login(UserFactory.create())
    assert plain.get("/api/tokens/").status_code == 302
    assert Client().get("/api/tokens/").status_code == 302
    html = client_for.get("/").content.decode()
    assert 'href="/api/tokens/"' in html


def test_creating_a_token_shows_it_once_and_stores_only_its_hash(client_for: Client, staff: User) -> None:
    response = client_for.post("/api/tokens/", {"name": "Chat bot", "expires_on": _in_days(30)}, **HTMX)

    html = response.content.decode()
    (secret,) = re.findall(r"rs_[0-9a-f]{12}_[A-Za-z0-9_-]{43}", html)
    token = ApiToken.objects.get()
    assert token.user == staff and token.token_hash == token_hash(secret)
    assert "shown this once" in html and 'id="token-panel"' in html and "<html" not in html
    # Listed afterwards by its prefix only.
    again = client_for.get("/api/tokens/").content.decode()
    assert secret not in again and f"rs_{token.prefix}_…" in again


def test_a_token_may_be_scoped_only_to_collections_one_reads(client_for: Client, staff: User) -> None:
    readers = make_group()
    staff.groups.add(readers)
    mine, foreign = make_collection(readers=readers), make_collection(readers=make_group())
    page = client_for.get("/api/tokens/").content.decode()
    assert mine.name in page and foreign.name not in page

    data = {"name": "Scoped", "expires_on": _in_days(30), "collections": [foreign.pk]}
    response = client_for.post("/api/tokens/", data, **HTMX)
    assert "Select a valid choice" in response.content.decode() and not ApiToken.objects.exists()
    client_for.post("/api/tokens/", {**data, "collections": [mine.pk]}, **HTMX)
    assert list(ApiToken.objects.get().collections.all()) == [mine]


@pytest.mark.parametrize(
    ("data", "message"),
    [
        ({"name": "", "expires_on": _in_days(30)}, "This field is required"),
        ({"name": "Old", "expires_on": _in_days(-1)}, "The expiry must be in the future"),
        ({"name": "Long", "expires_on": _in_days(400)}, "at most 365 days"),
        ({"name": "Bad date", "expires_on": "soon"}, "Enter a valid date"),
    ],
)
def test_bad_input_shows_the_form_again_with_the_reason(
    client_for: Client, data: dict[str, str], message: str
) -> None:
    response = client_for.post("/api/tokens/", data, **HTMX)
    assert response.status_code == 200 and message in response.content.decode()
    assert not ApiToken.objects.exists()


def test_revoking_ends_the_token_and_only_its_owner_may(client_for: Client, staff: User) -> None:
    token, _ = make_token(user=staff)
    others, _ = make_token(user=make_staff())

    response = client_for.post(f"/api/tokens/{token.pk}/revoke/", **HTMX)
    assert "Revoked" in response.content.decode()
    token.refresh_from_db()
    assert token.revoked_at is not None
    assert client_for.post(f"/api/tokens/{others.pk}/revoke/").status_code == 404
    others.refresh_from_db()
    assert others.revoked_at is None
