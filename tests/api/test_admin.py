"""Tokens in the admin: made for oneself and shown once, revoked not deleted, one's own only."""

from __future__ import annotations

import re
from datetime import timedelta

import pytest
from django.contrib.auth.models import Permission, User
from django.test import Client
from django.utils import timezone

from api.models import ApiToken
from api.tokens import token_hash
from ops.models import AuditEvent

from .factories import make_staff, make_token

pytestmark = pytest.mark.django_db


@pytest.fixture
def admin_client_for() -> tuple[Client, User]:
    staff = make_staff()
    staff.user_permissions.add(
        *Permission.objects.filter(
            content_type__app_label="api", codename__in=["add_apitoken", "view_apitoken"]
        )
    )
    client = Client()
    client.force_login(staff)
    return client, staff


def test_a_token_made_in_the_admin_is_its_makers_and_shown_once(
    admin_client_for: tuple[Client, User],
) -> None:
    client, staff = admin_client_for
    expires = timezone.now() + timedelta(days=10)
    response = client.post(
        "/admin/api/apitoken/add/",
        {
            "name": "Nightly export",
            "expires_at_0": expires.date().isoformat(),
            "expires_at_1": "12:00:00",
            "rate_limit_per_minute": "30",
        },
        follow=True,
    )
    html = response.content.decode()
    (secret,) = re.findall(r"rs_[0-9a-f]{12}_[A-Za-z0-9_-]{43}", html)
    token = ApiToken.objects.get()
    assert (
        token.user == staff and token.token_hash == token_hash(secret) and token.rate_limit_per_minute == 30
    )
    assert AuditEvent.objects.filter(action="api_token.create").count() == 1


def test_the_admin_refuses_a_past_expiry_in_words(admin_client_for: tuple[Client, User]) -> None:
    client, _ = admin_client_for
    past = timezone.now() - timedelta(days=1)
    data = {"name": "x", "expires_at_0": past.date().isoformat(), "expires_at_1": "00:00:00"}
    data["rate_limit_per_minute"] = "60"
    response = client.post("/admin/api/apitoken/add/", data)
    assert "The expiry must be in the future" in response.content.decode()
    assert not ApiToken.objects.exists()


def test_staff_see_their_own_tokens_only(admin_client_for: tuple[Client, User]) -> None:
    client, staff = admin_client_for
    make_token(user=staff, name="mine")
    make_token(user=make_staff(), name="someone else's")
    html = client.get("/admin/api/apitoken/").content.decode()
    assert "mine" in html and "someone else&#x27;s" not in html


def test_the_revoke_action_revokes_and_audits() -> None:
    superuser = make_staff()
    superuser.is_superuser = True
    superuser.save()
    token, _ = make_token(user=make_staff())
    client = Client()
    client.force_login(superuser)
    response = client.post(
        "/admin/api/apitoken/", {"action": "revoke_tokens", "_selected_action": [token.pk]}, follow=True
    )
    assert "revoked" in response.content.decode()
    token.refresh_from_db()
    assert token.revoked_at is not None
    assert AuditEvent.objects.get(action="api_token.revoke").actor == superuser
