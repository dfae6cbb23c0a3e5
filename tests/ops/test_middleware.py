"""Django's middleware under ASGI (ops/middleware.py): hooks on the event loop, I/O still in a thread."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest
from asgiref.sync import async_to_sync, sync_to_async
from django.contrib.auth.models import User
from django.contrib.sessions.models import Session
from django.test import AsyncClient
from django.utils import deprecation

from ops import middleware

pytestmark = pytest.mark.django_db


@pytest.fixture
def hops(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """The names of the middleware hooks sent to a thread, in order (ours, or Django's MiddlewareMixin's)."""
    sent: list[str] = []

    def counted(func: Callable[..., Any], **kwargs: Any) -> Any:
        sent.append(getattr(func, "__name__", repr(func)))
        return sync_to_async(func, **kwargs)

    monkeypatch.setattr(middleware, "sync_to_async", counted)
    monkeypatch.setattr(deprecation, "sync_to_async", counted)
    return sent


def test_a_request_through_the_middleware_sends_no_hook_to_a_thread(hops: list[str]) -> None:
    user = User.objects.create_user("asker", password="pw-asker-1")
    client = AsyncClient()
    client.force_login(user)

    response = async_to_sync(client.get)("/", headers={"accept": "text/html"})

    assert response.status_code == 200 and b"Ask your documents" in response.content
    assert hops == []
    # What the hooks add is all there.
    assert response["X-Frame-Options"] == "DENY" and response["X-Content-Type-Options"] == "nosniff"
    assert response["Referrer-Policy"] == "same-origin" and "Cookie" in response["Vary"]
    assert "csrftoken" in response.cookies


def test_a_login_under_asgi_saves_its_session_in_a_thread(hops: list[str]) -> None:
    User.objects.create_user("employee", password="pw-employee-1")
    client = AsyncClient()

    response = async_to_sync(client.post)(
        "/accounts/login/", {"username": "employee", "password": "pw-employee-1"}
    )

    assert response.status_code == 302 and "process_response" in hops
    key = response.cookies["sessionid"].value
    assert Session.objects.filter(session_key=key).exists()
    assert async_to_sync(client.get)("/").status_code == 200


def test_the_csrf_check_under_asgi_refuses_a_post_without_its_token(hops: list[str]) -> None:
    user = User.objects.create_user("asker", password="pw-asker-1")
    client = AsyncClient(enforce_csrf_checks=True)
    client.force_login(user)
    page = async_to_sync(client.get)("/")
    token = page.cookies["csrftoken"].value

    form = "application/x-www-form-urlencoded"
    refused = async_to_sync(client.post)("/ask/", "question=How+long%3F", content_type=form)
    taken = async_to_sync(client.post)(
        "/ask/", "question=How+long%3F", content_type=form, headers={"x-csrftoken": token}
    )

    assert refused.status_code == 403 and taken.status_code == 302
    assert "process_view" not in hops


def test_the_csrf_check_of_a_form_with_files_reads_it_in_a_thread(hops: list[str]) -> None:
    user = User.objects.create_user("uploader", password="pw-uploader-1")
    client = AsyncClient(enforce_csrf_checks=True)
    client.force_login(user)

    response = async_to_sync(client.post)("/ask/", {"question": "How long?", "file": b"x" * 10})

    assert response.status_code == 403 and "process_view" in hops
