"""The admin's pages of questions and feedback show a staff admin only the sources they may read."""

from __future__ import annotations

from typing import Any

import pytest
from django.contrib.auth.models import Group, Permission, User
from django.test import Client

from ingest.models import Chunk
from search.models import Feedback, Message
from tests.search.factories import add_chunks, make_collection, make_document, make_group, make_message

pytestmark = pytest.mark.django_db


def source(number: int, chunk: Chunk) -> dict[str, Any]:
    """A stored source, as search.services.SourceRef.as_dict() writes it."""
    return {
        "number": number,
        "chunk_id": chunk.id,
        "document_id": chunk.document_id,
        "document_title": chunk.document.title,
        "heading_path": chunk.heading_path,
        "page": chunk.page,
        "excerpt": chunk.text[:60],
        "text": chunk.text,
        "char_start": chunk.char_start,
        "char_end": chunk.char_end,
    }


@pytest.fixture
def answered() -> tuple[Message, Feedback]:
    """A turn citing one passage of the support group's collection and one of the legal team's."""
    support = make_group(name="support")
    shared = make_collection(name="Helpdesk articles", groups=[support])
    legal = make_collection(name="Legal memos")
    (readable,) = add_chunks(make_document(collection=shared, title="Returns policy"), "Laptops: 30 days.")
    (hidden,) = add_chunks(make_document(collection=legal, title="Pending lawsuit"), "Settle below 2M.")
    message = make_message(
        answer="Thirty days [1].", sources=[source(1, readable), source(2, hidden)], status="answered"
    )
    feedback = Feedback.objects.create(
        message=message,
        user=message.conversation.user,
        rating=Feedback.Rating.DOWN,
        question=message.question,
        answer=message.answer,
        passages=message.sources,
    )
    return message, feedback


def staff_client(*, superuser: bool = False) -> Client:
    staff = User.objects.create_user(username=f"staff-{superuser}", is_staff=True, is_superuser=superuser)
    staff.groups.set(Group.objects.filter(name="support"))
    staff.user_permissions.set(Permission.objects.filter(content_type__app_label="search"))
    client = Client()
    client.force_login(staff)
    return client


@pytest.mark.parametrize(
    "url", ["/admin/search/message/{message}/change/", "/admin/search/feedback/{feedback}/change/"]
)
def test_a_staff_admin_sees_only_the_sources_of_collections_they_can_read(
    answered: tuple[Message, Feedback], url: str
) -> None:
    message, feedback = answered
    page = staff_client().get(url.format(message=message.pk, feedback=feedback.pk))
    assert page.status_code == 200
    content = page.content.decode()
    assert "Returns policy" in content and "Laptops: 30 days." in content
    assert "Pending lawsuit" not in content and "Settle below 2M." not in content


@pytest.mark.parametrize(
    "url", ["/admin/search/message/{message}/change/", "/admin/search/feedback/{feedback}/change/"]
)
def test_a_superuser_sees_every_source(answered: tuple[Message, Feedback], url: str) -> None:
    message, feedback = answered
    content = staff_client(superuser=True).get(url.format(message=message.pk, feedback=feedback.pk))
    assert "Laptops: 30 days." in content.content.decode()
    assert "Settle below 2M." in content.content.decode()


def test_saving_a_message_in_the_admin_keeps_the_sources_it_does_not_show(
    answered: tuple[Message, Feedback],
) -> None:
    message, _ = answered
    stored = list(message.sources)
    staff_client().post(
        f"/admin/search/message/{message.pk}/change/",
        {
            "conversation": message.conversation_id,
            "question": message.question,
            "standalone_question": "",
            "answer": message.answer,
            "status": message.status,
            "error": "",
        },
    )
    message.refresh_from_db()
    assert message.sources == stored
