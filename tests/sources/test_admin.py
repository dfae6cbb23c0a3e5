"""The admin: credentials are write-only, kept unless replaced, and a sync can be queued from the list."""

from __future__ import annotations

from typing import Any

import pytest
from django.test import Client

from sources import services
from sources.models import Source
from tests.factories import CollectionFactory, SourceFactory

pytestmark = pytest.mark.django_db


def _form(source: Source, **changes: Any) -> dict[str, Any]:
    return {
        "name": source.name,
        "kind": source.kind,
        "location": source.location,
        "collection": source.collection_id,
        "schedule_minutes": source.schedule_minutes,
        "include_patterns": "",
        "exclude_patterns": "",
        "options": "{}",
        "enabled": "on",
        "username": "",
        "password": "",
        **changes,
    }


def test_credentials_are_never_shown_and_kept_unless_replaced_or_cleared(admin_client: Client) -> None:
    source = services.source_create(
        name="Repo",
        kind="git",
        location="/srv/repo",
        collection=CollectionFactory.create(),
        credentials={"username": "reader", "password": "old-secret"},
    )
    url = f"/admin/sources/source/{source.id}/change/"

    page = admin_client.get(url).content.decode()
    assert "old-secret" not in page and source.credentials_encrypted not in page

    assert admin_client.post(url, _form(source, schedule_minutes=5)).status_code == 302
    assert services.source_config(source=Source.objects.get(id=source.id)).credentials == {
        "username": "reader",
        "password": "old-secret",
    }
    admin_client.post(url, _form(source, username="writer", password="new-secret"))
    assert services.source_config(source=Source.objects.get(id=source.id)).credentials == {
        "username": "writer",
        "password": "new-secret",
    }
    admin_client.post(url, _form(source, clear_credentials="on"))
    assert Source.objects.get(id=source.id).credentials_encrypted == ""


def test_the_sync_action_queues_a_sync_of_each_selected_source(
    admin_client: Client, django_capture_on_commit_callbacks: Any
) -> None:
    sources = SourceFactory.create_batch(2)
    with django_capture_on_commit_callbacks(execute=False) as callbacks:
        response = admin_client.post(
            "/admin/sources/source/",
            {"action": "sync_now", "_selected_action": [source.id for source in sources]},
        )
    assert response.status_code == 302
    assert len(callbacks) == 2
    assert all(source.last_queued_at for source in Source.objects.all())
