"""The sources page: last sync and its counts, a row that polls while a sync is queued or runs, the sync
button, the add form; who may do what."""

from __future__ import annotations

from typing import Any

import pytest
from django.contrib.auth.models import Permission, User
from django.test import Client

from ingest.models import Collection, Document
from sources.models import Source, SyncRun
from tests.factories import CollectionFactory, GroupFactory, SourceFactory, StaffUserFactory, UserFactory
from tests.ingest.conftest import wait_for, wait_until_done
from tests.processes import WorkerProcess
from tests.sources.conftest import Repository

EDITORS = "editors"


def _editor(*actions: str) -> User:
    """A staff member of the editors' group holding the sources permissions for `actions`."""
    user = StaffUserFactory.create()
    user.groups.add(GroupFactory.create(name=EDITORS))
    user.user_permissions.set(
        Permission.objects.filter(
            content_type__app_label="sources", codename__in=[f"{action}_source" for action in actions]
        )
    )
    return user


def _collection() -> Collection:
    collection = CollectionFactory.create()
    collection.groups.add(GroupFactory.create(name=EDITORS))
    return collection


@pytest.mark.django_db
def test_the_page_is_for_staff_with_the_view_permission(client: Client) -> None:
    assert client.get("/sources/").status_code == 302
    client.force_login(UserFactory.create())
    assert client.get("/sources/").status_code == 302
    client.force_login(_editor())
    assert client.get("/sources/").status_code == 403
    client.force_login(_editor("view"))
    assert client.get("/sources/").status_code == 200


@pytest.mark.django_db
def test_the_page_lists_the_readable_sources_with_their_last_sync(client: Client) -> None:
    client.force_login(_editor("view"))
    mine = SourceFactory.create(name="Handbook repo", collection=_collection(), schedule_minutes=30)
    SyncRun.objects.create(source=mine, status="failed", seen=3, message="The repository is gone.")
    last = SyncRun.objects.create(
        source=mine, status="succeeded", seen=12, new=2, changed=3, deleted=1, failed=1
    )
    SourceFactory.create(name="Someone else's")  # a collection the editor does not read

    response = client.get("/sources/")

    html = response.content.decode()
    assert "Handbook repo" in html and "Someone else" not in html
    assert "every 30 min" in html and "Succeeded" in html and "The repository is gone." not in html
    row = html[html.index(f'id="source-{mine.id}"') :]
    row = row[: row.index("</tr>")]
    for name, value in [("seen", 12), ("new", 2), ("changed", 3), ("deleted", 1), ("failed", 1)]:
        assert f'<td class="count {name}">{value}</td>' in row
    assert "hx-trigger" not in row  # nothing runs: no polling
    assert "Sync now" not in row  # no change permission
    assert "Add a source" not in html  # no add permission
    assert last.id


@pytest.mark.django_db
def test_a_running_sync_row_polls_and_shows_its_live_counts(client: Client) -> None:
    client.force_login(_editor("view"))
    source = SourceFactory.create(collection=_collection())
    SyncRun.objects.create(source=source, status="running", seen=40, new=7)

    response = client.get(f"/sources/{source.id}/", HTTP_HX_REQUEST="true")

    html = response.content.decode()
    assert html.lstrip().startswith(f'<tr id="source-{source.id}"')
    assert 'hx-trigger="every 2s"' in html and "Running" in html
    assert '<td class="count seen">40</td>' in html and '<td class="count new">7</td>' in html


@pytest.mark.django_db
def test_a_failed_sync_shows_its_message(client: Client) -> None:
    client.force_login(_editor("view"))
    source = SourceFactory.create(collection=_collection())
    SyncRun.objects.create(source=source, status="failed", message="The branch “nope” does not exist in /x.")
    html = client.get("/sources/").content.decode()
    assert "Failed" in html and "The branch “nope” does not exist in /x." in html


@pytest.mark.django_db(transaction=True)
def test_the_sync_button_starts_a_sync_that_the_row_follows_to_its_end(
    client: Client, repository: Repository, sources_worker: WorkerProcess
) -> None:
    client.force_login(_editor("view", "change"))
    repository.commit("docs", {"guide.md": "# Guide\n\nHello.\n", "faq.md": "# FAQ\n\nAnswers.\n"})
    source = SourceFactory.create(collection=_collection(), location=str(repository.path))
    page = client.get("/sources/").content.decode()
    assert f'hx-post="/sources/{source.id}/sync"' in page

    response = client.post(f"/sources/{source.id}/sync", HTTP_HX_REQUEST="true")

    assert response.status_code == 200
    row = response.content.decode()
    assert "Queued" in row and 'hx-trigger="every 2s"' in row
    wait_for(lambda: SyncRun.objects.filter(source=source, status="succeeded").exists(), what="the sync")
    row = client.get(f"/sources/{source.id}/", HTTP_HX_REQUEST="true").content.decode()
    assert "Succeeded" in row and "hx-trigger" not in row and '<td class="count new">2</td>' in row
    wait_until_done(
        Document.objects.filter(collection=source.collection).values_list("id", flat=True),
        worker=sources_worker,
    )


@pytest.mark.django_db
def test_syncing_needs_the_change_permission(client: Client) -> None:
    client.force_login(_editor("view"))
    source = SourceFactory.create(collection=_collection())
    assert client.post(f"/sources/{source.id}/sync").status_code == 403
    assert not Source.objects.get(id=source.id).last_queued_at
    other = SourceFactory.create()
    client.force_login(_editor("view", "change"))
    assert client.post(f"/sources/{other.id}/sync").status_code == 404


@pytest.mark.django_db
def test_a_disabled_source_is_not_synced_and_the_page_says_why(client: Client) -> None:
    client.force_login(_editor("view", "change"))
    source = SourceFactory.create(collection=_collection(), enabled=False)
    response = client.post(f"/sources/{source.id}/sync", HTTP_HX_REQUEST="true")
    assert response.status_code == 409
    assert response.content.decode() == f"“{source.name}” is disabled; enable it in its settings to sync it."
    assert Source.objects.get(id=source.id).last_queued_at is None


@pytest.mark.django_db(transaction=True)
def test_the_form_adds_a_source_with_encrypted_credentials_and_queues_its_first_sync(
    client: Client, sources_worker: WorkerProcess, repository: Repository
) -> None:
    client.force_login(_editor("view", "add", "change"))
    repository.commit("docs", {"guide.md": "# Guide\n\nHello.\n"})
    collection = _collection()
    form: dict[str, Any] = {
        "name": "Docs repo",
        "kind": "git",
        "location": str(repository.path),
        "collection": collection.id,
        "schedule_minutes": 15,
        "include_patterns": "*.md\n",
        "exclude_patterns": "",
        "options": '{"branch": "main"}',
        "username": "reader",
        "password": "hunter2-token",
    }

    response = client.post("/sources/", form)

    assert response.status_code == 302
    source = Source.objects.get(name="Docs repo")
    assert (source.kind, source.schedule_minutes, source.include_patterns, source.options) == (
        "git",
        15,
        "*.md",
        {"branch": "main"},
    )
    assert "hunter2" not in source.credentials_encrypted
    page = client.get("/sources/").content.decode()
    assert "hunter2" not in page
    wait_for(
        lambda: SyncRun.objects.filter(source=source, status="succeeded").exists(), what="the first sync"
    )
    wait_until_done(
        Document.objects.filter(collection=collection).values_list("id", flat=True), worker=sources_worker
    )


@pytest.mark.django_db
def test_bad_form_input_is_explained_and_nothing_is_added(client: Client) -> None:
    client.force_login(_editor("view", "add"))
    collection = _collection()
    SourceFactory.create(name="Taken", collection=collection)
    base = {"kind": "git", "location": "/srv/repo", "collection": collection.id, "schedule_minutes": 0}

    bad_json = client.post("/sources/", {**base, "name": "A", "options": "{branch: main}"})
    taken = client.post("/sources/", {**base, "name": "Taken", "options": "{}"})
    negative = client.post("/sources/", {**base, "name": "B", "options": "{}", "schedule_minutes": -1})

    assert bad_json.status_code == 200 and "Options must be JSON" in bad_json.content.decode()
    assert "A source called “Taken” already exists" in taken.content.decode(), taken.content.decode()[-3000:]
    assert negative.status_code == 200 and "greater than or equal to 0" in negative.content.decode()
    assert list(Source.objects.values_list("name", flat=True)) == ["Taken"]
