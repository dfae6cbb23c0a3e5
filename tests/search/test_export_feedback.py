"""`manage.py export_feedback`: records, training pairs and an evaluation set from feedback on answers."""

from __future__ import annotations

import io
import json
from pathlib import Path
from typing import Any

import pytest
from django.contrib.auth.models import User
from django.core.management import call_command
from django.core.management.base import CommandError

from evaluation.datasets import dataset_load
from search.models import Conversation, Feedback, Message

pytestmark = pytest.mark.django_db


def passage(number: int, chunk_id: int, text: str) -> dict[str, Any]:
    return {
        "number": number,
        "chunk_id": chunk_id,
        "document_id": 1,
        "document_title": "Handbook",
        "heading_path": "Handbook > Leave",
        "page": None,
        "excerpt": text[:20],
        "text": text,
        "char_start": 0,
        "char_end": len(text),
    }


def make_feedback(*, rating: str, answer: str, question: str = "How many days of leave?") -> Feedback:
    user = User.objects.create_user(username=f"u{Feedback.objects.count()}")
    conversation = Conversation.objects.create(user=user, title=question)
    passages = [
        passage(1, 11, "Staff get 25 days of leave."),
        passage(2, 12, "Leave is booked in the HR tool."),
    ]
    message = Message.objects.create(
        conversation=conversation,
        question=question,
        standalone_question=f"{question} (standalone)",
        answer=answer,
        sources=passages,
        status=Message.Status.ANSWERED,
    )
    return Feedback.objects.create(
        message=message,
        user=user,
        rating=rating,
        question=question,
        standalone_question=message.standalone_question,
        answer=answer,
        passages=passages,
    )


def export(*args: str) -> dict[str, Any]:
    out = io.StringIO()
    call_command("export_feedback", *args, stdout=out)
    result: dict[str, Any] = json.loads(out.getvalue().strip().splitlines()[-1])
    return result


def read_jsonl(path: Path) -> list[dict[str, Any]]:
    return [json.loads(line) for line in path.read_text().splitlines()]


def test_jsonl_exports_every_record_with_its_citations(tmp_path: Path) -> None:
    up = make_feedback(rating="up", answer="25 days [1].")
    make_feedback(rating="down", answer="I do not know.")

    assert export("--out", str(tmp_path / "all.jsonl"))["rows"] == 2
    rows = read_jsonl(tmp_path / "all.jsonl")
    assert [row["rating"] for row in rows] == ["up", "down"]
    assert rows[0]["id"] == up.id
    assert rows[0]["cited"] == [1]
    assert len(rows[0]["passages"]) == 2

    assert export("--out", str(tmp_path / "down.jsonl"), "--rating", "down")["rows"] == 1


def test_pairs_are_queries_with_the_passages_helpful_answers_cite(tmp_path: Path) -> None:
    make_feedback(rating="up", answer="25 days [1], booked in the HR tool [2].")
    make_feedback(rating="up", answer="No citation here.")
    make_feedback(rating="down", answer="Wrong [1].")

    export("--out", str(tmp_path / "pairs.jsonl"), "--format", "pairs")

    rows = read_jsonl(tmp_path / "pairs.jsonl")
    assert [(row["anchor"], row["positive"]) for row in rows] == [
        ("How many days of leave? (standalone)", "Handbook > Leave\n\nStaff get 25 days of leave."),
        ("How many days of leave? (standalone)", "Handbook > Leave\n\nLeave is booked in the HR tool."),
    ]


def test_beir_export_is_a_dataset_evaluate_can_read(tmp_path: Path) -> None:
    helpful = make_feedback(rating="up", answer="25 days [1].")
    make_feedback(rating="down", answer="Wrong [2].")

    counts = export("--out", str(tmp_path / "set"), "--format", "beir")

    assert counts == {
        "format": "beir",
        "out": str(tmp_path / "set"),
        "documents": 2,
        "queries": 1,
        "judgements": 1,
    }
    dataset = dataset_load(tmp_path / "set")
    assert {entry.id for entry in dataset.corpus} == {"chunk-11", "chunk-12"}
    assert dataset.queries == {f"feedback-{helpful.id}": "How many days of leave? (standalone)"}
    assert dataset.qrels == {f"feedback-{helpful.id}": {"chunk-11": 1}}


def test_since_must_be_a_date(tmp_path: Path) -> None:
    with pytest.raises(CommandError, match="--since"):
        export("--out", str(tmp_path / "x.jsonl"), "--since", "last week")
    make_feedback(rating="up", answer="[1]")
    assert export("--out", str(tmp_path / "y.jsonl"), "--since", "2000-01-01")["rows"] == 1
    assert export("--out", str(tmp_path / "z.jsonl"), "--since", "2999-01-01")["rows"] == 0
