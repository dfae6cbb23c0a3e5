"""The upload page: many files at once, status rows that poll until done, row actions; who may do what."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from django.contrib.auth.models import Permission, User
from django.core.files.uploadedfile import SimpleUploadedFile
from django.test import Client

from ingest import services
from ingest.models import Chunk, Collection, Document
from tests.factories import CollectionFactory, GroupFactory, StaffUserFactory, UserFactory

pytestmark = pytest.mark.django_db

EDITORS = "editors"
ALL_DOCUMENT_PERMISSIONS = ("view", "add", "change", "delete")


def _editor(*actions: str, group: str = EDITORS) -> User:
    """A staff member of `group` holding ingest's document permissions for `actions`."""
    user = StaffUserFactory.create()
    user.groups.add(GroupFactory.create(name=group))
    codenames = [f"{action}_document" for action in actions]
    user.user_permissions.set(
        Permission.objects.filter(content_type__app_label="ingest", codename__in=codenames)
    )
    return user


def _collection(group: str = EDITORS) -> Collection:
    collection = CollectionFactory.create()
    collection.groups.add(GroupFactory.create(name=group))
    return collection


@pytest.fixture
def staff(client: Client) -> User:
    user = _editor(*ALL_DOCUMENT_PERMISSIONS)
    client.force_login(user)
    return user


def _document(status: str = "queued", *, collection: Collection | None = None, **fields: Any) -> Document:
    document = services.document_create_from_bytes(
        collection=collection or _collection(), data=f"doc {status}".encode(), name=f"{status}.txt"
    )
    Document.objects.filter(id=document.id).update(status=status, **fields)
    document.refresh_from_db()
    return document


def test_the_page_needs_a_logged_in_staff_member(client: Client) -> None:
    assert client.get("/ingest/").status_code == 302
    client.force_login(UserFactory.create())
    response = client.get("/ingest/")
    assert response.status_code == 302 and "/admin/login/" in response["Location"]


def test_many_files_are_uploaded_at_once_and_refusals_are_explained(
    client: Client, staff: User, settings: Any
) -> None:
    settings.RAGSITE_MAX_UPLOAD_BYTES = 1024
    collection = _collection()
    services.document_create_from_bytes(collection=collection, data=b"already here", name="old.txt")
    files = [
        SimpleUploadedFile("a.txt", b"First document."),
        SimpleUploadedFile("b.md", b"# Second\n\nDocument."),
        SimpleUploadedFile("again.txt", b"already here"),
        SimpleUploadedFile("huge.txt", b"x" * 4096),
    ]
    response = client.post("/ingest/", {"collection": collection.id, "documents": files}, follow=True)
    assert response.status_code == 200
    names = set(Document.objects.filter(collection=collection).values_list("original_name", flat=True))
    assert names == {"old.txt", "a.txt", "b.md"}
    page = response.content.decode()
    assert "“a.txt” was queued." in page and "“b.md” was queued." in page
    assert "“again.txt” was not added: the same content is already in" in page
    assert "“huge.txt” is 4 KB; the limit is 1 KB." in page
    assert Document.objects.get(original_name="a.txt").uploaded_by == staff


def test_rows_poll_while_the_document_is_in_progress_and_stop_when_done(client: Client, staff: User) -> None:
    embedding = _document("embedding", progress=40)
    ready = _document("ready", progress=100)
    failed = _document("failed", error="The PDF is password-protected. Remove the password.")

    row = client.get(f"/ingest/documents/{embedding.id}/", headers={"HX-Request": "true"}).content.decode()
    assert row.lstrip().startswith("<tr") and "<html" not in row
    assert 'hx-trigger="every 2s"' in row and '<progress max="100" value="40">' in row

    row = client.get(f"/ingest/documents/{ready.id}/", headers={"HX-Request": "true"}).content.decode()
    assert "hx-trigger" not in row and "Re-index" in row and "Retry" not in row

    row = client.get(f"/ingest/documents/{failed.id}/", headers={"HX-Request": "true"}).content.decode()
    assert "hx-trigger" not in row and "Retry" in row
    assert "The PDF is password-protected. Remove the password." in row

    page = client.get("/ingest/").content.decode()
    assert page.count('hx-trigger="every 2s"') == 1
    assert '<meta http-equiv="refresh" content="5">' in page  # polling without JavaScript too


def test_a_ready_document_shows_what_could_not_be_read_in_it(client: Client, staff: User) -> None:
    note = "Page 2: a scan whose text OCR could not read (too faint, too small or not text)"
    ready = _document("ready", progress=100, notes=f"{note}\nPage 5: another")

    row = client.get(f"/ingest/documents/{ready.id}/", headers={"HX-Request": "true"}).content.decode()

    assert note in row and "Page 5: another" in row and "document-notes" in row


def test_retry_from_the_row_queues_the_document_and_resumes_polling(
    client: Client, staff: User, django_capture_on_commit_callbacks: Any
) -> None:
    failed = _document("failed", error="boom")
    with django_capture_on_commit_callbacks(execute=False) as callbacks:
        response = client.post(f"/ingest/documents/{failed.id}/retry", headers={"HX-Request": "true"})
    assert response.status_code == 200 and len(callbacks) == 1
    assert 'hx-trigger="every 2s"' in response.content.decode()
    failed.refresh_from_db()
    assert (failed.status, failed.error) == ("queued", "")


def test_reindex_is_refused_while_a_document_is_being_indexed(client: Client, staff: User) -> None:
    parsing = _document("parsing")
    response = client.post(f"/ingest/documents/{parsing.id}/reindex", headers={"HX-Request": "true"})
    assert response.status_code == 409
    assert "cannot be re-indexed while it is parsing" in response.content.decode()


def test_delete_from_the_row_removes_document_chunks_and_file(
    client: Client, staff: User, media_dir: Path, django_capture_on_commit_callbacks: Any
) -> None:
    ready = _document("ready", generation=1)
    Chunk.objects.create(
        document=ready, collection=ready.collection, generation=1, ordinal=0, text="x",
        char_start=0, char_end=1, token_count=3, embedding=[1.0] + [0.0] * 383,
    )  # fmt: skip
    path = media_dir / ready.file.name
    with django_capture_on_commit_callbacks(execute=True):
        response = client.post(f"/ingest/documents/{ready.id}/delete", headers={"HX-Request": "true"})
    assert response.status_code == 200 and response.content == b""
    assert not Document.objects.filter(id=ready.id).exists() and not Chunk.objects.exists()
    assert not path.exists()


def test_actions_work_without_javascript_by_redirecting_back(client: Client, staff: User) -> None:
    failed = _document("failed", error="boom")
    response = client.post(f"/ingest/documents/{failed.id}/retry")
    assert response.status_code == 302
    assert response["Location"] == f"/ingest/?collection={failed.collection_id}"


def test_a_document_that_does_not_exist_is_404(client: Client, staff: User) -> None:
    assert client.get("/ingest/documents/999999/").status_code == 404


def test_a_staff_member_sees_only_documents_of_collections_they_read(client: Client) -> None:
    mine = _document("ready", title="Our handbook")
    theirs = _document("failed", collection=_collection("board"), title="Board minutes", error="Salary table")
    client.force_login(_editor(*ALL_DOCUMENT_PERMISSIONS))

    page = client.get("/ingest/").content.decode()
    assert "Our handbook" in page
    assert "Board minutes" not in page and "Salary table" not in page and theirs.collection.name not in page
    assert client.get(f"/ingest/?collection={theirs.collection_id}").content.decode().count("<tr id=") == 0
    assert client.get(f"/ingest/documents/{theirs.id}/").status_code == 404
    for action in ("retry", "reindex", "delete"):
        assert client.post(f"/ingest/documents/{theirs.id}/{action}").status_code == 404
    assert Document.objects.filter(id=theirs.id, status="failed").exists()
    assert client.get(f"/ingest/documents/{mine.id}/").status_code == 200


def test_a_superuser_reads_and_manages_every_collection(client: Client) -> None:
    theirs = _document("ready", collection=_collection("board"), title="Board minutes")
    client.force_login(UserFactory.create(is_staff=True, is_superuser=True))
    assert "Board minutes" in client.get("/ingest/").content.decode()
    assert client.post(f"/ingest/documents/{theirs.id}/reindex").status_code == 302


def test_the_page_needs_the_view_permission(client: Client) -> None:
    _document("failed", error="Salary table")
    client.force_login(_editor())
    assert client.get("/ingest/").status_code == 403


def test_uploading_needs_the_add_permission(client: Client) -> None:
    collection = _collection()
    client.force_login(_editor("view"))
    page = client.get("/ingest/").content.decode()
    assert 'id="upload-form"' not in page
    response = client.post(
        "/ingest/", {"collection": collection.id, "documents": [SimpleUploadedFile("a.txt", b"A")]}
    )
    assert response.status_code == 403 and not Document.objects.exists()


def test_an_upload_into_a_collection_the_user_cannot_read_is_refused(client: Client) -> None:
    _collection()
    board = _collection("board")
    client.force_login(_editor("view", "add"))
    response = client.post(
        "/ingest/", {"collection": board.id, "documents": [SimpleUploadedFile("a.txt", b"A")]}
    )
    assert response.status_code == 200 and "Select a valid choice" in response.content.decode()
    assert not Document.objects.exists()


@pytest.mark.parametrize(
    ("action", "permission"), [("retry", "change"), ("reindex", "change"), ("delete", "delete")]
)
def test_row_actions_need_their_permission(client: Client, action: str, permission: str) -> None:
    failed = _document("failed", error="boom")
    others = [name for name in ALL_DOCUMENT_PERMISSIONS if name != permission]
    client.force_login(_editor(*others))
    assert client.post(f"/ingest/documents/{failed.id}/{action}").status_code == 403
    assert Document.objects.filter(id=failed.id, status="failed").exists()
    row = client.get(f"/ingest/documents/{failed.id}/", headers={"HX-Request": "true"}).content.decode()
    assert f"/ingest/documents/{failed.id}/{action}" not in row
