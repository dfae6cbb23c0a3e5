"""Shared answers on the real PostgreSQL and Redis, against the scripted inference API: a finished answer
reused, people asking at once served by one answer, and what the page says about either.
"""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import Sequence
from typing import Any

import pytest
from django.test import Client
from django.urls import reverse

from ingest.models import Document
from search import embedding_cache, retrieval_gate, single_flight
from search.answer_cache import question_normalised
from search.answer_redis import answer_redis
from search.models import Feedback, Message
from search.services import NOT_FOUND_ANSWER, AnswerEvent
from search.shared_answers import SharedAnswer, answer_stream_shared, shared_answer_key
from tests.search.answer_scripts import ANSWER, LAPTOPS, QUESTION, crowded_retrieval, kinds, run, scripted
from tests.search.factories import add_chunks, make_document, make_group, make_user
from tests.search.fake_inference import Busy, FakeInference, Reply
from tests.search.test_views import HTMX, sse_events

pytestmark = pytest.mark.django_db

PHONES = "Customers may return a laptop within 14 days if it was bought in a shop abroad."


@pytest.fixture(autouse=True)
def no_cached_embeddings() -> None:
    """Question embeddings cached by earlier tests would hide the embedding requests these tests count."""

    async def forget() -> None:
        redis = answer_redis()
        async for key in redis.scan_iter(match=f"{embedding_cache.KEY_PREFIX}embedding:*"):
            await redis.delete(key)

    embedding_cache._local.clear()
    run(forget)


async def read(shared: SharedAnswer) -> list[AnswerEvent]:
    return [event async for event in shared]


def ask(collection_ids: Sequence[int], question: str = QUESTION) -> tuple[list[AnswerEvent], SharedAnswer]:
    shared = answer_stream_shared(collection_ids=collection_ids, question=question, request_id="test")
    return run(lambda: read(shared)), shared


@pytest.fixture
def laptops() -> Any:
    document = make_document(title="Returns policy")
    add_chunks(document, LAPTOPS, heading_path="Returns > Laptops", page=2)
    add_chunks(document, "Gift cards cannot be exchanged for cash.", heading_path="Returns > Gift cards")
    return document


def test_a_finished_answer_is_reused_for_the_same_question_however_it_is_written(
    fake_inference: FakeInference, laptops: Document
) -> None:
    fake_inference.default_reply = Reply(["Laptops can be returned ", "within 30 days [1]."])
    first, first_shared = ask([laptops.collection_id])
    embedded = len(fake_inference.embedding_inputs)

    again, shared = ask([laptops.collection_id], "how long can i return a LAPTOP")

    assert first_shared.reused_at is None and kinds(first)[-1] == "done"
    assert kinds(again) == ["sources", "extract", "done"]
    assert again[-1].text == first[-1].text
    assert first[-1].text.startswith("Laptops can be returned within 30 days [1].")
    assert again[-1].origin == "model" and again[0].sources == first[0].sources
    assert shared.reused_at is not None
    assert len(fake_inference.answer_requests) == 1 and len(fake_inference.embedding_inputs) == embedded


def test_an_answer_cut_short_by_a_busy_model_is_not_reused_but_a_refusal_is(
    fake_inference: FakeInference, laptops: Document, settings: Any
) -> None:
    settings.RAGSITE_ANSWER_BUSY_RETRIES = 1
    fake_inference.chat_script[:] = [Busy(), Busy()]
    busy, _ = ask([laptops.collection_id])
    assert busy[-1].origin == "extract" and "could not write an answer" in busy[-1].text

    fake_inference.default_reply = Reply(["30 days [1]."])
    later, shared = ask([laptops.collection_id])
    assert shared.reused_at is None and later[-1].origin == "model"

    refusal, _ = ask([laptops.collection_id], "Which penguins nest on glaciers?")
    again, shared = ask([laptops.collection_id], "which penguins nest on glaciers")
    assert refusal[-1].text == again[-1].text == NOT_FOUND_ANSWER and shared.reused_at is not None


def test_an_answer_larger_than_the_bound_is_not_kept(
    fake_inference: FakeInference, laptops: Document, settings: Any
) -> None:
    settings.RAGSITE_ANSWER_CACHE_MAX_BYTES = 200
    fake_inference.default_reply = Reply(["30 days [1]."])
    ask([laptops.collection_id])
    _, shared = ask([laptops.collection_id])
    assert shared.reused_at is None and len(fake_inference.answer_requests) == 2


def test_a_follow_up_is_answered_on_its_own_never_from_the_cache(
    fake_inference: FakeInference, laptops: Document
) -> None:
    fake_inference.default_reply = Reply(["30 days [1]."])
    ask([laptops.collection_id])
    fake_inference.chat_script[:] = [Reply([QUESTION]), Reply(["30 days [1]."])]
    shared = answer_stream_shared(
        collection_ids=[laptops.collection_id],
        question="And laptops?",
        history=[("Can I return things?", "Yes [1].")],
        request_id="test",
    )
    events = run(lambda: read(shared))
    assert shared.reused_at is None and not shared.joined and kinds(events)[-1] == "done"
    assert len(fake_inference.answer_requests) == 2


def test_a_question_asked_over_other_collections_is_not_embedded_again(
    fake_inference: FakeInference, laptops: Document, settings: Any
) -> None:
    fake_inference.default_reply = Reply(["30 days [1]."])
    copy = make_document(title="Returns policy, shops")
    add_chunks(copy, LAPTOPS, heading_path="Returns > Laptops")
    ask([laptops.collection_id])
    ask([copy.collection_id])
    assert fake_inference.embedding_inputs.count(QUESTION) == 1
    assert len(fake_inference.answer_requests) == 2


def test_people_asking_at_once_share_one_retrieval_and_one_generation(
    fake_inference: FakeInference, laptops: Document
) -> None:
    fake_inference.default_reply = Reply(["Laptops can be ", "returned within ", "30 days [1]."], pause_s=0.1)
    questions = [QUESTION, "how long can I return a laptop", "How long can I return a laptop ?"] * 2

    async def everyone() -> tuple[list[list[AnswerEvent]], list[SharedAnswer]]:
        shared = [
            answer_stream_shared(
                collection_ids=[laptops.collection_id], question=question, request_id=f"r{n}"
            )
            for n, question in enumerate(questions)
        ]
        return list(await asyncio.gather(*(read(one) for one in shared))), shared

    answers, shared = run(everyone)

    assert len(fake_inference.answer_requests) == 1
    embedded = [question_normalised(text) for text in fake_inference.embedding_inputs]
    assert embedded.count(question_normalised(QUESTION)) == 1
    assert sorted(one.joined for one in shared) == [False] + [True] * 5
    for events in answers:
        assert [kind for kind in kinds(events) if kind != "token"] == ["sources", "extract", "done"]
        tokens = [event.text for event in events if event.kind == "token"]
        assert tokens and "".join(tokens) == "Laptops can be returned within 30 days [1]."
    assert len({events[-1].text for events in answers}) == 1
    assert answers[0][-1].text.startswith("Laptops can be returned within 30 days [1].")


def test_an_asker_behind_the_answer_gets_the_tokens_that_came_meanwhile_in_one_event() -> None:
    async def behind() -> list[AnswerEvent]:
        key = uuid.uuid4().hex
        tokens = [AnswerEvent(kind="token", text=text) for text in ("Within ", "30 ", "days ", "[1].")]
        hang = asyncio.Event()
        first = await single_flight._hub().join(key, scripted(*ANSWER[:2], *tokens, hang=hang))
        assert first is not None
        async with asyncio.timeout(30):
            while len(first[0].events) < 6:
                await asyncio.sleep(0.01)
        # Joined under the same key, it reads what the first asker's answer has so far.
        shared = answer_stream_shared(collection_ids=[1], question=QUESTION, request_id="t", key=key)
        seen: list[AnswerEvent] = []
        async for event in shared:
            seen.append(event)
            if event.kind == "token":
                break
        await shared.aclose()
        hang.set()
        single_flight._hub().leave(first[0])
        return seen

    seen = run(behind)
    assert kinds(seen) == ["sources", "extract", "token"] and seen[-1].text == "Within 30 days [1]."


def test_a_process_follows_at_most_its_bound_of_answers_then_answers_alone(
    fake_inference: FakeInference, laptops: Document, settings: Any
) -> None:
    settings.RAGSITE_ANSWER_MAX_FLIGHTS = 1

    async def two_questions() -> tuple[Any, list[AnswerEvent]]:
        hub = single_flight._hub()
        first = await hub.join(uuid.uuid4().hex, scripted(ANSWER[0], hang=asyncio.Event()))
        assert first is not None
        second = await hub.join(uuid.uuid4().hex, scripted(*ANSWER))
        shared = answer_stream_shared(
            collection_ids=[laptops.collection_id], question=QUESTION, request_id="t"
        )
        events = await read(shared)
        hub.leave(first[0])
        return second, events

    fake_inference.default_reply = Reply(["30 days [1]."])
    second, events = run(two_questions)
    assert second is None and kinds(events)[-1] == "done"


# The page --------------------------------------------------------------------------------------------------


def client_in(group: Any) -> tuple[Client, Any]:
    user = make_user(groups=[group])
    client = Client()
    client.force_login(user)
    return client, user


def ask_page(client: Client, question: str = QUESTION) -> tuple[Message, list[tuple[str, str]], str]:
    """Ask as the page does: the turn, its stream's events (none when the POST answered), the POST's page."""
    response = client.post(reverse("search:ask"), {"question": question, "conversation": ""}, **HTMX)
    assert response.status_code == 200
    page = response.content.decode()
    message = Message.objects.latest("id")
    events = []
    if message.status == Message.Status.PENDING:
        assert "sse-connect" in page
        events = sse_events(client.get(reverse("search:answer_stream", args=[message.id])))
    else:
        assert "sse-connect" not in page
    message.refresh_from_db()
    return message, events, page


def test_two_groups_asking_the_same_question_see_answers_from_their_own_documents(
    fake_inference: FakeInference,
) -> None:
    shop, abroad = make_group(), make_group()
    for group, text in ((shop, LAPTOPS), (abroad, PHONES)):
        add_chunks(make_document(collection__groups=[group], title=f"Policy {group.name}"), text)
    fake_inference.chat_script[:] = [Reply(["Within 30 days [1]."]), Reply(["Within 14 days [1]."])]

    first, _, _ = ask_page(client_in(shop)[0])
    second, events, page = ask_page(client_in(abroad)[0])
    again, _, again_page = ask_page(client_in(shop)[0])

    assert "30 days" in first.answer and "14 days" in second.answer
    assert first.reused_at is None and second.reused_at is None and events
    assert {source["text"] for source in first.sources} == {LAPTOPS}
    assert {source["text"] for source in second.sources} == {PHONES}
    assert "30 days" not in page and PHONES not in page
    # The POST answers from the cache only under the asker's own collections.
    assert again.reused_at is not None and "30 days" in again_page and PHONES not in again_page


def test_a_reused_answer_says_so_and_each_asker_rates_their_own_turn(
    fake_inference: FakeInference, laptops: Document
) -> None:
    group = make_group()
    laptops.collection.groups.set([group])
    fake_inference.default_reply = Reply(["Laptops can be returned within 30 days [1]."])
    (first_client, first_user), (second_client, second_user) = client_in(group), client_in(group)

    first, _, _ = ask_page(first_client)
    second, events, page = ask_page(second_client, "how long can I return a laptop")

    # Answered in the POST's own response: no stream to open.
    assert events == [] and second.status == Message.Status.ANSWERED
    assert "Reused: this answer was written" in page and 'data-origin="model"' in page
    assert 'class="sources"' in page and "Returns policy" in page
    assert second.reused_at is not None and second.answer == first.answer and second.origin == "model"
    assert len(fake_inference.answer_requests) == 1
    for client, message, rating in ((first_client, first, "up"), (second_client, second, "down")):
        response = client.post(reverse("search:feedback", args=[message.id]), {"rating": rating}, **HTMX)
        assert response.status_code == 200
    assert {(f.user, f.message_id, f.rating) for f in Feedback.objects.all()} == {
        (first_user, first.id, "up"),
        (second_user, second.id, "down"),
    }


def test_a_busy_model_leaves_the_extract_with_a_notice_of_when_to_ask_again(
    fake_inference: FakeInference, laptops: Document, settings: Any
) -> None:
    settings.RAGSITE_ANSWER_BUSY_RETRIES = 1
    group = make_group()
    laptops.collection.groups.set([group])
    fake_inference.chat_script[:] = [Busy(retry_after=0), Busy(retry_after=0)]

    message, events, _ = ask_page(client_in(group)[0])

    assert "within 30 days" in events[[name for name, _ in events].index("extract")][1]
    final = events[-1][1]
    assert "within 30 days" in final and "The full answer is queued" in final
    assert "Ask again in 1 s" in final  # the busy wait announced (Retry-After 0: at least 0.2 s)
    assert message.busy_retry_after == 1 and message.origin == "extract"


def test_a_follow_up_on_the_page_is_never_answered_from_the_cache(
    fake_inference: FakeInference, laptops: Document
) -> None:
    group = make_group()
    laptops.collection.groups.set([group])
    fake_inference.default_reply = Reply(["Laptops can be returned within 30 days [1]."])
    client, _ = client_in(group)
    first, _, _ = ask_page(client)

    response = client.post(
        reverse("search:ask"), {"question": QUESTION, "conversation": first.conversation_id}, **HTMX
    )

    follow_up = Message.objects.latest("id")
    assert follow_up.conversation_id == first.conversation_id and follow_up.status == Message.Status.PENDING
    assert "sse-connect" in response.content.decode()


def test_while_retrieval_could_not_take_a_new_question_in_time_it_is_turned_away_at_once_unless_answered(
    fake_inference: FakeInference, laptops: Document, monkeypatch: Any
) -> None:
    """A new question that would wait past retrieval's limit is answered 429 at the POST, with nothing
    recorded; one whose answer is kept, or is being written, is still answered; a follow-up is not."""
    group = make_group()
    laptops.collection.groups.set([group])
    fake_inference.default_reply = Reply(["Laptops can be returned within 30 days [1]."])
    client, _ = client_in(group)
    first, _, _ = ask_page(client)
    # 599 waiting and this one, at one a second: 600 s, 480 past retrieval's 120 s.
    monkeypatch.setattr(retrieval_gate, "_latest", crowded_retrieval(ahead=599, per_second=1.0))
    turns = Message.objects.count()

    refused = client.post(reverse("search:ask"), {"question": "Can gift cards be exchanged?"}, **HTMX)
    follow_up = client.post(
        reverse("search:ask"), {"question": "And a phone?", "conversation": first.conversation_id}, **HTMX
    )

    for response in (refused, follow_up):
        assert response.status_code == 429
        assert 470 <= int(response["Retry-After"]) <= 490
        assert "Please ask again in" in response.content.decode()
    assert Message.objects.count() == turns
    reused, events, _ = ask_page(client_in(group)[0], "How long can I return a LAPTOP")
    assert events == [] and reused.reused_at is not None
    # Someone is answering it right now (its lease is held): joining them needs no retrieval.
    key = shared_answer_key(collection_ids=[laptops.collection_id], question="Gift cards?", history=())
    assert key is not None
    run(lambda: answer_redis().set(single_flight._lease_key(key), "elsewhere", px=5000))
    joined = client.post(reverse("search:ask"), {"question": "gift cards", "conversation": ""}, **HTMX)
    assert joined.status_code == 200
    run(lambda: answer_redis().delete(single_flight._lease_key(key)))
