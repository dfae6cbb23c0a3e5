"""The document admin: a document moved to another collection takes its passages with it."""

from __future__ import annotations

import pytest
from django.contrib.admin import site
from django.contrib.auth.models import Group, Permission, User
from django.test import Client, RequestFactory

from ingest import services
from ingest.admin import DocumentAdmin
from ingest.models import Chunk, Collection, Document
from search.selectors import chunk_get_for_user, chunk_search
from tests.factories import CollectionFactory, GroupFactory, UserFactory

pytestmark = pytest.mark.django_db

PASSAGE = "Refunds are paid within fourteen days of the returned parcel arriving."


def _ready_document(collection: Collection) -> Document:
    document = services.document_create_from_bytes(collection=collection, data=PASSAGE.encode(), name="r.txt")
    Document.objects.filter(id=document.id).update(status=Document.Status.READY, generation=1)
    document.refresh_from_db()
    Chunk.objects.create(
        document=document, collection=collection, generation=1, ordinal=0, text=PASSAGE,
        char_start=0, char_end=len(PASSAGE), token_count=12, embedding=[1.0] + [0.0] * 383,
    )  # fmt: skip
    return document


def _keyword_hits(collection: Collection) -> list[int]:
    hits = chunk_search(
        collection_ids=[collection.id], query="refunds paid", query_embedding=None, mode="keyword"
    )
    return [hit.document_id for hit in hits]


def test_moving_a_document_in_the_admin_moves_its_passages_out_of_the_old_collection(client: Client) -> None:
    old_readers, new_readers = GroupFactory.create(), GroupFactory.create()
    old, new = CollectionFactory.create(), CollectionFactory.create()
    old.groups.set([old_readers])
    new.groups.set([new_readers])
    document = _ready_document(old)
    chunk = Chunk.objects.get(document=document)
    old_reader: User = UserFactory.create()
    old_reader.groups.set([old_readers])
    client.force_login(UserFactory.create(is_staff=True, is_superuser=True))

    response = client.post(
        f"/admin/ingest/document/{document.id}/change/", {"collection": new.id, "title": "Refunds"}
    )

    assert response.status_code == 302, response.content.decode()[:2000]
    document.refresh_from_db()
    assert (document.collection_id, document.title) == (new.id, "Refunds")
    assert _keyword_hits(old) == [] and _keyword_hits(new) == [document.id]
    with pytest.raises(Exception, match="No such passage"):
        chunk_get_for_user(user=old_reader, chunk_id=chunk.id)


def test_the_admin_refuses_a_move_into_a_collection_that_holds_the_same_content(client: Client) -> None:
    old, new = CollectionFactory.create(), CollectionFactory.create()
    document = _ready_document(old)
    _ready_document(new)
    client.force_login(UserFactory.create(is_staff=True, is_superuser=True))

    url = f"/admin/ingest/document/{document.id}/change/"
    response = client.post(url, {"collection": new.id, "title": ""})

    assert response.status_code == 200 and "already holds the same content" in response.content.decode()
    assert set(Chunk.objects.filter(document=document).values_list("collection_id", flat=True)) == {old.id}


def test_an_admin_edit_does_not_write_back_the_status_it_loaded(client: Client) -> None:
    """Only the edited fields are saved, so an ingestion that finished meanwhile keeps its generation."""
    document = _ready_document(CollectionFactory.create())
    request = RequestFactory().post("/")
    request.user = UserFactory.create(is_staff=True, is_superuser=True)
    loaded = Document.objects.get(id=document.id)
    Document.objects.filter(id=document.id).update(generation=2)  # an ingestion finishes meanwhile

    admin = DocumentAdmin(Document, site)
    form = admin.get_form(request, loaded)(
        {"collection": loaded.collection_id, "title": "Renamed"}, instance=loaded
    )
    assert form.is_valid(), form.errors
    admin.save_model(request, form.save(commit=False), form, change=True)

    document.refresh_from_db()
    assert (document.title, document.generation) == ("Renamed", 2)


def _admin_editor(*actions: str, group: Group) -> User:
    user = UserFactory.create(is_staff=True)
    user.groups.add(group)
    codenames = [f"{action}_document" for action in actions]
    user.user_permissions.set(
        Permission.objects.filter(content_type__app_label="ingest", codename__in=codenames)
    )
    return user


def test_the_admin_lists_and_opens_only_documents_of_collections_the_user_reads(client: Client) -> None:
    editors = GroupFactory.create()
    mine, theirs = CollectionFactory.create(), CollectionFactory.create(name="Board")
    mine.groups.set([editors])
    readable = _ready_document(mine)
    Document.objects.filter(id=readable.id).update(title="Our handbook")
    hidden = _ready_document(theirs)
    Document.objects.filter(id=hidden.id).update(title="Board minutes")
    client.force_login(_admin_editor("view", "change", group=editors))

    listing = client.get("/admin/ingest/document/").content.decode()
    assert "Our handbook" in listing and "Board minutes" not in listing
    assert client.get(f"/admin/ingest/document/{hidden.id}/change/").status_code == 302  # "does not exist"
    form = client.get(f"/admin/ingest/document/{readable.id}/change/").content.decode()
    assert f'value="{theirs.id}"' not in form
    response = client.post(
        f"/admin/ingest/document/{readable.id}/change/", {"collection": theirs.id, "title": ""}
    )
    assert response.status_code == 200 and Document.objects.get(id=readable.id).collection_id == mine.id


def test_admin_actions_need_the_change_permission(client: Client) -> None:
    editors = GroupFactory.create()
    collection = CollectionFactory.create()
    collection.groups.set([editors])
    document = _ready_document(collection)
    client.force_login(_admin_editor("view", group=editors))

    client.post(
        "/admin/ingest/document/", {"action": "reindex", "_selected_action": [document.id], "index": 0}
    )

    assert Document.objects.get(id=document.id).status == Document.Status.READY
