"""A user outside a collection's groups never gets its passages, by any path the ask page offers."""

from __future__ import annotations

from typing import Any

import pytest
from django.contrib.auth.models import Group, User
from django.test import Client
from django.urls import reverse

from ingest.models import Chunk
from search.models import Conversation, Feedback, Message
from tests.search.factories import add_chunks, make_document, make_group, make_message, make_user
from tests.search.fake_inference import FakeInference, Reply
from tests.search.test_services import collect
from tests.search.test_views import HTMX, sse_events

pytestmark = pytest.mark.django_db

PUBLIC = "Staff may carry over five days of holiday allowance into the next year."
SECRET = "Board only: the holiday allowance carry over will be cut to zero days next year, secretly."


@pytest.fixture
def groups() -> tuple[Group, Group]:
    return make_group(name="staff"), make_group(name="board")


@pytest.fixture
def public_chunk(groups: tuple[Group, Group]) -> Chunk:
    document = make_document(title="Staff handbook", collection__groups=[groups[0]])
    return add_chunks(document, PUBLIC, heading_path="Holidays")[0]


@pytest.fixture
def secret_chunk(groups: tuple[Group, Group]) -> Chunk:
    # It matches the question at least as well as the public passage, in words and in vector.
    document = make_document(title="Board minutes", collection__groups=[groups[1]])
    return add_chunks(document, SECRET, heading_path="Holidays carry over allowance")[0]


@pytest.fixture
def staff_user(groups: tuple[Group, Group]) -> User:
    return make_user(groups=[groups[0]])


@pytest.fixture
def staff_client(staff_user: User) -> Client:
    client = Client()
    client.force_login(staff_user)
    return client


def test_answer_sources_and_prompt_hold_only_readable_passages(
    staff_client: Client, public_chunk: Chunk, secret_chunk: Chunk, fake_inference: FakeInference
) -> None:
    fake_inference.default_reply = Reply(["Five days [1]."])
    staff_client.post(
        reverse("search:ask"), {"question": "How many holiday days carry over next year?"}, **HTMX
    )
    message = Message.objects.get()

    events = sse_events(staff_client.get(reverse("search:answer_stream", args=[message.id])))

    stream = "".join(data for _name, data in events)
    assert "Staff handbook" in stream
    assert "Board minutes" not in stream and "secretly" not in stream
    assert f"/passages/{secret_chunk.id}/" not in stream
    message.refresh_from_db()
    assert [source["chunk_id"] for source in message.sources] == [public_chunk.id]
    prompt = fake_inference.answer_requests[0]["messages"][-1]["content"]
    assert "secretly" not in prompt and "Board minutes" not in prompt


def test_service_retrieves_only_from_the_collections_it_is_given(
    public_chunk: Chunk, secret_chunk: Chunk, fake_inference: FakeInference
) -> None:
    """The widget passes its key's collections: nothing else may come back."""
    fake_inference.default_reply = Reply(["Five days [1]."])
    events = collect(
        collection_ids=[public_chunk.collection_id], question="How many holiday days carry over next year?"
    )
    assert [source.chunk_id for source in events[0].sources] == [public_chunk.id]


def test_a_question_only_unreadable_passages_answer_is_not_found_and_reaches_no_model(
    staff_client: Client, public_chunk: Chunk, secret_chunk: Chunk, fake_inference: FakeInference
) -> None:
    staff_client.post(reverse("search:ask"), {"question": "What is being cut to zero?"}, **HTMX)
    message = Message.objects.get()

    events = sse_events(staff_client.get(reverse("search:answer_stream", args=[message.id])))

    assert "could not find anything" in events[-1][1]
    assert "secretly" not in "".join(data for _name, data in events)
    assert fake_inference.chat_requests == []


def test_passage_view_is_404_for_an_unreadable_or_missing_passage(
    staff_client: Client, public_chunk: Chunk, secret_chunk: Chunk
) -> None:
    assert staff_client.get(reverse("search:passage", args=[public_chunk.id])).status_code == 200
    response = staff_client.get(reverse("search:passage", args=[secret_chunk.id]))
    assert response.status_code == 404 and b"secretly" not in response.content
    assert staff_client.get(reverse("search:passage", args=[secret_chunk.id + 1000])).status_code == 404


def test_another_users_conversation_stream_and_feedback_are_404(
    staff_client: Client, fake_inference: FakeInference
) -> None:
    pending = make_message()
    answered = make_message(status=Message.Status.ANSWERED, answer="Their answer")

    assert staff_client.get(reverse("search:conversation", args=[pending.conversation_id])).status_code == 404
    assert staff_client.get(reverse("search:answer_stream", args=[pending.id])).status_code == 404
    feedback = staff_client.post(reverse("search:feedback", args=[answered.id]), {"rating": "up"})
    assert feedback.status_code == 404
    assert not Feedback.objects.exists()
    pending.refresh_from_db()
    assert pending.status == Message.Status.PENDING and fake_inference.chat_requests == []


def test_asking_into_another_users_conversation_is_404(staff_client: Client) -> None:
    theirs = make_message().conversation
    response = staff_client.post(
        reverse("search:ask"), {"question": "Hi?", "conversation": theirs.id}, **HTMX
    )
    assert response.status_code == 404
    assert Message.objects.filter(conversation=theirs).count() == 1
    assert Conversation.objects.count() == 1


def test_passages_of_an_old_answer_are_hidden_once_access_is_revoked(
    staff_client: Client, staff_user: User, public_chunk: Chunk, groups: tuple[Group, Group]
) -> None:
    message = make_message(
        conversation__user=staff_user,
        status=Message.Status.ANSWERED,
        answer="Five days [1].",
        sources=[
            {
                "number": 1, "chunk_id": public_chunk.id, "document_id": public_chunk.document_id,
                "document_title": "Staff handbook", "heading_path": "Holidays", "page": None,
                "excerpt": PUBLIC, "text": PUBLIC, "char_start": 0, "char_end": len(PUBLIC),
            }
        ],
    )  # fmt: skip
    url = reverse("search:conversation", args=[message.conversation_id])
    assert PUBLIC in staff_client.get(url).content.decode()

    staff_user.groups.remove(groups[0])

    html = staff_client.get(url).content.decode()
    assert PUBLIC not in html and f"/passages/{public_chunk.id}/" not in html
    assert staff_client.get(reverse("search:passage", args=[public_chunk.id])).status_code == 404


def test_an_old_answers_stream_url_replays_it_without_passages_the_asker_may_no_longer_read(
    staff_client: Client, staff_user: User, public_chunk: Chunk, groups: tuple[Group, Group]
) -> None:
    """Security review item 4: the replay of an answered turn once showed its stored sources unfiltered."""
    message = make_message(
        conversation__user=staff_user,
        status=Message.Status.ANSWERED,
        answer="Five days [1].",
        sources=[
            {
                "number": 1, "chunk_id": public_chunk.id, "document_id": public_chunk.document_id,
                "document_title": "Staff handbook", "heading_path": "Holidays", "page": None,
                "excerpt": PUBLIC, "text": PUBLIC, "char_start": 0, "char_end": len(PUBLIC), "cited": True,
            }
        ],
    )  # fmt: skip
    stream = reverse("search:answer_stream", args=[message.id])
    assert PUBLIC in "".join(data for _name, data in sse_events(staff_client.get(stream)))

    staff_user.groups.remove(groups[0])

    replay = "".join(data for _name, data in sse_events(staff_client.get(stream)))
    assert "Five days" in replay
    assert PUBLIC not in replay and f"/passages/{public_chunk.id}/" not in replay
    feedback = staff_client.post(reverse("search:feedback", args=[message.id]), {"rating": "up"}, **HTMX)
    assert PUBLIC not in feedback.content.decode()


@pytest.mark.parametrize(
    ("name", "method", "needs_id"),
    [
        ("search:home", "get", False),
        ("search:ask", "post", False),
        ("search:answer_stream", "get", True),
        ("search:feedback", "post", True),
        ("search:passage", "get", True),
        ("search:conversation", "get", True),
    ],
)
def test_every_ask_page_url_needs_a_login(
    name: str, method: str, needs_id: bool, public_chunk: Chunk
) -> None:
    url = reverse(name, args=[public_chunk.id] if needs_id else [])
    response = getattr(Client(), method)(url)
    assert response.status_code == 302 and "/login/" in response["Location"]


def test_superuser_reads_every_collection(
    public_chunk: Chunk, secret_chunk: Chunk, fake_inference: FakeInference, settings: Any
) -> None:
    client = Client()
    client.force_login(make_user(is_superuser=True))
    assert client.get(reverse("search:passage", args=[secret_chunk.id])).status_code == 200
