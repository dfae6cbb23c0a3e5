"""The ask page, its answer stream, feedback and the passage view, through Django's test client."""

from __future__ import annotations

import contextvars
import re
import time
from typing import Any

import pytest
from asgiref.sync import async_to_sync
from django.test import Client
from django.urls import reverse

from ops.admission import wait_until
from search.models import Conversation, Feedback, Message
from tests.search.factories import add_chunks, make_document, make_group, make_message, make_user
from tests.search.fake_inference import Busy, FakeInference, Reply

pytestmark = pytest.mark.django_db

REFUNDS = "Customers may return a laptop within 30 days of delivery for a full refund."
HTMX: dict[str, Any] = {"HTTP_HX_REQUEST": "true"}


@pytest.fixture
def staff() -> Any:
    return make_user(groups=[make_group(name="staff")])


@pytest.fixture
def refunds(staff: Any) -> Any:
    document = make_document(title="Returns policy", collection__groups=list(staff.groups.all()))
    add_chunks(document, "Our shop sells laptops and phones.", heading_path="Intro", page=1)
    (chunk,) = add_chunks(document, REFUNDS, heading_path="Returns > Laptops", page=2)
    add_chunks(
        document, "Gift cards cannot be exchanged for cash.", heading_path="Returns > Gift cards", page=3
    )
    return chunk


@pytest.fixture
def client_for(staff: Any) -> Client:
    client = Client()
    client.force_login(staff)
    return client


async def _read_all(response: Any) -> bytes:
    return b"".join([chunk async for chunk in response.streaming_content])


def sse_events(response: Any) -> list[tuple[str, str]]:
    """(event, data) pairs of a text/event-stream response."""
    assert response["Content-Type"] == "text/event-stream"
    body = async_to_sync(_read_all)(response).decode()
    events = []
    for block in body.split("\n\n"):
        if not block.strip():
            continue
        name = re.search(r"^event: (.*)$", block, re.MULTILINE)
        data = "\n".join(line[6:] for line in block.splitlines() if line.startswith("data: "))
        events.append((name.group(1) if name else "message", data))
    return events


def ask(client: Client, question: str, conversation: Conversation | None = None) -> Message:
    data = {"question": question, "conversation": conversation.id if conversation else ""}
    response = client.post(reverse("search:ask"), data, **HTMX)
    assert response.status_code == 200
    return Message.objects.latest("id")


def test_ask_page_needs_a_login() -> None:
    response = Client().get(reverse("search:home"))
    assert response.status_code == 302 and "/login/" in response["Location"]


def test_ask_page_loads_htmx_from_this_server_with_no_inline_script(client_for: Client) -> None:
    html = client_for.get(reverse("search:home")).content.decode()
    scripts = re.findall(r"<script[^>]*>", html)
    assert scripts and all('src="/static/' in tag for tag in scripts)
    assert all(not body.strip() for body in re.findall(r"<script[^>]*>(.*?)</script>", html, re.DOTALL))
    assert " on" not in " ".join(re.findall(r"<[^>]+>", html)).replace(" one", "")  # no onclick= etc.


def test_asking_records_the_question_and_returns_a_turn_that_streams(client_for: Client, staff: Any) -> None:
    response = client_for.post(reverse("search:ask"), {"question": "How long to return a laptop?"}, **HTMX)

    message = Message.objects.get()
    assert message.conversation.user == staff and message.status == Message.Status.PENDING
    html = response.content.decode()
    assert f'sse-connect="/answers/{message.id}/stream/"' in html
    assert 'hx-swap-oob="true"' in html  # a fresh form that now carries the conversation id
    assert f'value="{message.conversation_id}"' in html
    assert response["HX-Push-Url"] == f"/conversations/{message.conversation_id}/"


def test_asking_without_htmx_redirects_to_the_conversation(client_for: Client) -> None:
    response = client_for.post(reverse("search:ask"), {"question": "How long to return a laptop?"})
    conversation = Conversation.objects.get()
    assert response.status_code == 302 and response["Location"] == f"/conversations/{conversation.id}/"


def test_an_empty_question_shows_the_form_again_with_an_error(client_for: Client) -> None:
    response = client_for.post(reverse("search:ask"), {"question": "   "}, **HTMX)
    assert response.status_code == 200 and response["HX-Retarget"] == "#ask-form"
    assert "required" in response.content.decode()
    assert not Message.objects.exists()


def test_answer_streams_tokens_then_a_final_sanitised_answer_with_linked_citations(
    client_for: Client, refunds: Any, fake_inference: FakeInference
) -> None:
    fake_inference.default_reply = Reply(["Within **30 days** ", "[1]. ", "<script>x()</script>"])
    message = ask(client_for, "How long can I return a laptop?")

    events = sse_events(client_for.get(reverse("search:answer_stream", args=[message.id])))

    assert [name for name, _ in events] == ["sources", "status", "extract", "token", "token", "token", "done"]
    assert "Returns policy" in events[0][1] and "page 2" in events[0][1]
    # The extractive answer links to its sentence, highlighted in the passage view.
    assert "within 30 days" in events[2][1]
    assert f"/passages/{refunds.id}/?hl=0-{len(REFUNDS)}#passage" in events[2][1]
    assert events[5][1] == "<span>&lt;script&gt;x()&lt;/script&gt;</span>"
    final = events[-1][1]
    assert "<strong>30 days</strong>" in final
    assert f'<a class="cite" href="/passages/{refunds.id}/#passage"' in final
    assert "<script" not in final
    message.refresh_from_db()
    assert message.status == Message.Status.ANSWERED
    assert message.answer.startswith("Within **30 days** [1].")
    assert message.sources[0]["chunk_id"] == refunds.id


def test_busy_model_shows_a_retrying_state_then_the_answer(
    client_for: Client, refunds: Any, fake_inference: FakeInference
) -> None:
    fake_inference.chat_script[:] = [Busy(retry_after=0), Reply(["30 days [1]."])]
    message = ask(client_for, "How long can I return a laptop?")

    events = sse_events(client_for.get(reverse("search:answer_stream", args=[message.id])))

    assert [name for name, _ in events] == [
        "sources",
        "status",
        "extract",
        "status",
        "status",
        "token",
        "done",
    ]
    assert "busy, retrying" in events[3][1]
    assert "Writing the answer" in events[4][1]  # the busy notice goes once tokens flow again
    assert Message.objects.get().status == Message.Status.ANSWERED


def test_a_model_that_stays_busy_leaves_the_extractive_answer_not_a_500(
    client_for: Client, refunds: Any, fake_inference: FakeInference, settings: Any
) -> None:
    settings.RAGSITE_ANSWER_BUSY_RETRIES = 1
    fake_inference.chat_script[:] = [Busy(), Busy()]
    message = ask(client_for, "How long can I return a laptop?")

    response = client_for.get(reverse("search:answer_stream", args=[message.id]))
    events = sse_events(response)

    assert response.status_code == 200
    assert events[-1][0] == "done" and "could not write an answer just now" in events[-1][1]
    assert "within 30 days" in events[-1][1]
    message.refresh_from_db()
    assert message.status == Message.Status.ANSWERED


def test_a_reconnect_after_the_answer_replays_the_outcome_without_asking_again(
    client_for: Client, refunds: Any, fake_inference: FakeInference
) -> None:
    fake_inference.default_reply = Reply(["30 days [1]."])
    message = ask(client_for, "How long can I return a laptop?")
    sse_events(client_for.get(reverse("search:answer_stream", args=[message.id])))

    events = sse_events(client_for.get(reverse("search:answer_stream", args=[message.id])))

    assert [name for name, _ in events] == ["done"] and "30 days" in events[0][1]
    assert len(fake_inference.answer_requests) == 1


def test_follow_up_joins_the_conversation_and_sends_its_history_for_rewriting(
    client_for: Client, refunds: Any, fake_inference: FakeInference
) -> None:
    fake_inference.default_reply = Reply(["30 days [1]."])
    first = ask(client_for, "Can I return a laptop?")
    sse_events(client_for.get(reverse("search:answer_stream", args=[first.id])))
    fake_inference.chat_script[:] = [Reply(["How long can a laptop be returned?"]), Reply(["30 days [1]."])]

    second = ask(client_for, "How long?", conversation=first.conversation)
    sse_events(client_for.get(reverse("search:answer_stream", args=[second.id])))

    second.refresh_from_db()
    assert second.conversation_id == first.conversation_id
    assert second.standalone_question == "How long can a laptop be returned?"
    assert "Can I return a laptop?" in fake_inference.chat_requests[-2]["messages"][-1]["content"]


def test_conversations_are_listed_for_their_owner_only(client_for: Client, staff: Any) -> None:
    make_message(conversation__user=staff, conversation__title="Mine about refunds")
    make_message(conversation__title="Someone else's about salaries")

    html = client_for.get(reverse("search:home")).content.decode()

    assert "Mine about refunds" in html and "salaries" not in html


def test_conversation_page_renders_answers_sources_and_feedback_form(
    client_for: Client, staff: Any, refunds: Any
) -> None:
    message = make_message(
        conversation__user=staff,
        status=Message.Status.ANSWERED,
        answer="Within 30 days [1].",
        sources=[
            {
                "number": 1, "chunk_id": refunds.id, "document_id": refunds.document_id,
                "document_title": "Returns policy", "heading_path": "Returns > Laptops", "page": 2,
                "excerpt": REFUNDS, "text": REFUNDS, "char_start": 0, "char_end": len(REFUNDS),
            }
        ],
    )  # fmt: skip
    html = client_for.get(reverse("search:conversation", args=[message.conversation_id])).content.decode()

    assert f'href="/passages/{refunds.id}/#passage"' in html
    assert "Returns &gt; Laptops" in html and "page 2" in html
    assert f'action="/answers/{message.id}/feedback/"' in html


def test_feedback_is_stored_and_acknowledged(client_for: Client, staff: Any) -> None:
    message = make_message(conversation__user=staff, status=Message.Status.ANSWERED, answer="30 days [1].")
    url = reverse("search:feedback", args=[message.id])

    response = client_for.post(url, {"rating": "down", "comment": "It is 14 days for laptops."}, **HTMX)

    assert "Not helpful" in response.content.decode()
    feedback = Feedback.objects.get()
    assert (feedback.rating, feedback.comment, feedback.user) == ("down", "It is 14 days for laptops.", staff)
    assert feedback.answer == "30 days [1]."


def test_passage_view_shows_the_passage_highlighted_in_its_document(client_for: Client, refunds: Any) -> None:
    html = client_for.get(reverse("search:passage", args=[refunds.id])).content.decode()

    assert f'<mark id="passage" data-chunk-id="{refunds.id}">{REFUNDS}</mark>' in html
    assert "Our shop sells laptops and phones." in html  # its neighbours, unhighlighted
    assert "Returns &gt; Laptops" in html and "page 2" in html
    assert html.count("<mark") == 1


def test_passage_view_shows_overlapping_neighbours_once(client_for: Client, staff: Any) -> None:
    from ingest.models import Chunk

    document = make_document(collection__groups=list(staff.groups.all()))
    text = "Alpha one. Beta two. Gamma three. Delta four."
    spans = [(0, 20), (11, 33), (21, 45)]  # each chunk repeats the last sentence of the one before
    chunks = [
        Chunk.objects.create(
            document=document, collection_id=document.collection_id, generation=document.generation,
            ordinal=ordinal, text=text[start:end], char_start=start, char_end=end, token_count=4,
            embedding=[1.0] + [0.0] * 383,
        )
        for ordinal, (start, end) in enumerate(spans)
    ]  # fmt: skip

    html = client_for.get(reverse("search:passage", args=[chunks[1].id])).content.decode()

    assert '<p class="chunk">Alpha one. </p>' in html
    assert f'<mark id="passage" data-chunk-id="{chunks[1].id}">Beta two. Gamma three.</mark>' in html
    assert '<p class="chunk"> Delta four.</p>' in html
    assert html.count("Beta two.") == 1 and html.count("Gamma three.") == 1


def test_passage_view_shows_a_split_tables_header_once_and_again_above_the_cited_rows(
    client_for: Client, staff: Any
) -> None:
    from ingest.models import Chunk

    document = make_document(collection__groups=list(staff.groups.all()))
    header = "| City | Limit |\n| --- | --- |\n"
    text = f"{header}| London | 180 |\n| Paris | 160 |\n| Rome | 150 |"
    paris = text.index("| Paris")
    own = [(0, paris), (paris, len(text))]  # the second chunk starts inside the table: it repeats the header
    chunks = [
        Chunk.objects.create(
            document=document, collection_id=document.collection_id, generation=document.generation,
            ordinal=ordinal, text=(header if ordinal else "") + text[start:end], char_start=start,
            char_end=end, token_count=8, embedding=[1.0] + [0.0] * 383,
        )
        for ordinal, (start, end) in enumerate(own)
    ]  # fmt: skip

    cited_second = client_for.get(reverse("search:passage", args=[chunks[1].id])).content.decode()
    cited_first = client_for.get(reverse("search:passage", args=[chunks[0].id])).content.decode()

    assert cited_second.count("| City | Limit |") == 2  # the table's top, and above the cited rows
    cited_rows = "| City | Limit |<br>| --- | --- |<br>| Paris | 160 |"
    assert f'data-chunk-id="{chunks[1].id}">{cited_rows}' in cited_second
    assert cited_first.count("| City | Limit |") == 1  # the following chunk shows only its own rows
    assert cited_first.count("| Paris | 160 |") == 1


def test_a_question_keeps_the_wait_budget_its_request_had_left_for_its_answers_stream(
    client_for: Client,
) -> None:
    """The stream is a request of its own: retrieval and the model wait only for what the question's
    arrival at the door left (ops.admission.wait_until), so a question admitted late is told to come back."""
    until = time.time() + 42

    def asked() -> Message:
        wait_until.set(until)
        return ask(client_for, "How long to return a laptop?")

    message = contextvars.copy_context().run(asked)

    assert message.wait_until is not None and abs(message.wait_until.timestamp() - until) < 0.01
