"""Answers through a widget: only the key's collections are read, and every exchange is logged."""

from __future__ import annotations

import json
from typing import Any

import pytest
from asgiref.sync import async_to_sync
from django.http import StreamingHttpResponse
from django.test import Client

from tests.search.factories import CollectionFactory, DocumentFactory, add_chunks
from tests.search.fake_inference import Busy, FakeInference, Reply
from widget.models import WidgetExchange, WidgetKey
from widget.tokens import token_mint

from .factories import HOST_ORIGIN, make_key

pytestmark = pytest.mark.django_db

LAPTOPS = "Customers may return a laptop within 30 days of delivery for a full refund."
SECRET_LAPTOPS = "Internal only: laptop refunds above 2000 EUR need the finance director's approval."


def sse_events(client: Client, public_id: str, body: dict[str, Any]) -> list[tuple[str, dict[str, Any]]]:
    response = client.post(
        f"/widget/v1/{public_id}/ask",
        data=json.dumps(body),
        content_type="application/json",
        headers={"Origin": HOST_ORIGIN},
    )
    assert response.status_code == 200, response.content
    assert isinstance(response, StreamingHttpResponse) and response.is_async

    async def read() -> bytes:
        return b"".join([chunk async for chunk in response])

    text = async_to_sync(read)().decode()
    events = []
    for block in text.strip().split("\n\n"):
        lines = dict(line.split(": ", 1) for line in block.splitlines())
        events.append((lines["event"], json.loads(lines["data"])))
    return events


@pytest.fixture
def public_and_internal() -> tuple[Any, Any]:
    public = DocumentFactory.create(title="Returns policy")
    add_chunks(public, LAPTOPS, heading_path="Returns > Laptops", page=2)
    internal = DocumentFactory.create(title="Finance handbook")
    add_chunks(internal, SECRET_LAPTOPS, heading_path="Refunds > Approval")
    return public.collection, internal.collection


def test_a_key_scoped_to_one_collection_never_returns_passages_of_another(
    client: Client, fake_inference: FakeInference, public_and_internal: tuple[Any, Any]
) -> None:
    public, internal = public_and_internal
    key, _ = make_key(collections=[public])
    fake_inference.default_reply = Reply(["Within 30 days ", "[1]."])

    events = sse_events(client, key.public_id, {"question": "How do laptop refunds work?"})

    assert [kind for kind, _ in events] == ["sources", "extract", "token", "token", "done"]
    sources = events[0][1]["sources"]
    assert [source["text"] for source in sources] == [LAPTOPS]
    assert sources[0] | {"text": ""} == {
        "number": 1,
        "title": "Returns policy",
        "heading": "Returns > Laptops",
        "page": 2,
        "excerpt": LAPTOPS,
        "text": "",
        "cited": False,
        "highlight": None,
    }
    # The extract quotes the passage's sentence; the final answer cites it first.
    assert events[1][1]["sources"][0]["highlight"] == [0, len(LAPTOPS)]
    assert events[-1][1]["sources"][0]["cited"] and not events[-1][1]["refused"]
    # The model never saw the other collection's passage either.
    prompt = json.dumps(fake_inference.answer_requests[0]["messages"])
    assert "finance director" not in prompt and "30 days" in prompt
    # The same question through a key on both collections does reach it: the scope is the key's.
    both, _ = make_key(collections=[public, internal])
    texts = [
        s["text"]
        for s in sse_events(client, both.public_id, {"question": "How do laptop refunds work?"})[0][1][
            "sources"
        ]
    ]
    assert SECRET_LAPTOPS in texts


def test_every_exchange_is_logged_with_visitor_answer_and_sources(
    client: Client, fake_inference: FakeInference, public_and_internal: tuple[Any, Any]
) -> None:
    key, secret = make_key(collections=[public_and_internal[0]])
    fake_inference.default_reply = Reply(["Within 30 days [1]."])
    token = token_mint(secret=secret, public_id=key.public_id, visitor_id="agent-7")

    sse_events(client, key.public_id, {"question": "  How long for laptop refunds? ", "token": token})

    exchange = WidgetExchange.objects.get(key=key)
    assert exchange.status == WidgetExchange.Status.ANSWERED
    assert (exchange.visitor, exchange.origin) == ("agent-7", HOST_ORIGIN)
    assert exchange.question == "How long for laptop refunds?"
    assert exchange.answer.startswith("Within 30 days [1].")
    assert [source["title"] for source in exchange.sources] == ["Returns policy"]
    assert exchange.finished_at is not None
    assert WidgetKey.objects.get(pk=key.pk).last_used_at is not None


def test_a_busy_model_is_announced_and_the_extract_kept_when_it_stays_busy(
    client: Client, fake_inference: FakeInference, public_and_internal: tuple[Any, Any], settings: Any
) -> None:
    settings.RAGSITE_ANSWER_BUSY_RETRIES = 1
    key, _ = make_key(collections=[public_and_internal[0]])
    fake_inference.chat_script[:] = [Busy(retry_after=0), Busy(retry_after=0)]

    events = sse_events(client, key.public_id, {"question": "How long for laptop refunds?"})

    assert [kind for kind, _ in events] == ["sources", "extract", "busy", "done"]
    assert "busy" in events[2][1]["message"] and events[2][1]["retry_after"] is not None
    # The passages' own words stand in for the model's, and say so, and when to ask for the full answer.
    assert "could not write an answer just now" in events[-1][1]["answer"]
    assert events[-1][1]["origin"] == "extract" and events[-1][1]["retry_after"] == 1
    assert WidgetExchange.objects.get(key=key).status == WidgetExchange.Status.ANSWERED


def test_the_same_question_again_is_answered_from_the_cache_and_says_when_it_was_written(
    client: Client, fake_inference: FakeInference, public_and_internal: tuple[Any, Any]
) -> None:
    public, internal = public_and_internal
    key, _ = make_key(collections=[public])
    other, _ = make_key(collections=[internal])
    fake_inference.chat_script[:] = [Reply(["Within 30 days [1]."]), Reply(["Ask the finance director [1]."])]

    first = sse_events(client, key.public_id, {"question": "How long for laptop refunds?"})
    again = sse_events(client, key.public_id, {"question": "how long for laptop refunds"})
    elsewhere = sse_events(client, other.public_id, {"question": "How long for laptop refunds?"})

    assert first[-1][1]["reused_at"] is None and first[-1][1]["origin"] == "model"
    assert [kind for kind, _ in again] == ["sources", "extract", "done"] and again[-1][1]["reused_at"]
    assert again[-1][1]["answer"] == first[-1][1]["answer"]
    assert first[-1][1]["answer"].startswith("Within 30 days [1].")
    # Another key's collections make another answer: nothing of the first key's comes out of it.
    assert elsewhere[-1][1]["reused_at"] is None and "finance director" in elsewhere[-1][1]["answer"]
    assert len(fake_inference.answer_requests) == 2
    assert [e.status for e in WidgetExchange.objects.filter(key=key)] == [WidgetExchange.Status.ANSWERED] * 2


def test_history_is_passed_on_for_follow_ups(
    client: Client, fake_inference: FakeInference, public_and_internal: tuple[Any, Any]
) -> None:
    key, _ = make_key(collections=[public_and_internal[0]])
    fake_inference.chat_script[:] = [Reply(["How long do laptop refunds take?"]), Reply(["30 days [1]."])]
    history = [["Can I return a laptop?", "Yes [1]."]]

    events = sse_events(client, key.public_id, {"question": "How long?", "history": history})

    assert events[-1][0] == "done" and events[-1][1]["answer"].startswith("30 days [1].")
    assert "Can I return a laptop?" in json.dumps(fake_inference.chat_requests[0]["messages"])


def test_refused_questions_are_not_logged(client: Client, fake_inference: FakeInference) -> None:
    key, _ = make_key(collections=[CollectionFactory.create()], requires_visitor_token=True)
    response = client.post(
        f"/widget/v1/{key.public_id}/ask",
        data=json.dumps({"question": "Hi?"}),
        content_type="application/json",
        headers={"Origin": HOST_ORIGIN},
    )
    assert response.status_code == 401
    assert not WidgetExchange.objects.filter(key=key).exists()
