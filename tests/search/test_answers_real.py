"""The answer service on the real parts: ingestion, MiniLM embeddings, PostgreSQL and the CPU chat model.

The evidence gate and the extractive answer are tested here in both directions on real passages with the
real embedding model, whose similarities (unlike the scripted stand-in's hashed words) are never zero.
"""

from __future__ import annotations

from typing import Any

import pytest
from asgiref.sync import async_to_sync

from ingest.models import Document
from ingest.services import collection_get_or_create, document_create_from_bytes, document_ingest
from search import services
from search.services import AnswerEvent

pytestmark = [pytest.mark.django_db(transaction=True)]

POLICY = b"""# Travel and expenses policy

## Booking travel

All business travel is booked through the travel desk at least ten working days before departure.
Rail is the default for journeys under four hours; flights need the approval of a director.

## Hotels

Hotel stays are reimbursed up to 140 pounds a night in London and 95 pounds a night elsewhere.
Breakfast is included in the nightly limit.

## Claiming expenses

Expense claims are submitted in the finance portal within 30 days of the expense, with a photo of
every receipt. Claims above 500 pounds need a second approver from the finance team.
Mileage in a private car is paid at 45 pence a mile for the first 10,000 miles of the tax year.
"""


@pytest.fixture
def policy(use_inference: Any) -> int:
    collection = collection_get_or_create(name="Staff handbook")
    document = document_create_from_bytes(collection=collection, data=POLICY, name="travel-policy.md")
    document_ingest(document_id=document.id)
    document.refresh_from_db()
    assert document.status == Document.Status.READY, document.error
    return collection.id


def collect(collection_id: int, question: str) -> list[AnswerEvent]:
    async def run() -> list[AnswerEvent]:
        return [
            event
            async for event in services.answer_stream(
                collection_ids=[collection_id], question=question, request_id="real-answers"
            )
        ]

    return async_to_sync(run)()


def by_kind(events: list[AnswerEvent], kind: str) -> AnswerEvent | None:
    return next((event for event in events if event.kind == kind), None)


@pytest.mark.parametrize(
    ("question", "fact"),
    [
        ("How much does the company pay per mile for driving my own car?", "45 pence"),
        ("What is the hotel limit per night in London?", "140 pounds"),
        ("Within how many days must an expense claim be submitted?", "30 days"),
    ],
)
def test_a_question_the_passages_answer_gets_an_extract_with_the_fact_and_a_checked_answer(
    policy: int, question: str, fact: str
) -> None:
    events = collect(policy, question)

    extract = by_kind(events, "extract")
    assert extract is not None and fact in extract.text
    assert all(source.highlight_start is not None for source in extract.sources)
    done = events[-1]
    assert done.kind == "done" and not done.refused, done
    assert fact in done.text and any(source.cited for source in done.sources)


@pytest.mark.parametrize(
    "question",
    [
        "What is the capital of Australia?",
        "Who wrote the novel Pride and Prejudice?",
        "¿Cuál es la capital de Australia?",
        "什么是澳大利亚的首都？",
        "!!! ??? ...",
        "",
    ],
)
def test_a_question_the_passages_do_not_answer_is_refused_without_sources_or_a_model(
    policy: int, question: str
) -> None:
    events = collect(policy, question)

    # No extract and no token: the gate refused before any model was asked.
    assert [event.kind for event in events] == ["sources", "done"]
    assert events[-1].refused and events[-1].sources == () and events[0].sources == ()
    assert events[-1].text == services.NOT_FOUND_ANSWER


def test_an_enormous_question_is_answered_or_refused_not_an_error(policy: int) -> None:
    events = collect(policy, "What is the hotel limit per night in London? " + "please " * 3000)
    assert events[-1].kind == "done", events[-1]
