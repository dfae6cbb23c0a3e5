"""The admin pages: creating a key shows its secret once and the snippet; feedback on exchanges."""

from __future__ import annotations

import html
import json
import re
from typing import Any

import pytest
from django.contrib.auth.models import Group, Permission, User
from django.test import Client

from tests.search.factories import CollectionFactory
from widget.models import WidgetExchange, WidgetKey
from widget.tokens import token_mint

from .factories import HOST_ORIGIN, SuperuserFactory, make_key

pytestmark = pytest.mark.django_db


@pytest.fixture
def admin_user() -> User:
    return SuperuserFactory.create()


@pytest.fixture
def admin_client(admin_user: User) -> Client:
    client = Client()
    client.force_login(admin_user)
    return client


def add_key(client: Client, **fields: Any) -> Any:
    data = {
        "name": "Helpdesk",
        "allowed_origins": "https://HelpDesk.example.com:443/\nhttp://127.0.0.1:8080",
        "is_enabled": "on",
        "rate_limit_per_minute": "60",
        "visitor_rate_limit_per_minute": "10",
        **fields,
    }
    return client.post("/admin/widget/widgetkey/add/", data)


def shown_secret(response: Any) -> str:
    match = re.search(r'<pre id="widget-secret"[^>]*>([0-9a-f]{64})</pre>', response.content.decode())
    assert match, response.content.decode()[:2000]
    return match.group(1)


def ask_with_token(public_id: str, token: str) -> int:
    return (
        Client()
        .post(
            f"/widget/v1/{public_id}/ask",
            data=json.dumps({"question": "Hi?", "token": token}),
            content_type="application/json",
            headers={"Origin": HOST_ORIGIN},
        )
        .status_code
    )


def test_creating_a_key_shows_its_secret_once_and_the_snippet_to_paste(
    admin_client: Client, admin_user: User
) -> None:
    collection = CollectionFactory.create()
    response = add_key(admin_client, collections=[collection.pk], requires_visitor_token="on")

    assert response.status_code == 200
    assert "no-store" in response["Cache-Control"]
    key = WidgetKey.objects.get(name="Helpdesk")
    assert key.created_by == admin_user
    assert key.allowed_origins == ["https://helpdesk.example.com", "http://127.0.0.1:8080"]
    assert list(key.collections.all()) == [collection]
    secret = shown_secret(response)
    snippet = f'<script src="http://testserver/widget/v1/widget.js" data-key="{key.public_id}"'
    assert snippet in html.unescape(response.content.decode())
    # The secret shown is the one that signs tokens; it is not stored and not shown again.
    token = token_mint(secret=secret, public_id=key.public_id, visitor_id="agent-1")
    assert ask_with_token(key.public_id, token) == 200
    assert secret not in str(WidgetKey.objects.filter(pk=key.pk).values().get())
    change_page = admin_client.get(f"/admin/widget/widgetkey/{key.pk}/change/").content.decode()
    assert secret not in change_page
    assert snippet in html.unescape(change_page)


def test_rotating_the_secret_refuses_tokens_signed_with_the_old_one(admin_client: Client) -> None:
    key, old_secret = make_key(requires_visitor_token=True)
    old_token = token_mint(secret=old_secret, public_id=key.public_id, visitor_id="agent-1")
    url = f"/admin/widget/widgetkey/{key.pk}/rotate-secret/"
    assert admin_client.get(url).status_code == 200
    assert WidgetKey.objects.get(pk=key.pk).secret_salt == key.secret_salt

    new_secret = shown_secret(admin_client.post(url))

    assert new_secret != old_secret
    assert ask_with_token(key.public_id, old_token) == 401
    assert (
        ask_with_token(key.public_id, token_mint(secret=new_secret, public_id=key.public_id, visitor_id="a"))
        == 200
    )


def test_invalid_origins_are_refused_in_the_form(admin_client: Client) -> None:
    collection = CollectionFactory.create()
    response = add_key(admin_client, collections=[collection.pk], allowed_origins="https://ok.example/path")
    assert response.status_code == 200
    assert "drop the path" in response.content.decode()
    assert not WidgetKey.objects.exists()


def test_staff_may_grant_a_key_only_collections_they_can_read() -> None:
    readers = Group.objects.create(name="support-readers")
    readable = CollectionFactory.create()
    readable.groups.set([readers])
    hidden = CollectionFactory.create()
    staff = User.objects.create_user(username="staff", is_staff=True)
    staff.groups.set([readers])
    staff.user_permissions.set(Permission.objects.filter(content_type__app_label="widget"))
    client = Client()
    client.force_login(staff)

    form_page = client.get("/admin/widget/widgetkey/add/").content.decode()
    assert readable.name in form_page and hidden.name not in form_page
    response = add_key(client, collections=[readable.pk, hidden.pk])

    assert "Select a valid choice" in response.content.decode()
    assert not WidgetKey.objects.exists()


def test_admins_see_what_support_asked_and_give_feedback(admin_client: Client, admin_user: User) -> None:
    key, _ = make_key()
    exchange = WidgetExchange.objects.create(
        key=key,
        visitor="agent-7",
        question="Can a laptop be returned after 40 days?",
        answer="No [1].",
        sources=[
            {"number": 1, "title": "Returns policy", "heading": "Laptops", "excerpt": "Within 30 days."}
        ],
        status=WidgetExchange.Status.ANSWERED,
    )
    listing = admin_client.get("/admin/widget/widgetexchange/").content.decode()
    assert "Can a laptop be returned after 40 days?" in listing
    detail = admin_client.get(f"/admin/widget/widgetexchange/{exchange.pk}/change/").content.decode()
    assert "Returns policy" in detail and "Within 30 days." in detail

    admin_client.post(
        f"/admin/widget/widgetexchange/{exchange.pk}/change/",
        {"feedback": "wrong", "feedback_note": "Laptops: 30 days, but business customers get 60."},
    )
    exchange.refresh_from_db()
    assert exchange.feedback == WidgetExchange.Feedback.WRONG
    assert exchange.feedback_note.startswith("Laptops: 30 days")
    assert exchange.feedback_by == admin_user

    admin_client.post(
        "/admin/widget/widgetexchange/",
        {"action": "mark_helpful", "_selected_action": [exchange.pk]},
    )
    exchange.refresh_from_db()
    assert exchange.feedback == WidgetExchange.Feedback.HELPFUL


def test_disabling_keys_from_the_list_refuses_their_widgets(admin_client: Client) -> None:
    key, _ = make_key()
    admin_client.post("/admin/widget/widgetkey/", {"action": "disable_keys", "_selected_action": [key.pk]})
    assert not WidgetKey.objects.get(pk=key.pk).is_enabled


def test_deleting_a_key_is_recorded_in_the_audit_log(admin_client: Client, admin_user: User) -> None:
    from ops.models import AuditEvent

    key, _ = make_key()
    response = admin_client.post(f"/admin/widget/widgetkey/{key.pk}/delete/", {"post": "yes"})
    assert response.status_code == 302
    assert not WidgetKey.objects.filter(pk=key.pk).exists()
    event = AuditEvent.objects.get(action="widget_key.delete")
    assert (event.actor, event.target_id, event.details["public_id"]) == (
        admin_user,
        str(key.pk),
        key.public_id,
    )


def test_a_staff_admin_sees_only_the_exchange_sources_of_collections_they_can_read() -> None:
    from tests.search.factories import add_chunks, make_document

    readers = Group.objects.create(name="support-readers")
    shared = CollectionFactory.create(groups=[readers])
    legal = CollectionFactory.create()
    (readable,) = add_chunks(make_document(collection=shared, title="Returns policy"), "Laptops: 30 days.")
    (hidden,) = add_chunks(make_document(collection=legal, title="Pending lawsuit"), "Settle below 2M.")
    key, _ = make_key(collections=[shared, legal])
    exchange = WidgetExchange.objects.create(
        key=key,
        question="Can a laptop be returned?",
        answer="Yes [1].",
        sources=[
            {
                "number": 1,
                "title": "Returns policy",
                "heading": "",
                "excerpt": "Laptops: 30…",
                "text": readable.text,
            },
            {
                "number": 2,
                "title": "Pending lawsuit",
                "heading": "",
                "excerpt": "Settle below…",
                "text": hidden.text,
            },
        ],
        status=WidgetExchange.Status.ANSWERED,
    )
    staff = User.objects.create_user(username="staff", is_staff=True)
    staff.groups.set([readers])
    staff.user_permissions.set(Permission.objects.filter(content_type__app_label="widget"))
    client = Client()
    client.force_login(staff)

    detail = client.get(f"/admin/widget/widgetexchange/{exchange.pk}/change/").content.decode()

    assert "Returns policy" in detail
    assert "Pending lawsuit" not in detail and "Settle below" not in detail
    superuser = Client()
    superuser.force_login(SuperuserFactory.create())
    assert (
        "Pending lawsuit"
        in superuser.get(f"/admin/widget/widgetexchange/{exchange.pk}/change/").content.decode()
    )
