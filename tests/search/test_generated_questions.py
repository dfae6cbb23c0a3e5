"""generate_questions: questions for chunks from the chat model, kept when they retrieve their own chunk.

The filter, the budget, resuming and the expansion are tested with scripted replies (the scripted stand-in's
embeddings are hashed bags of words, so which chunk a question retrieves is known); one test runs the real
CPU chat model and MiniLM end to end.
"""

from __future__ import annotations

import io
import json
from typing import Any

import pytest
from django.core.management import call_command

from ingest.models import Chunk, Collection, Document
from ingest.services import collection_get_or_create, document_create_from_bytes, document_ingest
from search.generated_questions import (
    CONSISTENCY_TOP_K,
    chunks_pending,
    expansions_apply,
    questions_generate,
    questions_parse,
    questions_prompt,
)
from search.models import GeneratedQuestion
from search.selectors import chunk_search
from tests.search.factories import add_chunks, make_collection, make_document
from tests.search.fake_inference import CHAT_MODEL, FakeInference, Reply
from tests.search.test_models import counted, per_collection, recounted

pytestmark = pytest.mark.django_db

PARKING_KEPT = "Which team hands out parking permits to employees?"
PARKING_REJECTED = "When does the canteen serve breakfast, lunch and dinner?"
LEAVE_KEPT = "How many days of annual leave do staff get?"


def test_a_reply_is_parsed_into_its_distinct_questions_without_numbering() -> None:
    reply = (
        "Sure! Here are some questions:\n"
        "1. How long is a library loan?\n"
        "2) Can I renew a loan online? Yes, twice.\n"
        "- **How long is a library loan?**\n"
        "Q3: Why?\n"
        "Question 4: What does an overdue book cost per day?\n"
        "What is the fine for a lost book?\n"
    )
    assert questions_parse(reply) == [
        "How long is a library loan?",
        "Can I renew a loan online?",
        "What does an overdue book cost per day?",
    ], "no preamble, no answer after the mark, no duplicate, no one-word question, at most three"
    assert questions_parse("I cannot write questions for this passage.") == []


def test_the_prompt_gives_the_passage_with_its_heading_after_one_example() -> None:
    messages = questions_prompt(heading="Handbook > Parking", text="Permits are issued in April.")
    assert [m["role"] for m in messages] == ["system", "user", "assistant", "user"]
    assert messages[-1]["content"].endswith("Handbook > Parking\n\nPermits are issued in April.")


@pytest.fixture
def handbook() -> Collection:
    """Five documents: parking (two chunks), leave, and three about the canteen."""
    collection = make_collection(name="handbook")
    parking = make_document(collection=collection)
    add_chunks(
        parking, "Parking permits are handed out by the facilities team each April.", heading_path="Parking"
    )
    leave = make_document(collection=collection)
    add_chunks(leave, "Annual leave is twenty five days a year for all staff.", heading_path="Leave")
    for meal, hours in (("breakfast", "seven until nine"), ("lunch", "twelve until two"), ("dinner", "six")):
        add_chunks(make_document(collection=collection), f"The canteen serves {meal} from {hours}.")
    add_chunks(
        parking, "Visitors sign in at reception before they use the north car park.", heading_path="Parking"
    )
    return collection


def chunk_with(text: str) -> Chunk:
    return Chunk.objects.get(text__startswith=text)


def test_chunks_are_taken_round_robin_over_documents(handbook: Collection) -> None:
    order = [
        chunk.text.split()[0:3] for chunk in chunks_pending(model=CHAT_MODEL, collection_ids=[handbook.id])
    ]
    assert [words[0] for words in order] == ["Parking", "Annual", "The", "The", "The", "Visitors"]


def test_questions_that_retrieve_their_chunk_are_kept_and_expand_it_resumably(
    fake_inference: FakeInference, handbook: Collection
) -> None:
    fake_inference.chat_script.extend(
        [
            Reply([f"1. {PARKING_KEPT}\n2. {PARKING_REJECTED}"]),
            Reply([f"Sure! Here are the questions:\n- {LEAVE_KEPT}"]),
        ]
    )
    assert (
        chunk_search(collection_ids=[handbook.id], query="employees", query_embedding=None, mode="keyword")
        == []
    )

    first = questions_generate(collection_ids=[handbook.id], budget=2)

    assert (first.chunks_done, first.chunks_total, first.stopped_by) == (2, 2, "budget")
    assert (first.questions, first.kept, first.model) == (3, 2, CHAT_MODEL)
    parking = chunk_with("Parking permits")
    rows = {row.text: row for row in GeneratedQuestion.objects.filter(chunk_id=parking.id)}
    assert rows[PARKING_KEPT].kept and rows[PARKING_KEPT].rank == 1
    assert not rows[PARKING_REJECTED].kept and rows[PARKING_REJECTED].rank is None, (
        f"the canteen chunks fill the top {CONSISTENCY_TOP_K}"
    )
    parking.refresh_from_db()
    assert parking.expansion == PARKING_KEPT, "only the kept question expands the chunk"
    assert parking.text.startswith("Parking permits are handed out"), "what a citation shows is unchanged"
    # The expansion is searched: a word only the kept question holds now finds its chunk by full text.
    found = chunk_search(
        collection_ids=[handbook.id], query="employees", query_embedding=None, mode="keyword"
    )
    assert [result.chunk_id for result in found] == [parking.id]
    assert per_collection() == recounted()
    assert counted()["employe"] == 1

    # Resumed: the two chunks done are not asked for again; replies without a question still count as done.
    second = questions_generate(collection_ids=[handbook.id], budget=10)

    assert (second.chunks_done, second.chunks_total, second.stopped_by) == (4, 4, "done")
    assert len(fake_inference.chat_requests) == 6
    assert second.questions == 0
    assert GeneratedQuestion.objects.filter(text="", kept=False).count() == 4
    assert chunks_pending(model=CHAT_MODEL, collection_ids=[handbook.id]).count() == 0

    assert expansions_apply(collection_ids=[handbook.id], enabled=False) == 2
    assert (
        chunk_search(collection_ids=[handbook.id], query="employees", query_embedding=None, mode="keyword")
        == []
    )
    assert per_collection() == recounted() and "employe" not in counted()
    assert expansions_apply(collection_ids=[handbook.id], enabled=True) == 2
    assert Chunk.objects.get(id=parking.id).expansion == PARKING_KEPT
    assert per_collection() == recounted()


def test_a_reingested_document_starts_without_questions_or_expansion(
    fake_inference: FakeInference, handbook: Collection
) -> None:
    fake_inference.chat_script.append(Reply([PARKING_KEPT]))
    questions_generate(collection_ids=[handbook.id], budget=1)
    parking = chunk_with("Parking permits")
    Chunk.objects.filter(document_id=parking.document_id).delete()  # what activating a new generation does

    assert not GeneratedQuestion.objects.filter(chunk_id=parking.id).exists()
    assert per_collection() == recounted()


def test_the_command_reports_progress_and_stops_at_its_budget_or_time(
    fake_inference: FakeInference, handbook: Collection, capsys: pytest.CaptureFixture[str]
) -> None:
    fake_inference.chat_script.append(Reply([PARKING_REJECTED]))
    out = io.StringIO()

    call_command("generate_questions", "--budget", "1", "--json", stdout=out)

    summary: dict[str, Any] = json.loads(out.getvalue())
    assert summary["chunks_done"] == 1 and summary["stopped_by"] == "budget"
    assert "chunks 1/1: 0/1 questions kept (0%)" in capsys.readouterr().err

    out = io.StringIO()
    call_command("generate_questions", "--budget", "5", "--seconds", "0", "--json", stdout=out)
    assert json.loads(out.getvalue())["chunks_done"] == 0
    assert json.loads(out.getvalue())["stopped_by"] == "seconds"


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
"""


@pytest.mark.django_db(transaction=True)
def test_the_cpu_chat_model_writes_questions_that_are_filtered_by_real_retrieval(use_inference: Any) -> None:
    collection = collection_get_or_create(name="Staff handbook")
    document = document_create_from_bytes(collection=collection, data=POLICY, name="travel-policy.md")
    document_ingest(document_id=document.id)
    document.refresh_from_db()
    assert document.status == Document.Status.READY, document.error

    run = questions_generate(collection_ids=[collection.id], budget=2)

    assert run.chunks_done == min(2, Chunk.objects.filter(document=document).count())
    assert run.model != CHAT_MODEL and run.questions >= 1, "the product's chat model wrote questions"
    # Oldest first, as a chunk's expansion lists them (a row updated after it was written can move on disk).
    rows = list(GeneratedQuestion.objects.filter(chunk__document=document).order_by("id"))
    assert {row.model for row in rows} == {run.model}
    assert all(row.text.endswith("?") for row in rows if row.text)
    assert all((row.rank is not None and row.rank <= CONSISTENCY_TOP_K) == row.kept for row in rows)
    for chunk in Chunk.objects.filter(id__in={row.chunk_id for row in rows}):
        assert chunk.expansion.splitlines() == [
            row.text for row in rows if row.chunk_id == chunk.id and row.kept
        ]
    assert per_collection() == recounted()
