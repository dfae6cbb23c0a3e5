"""`manage.py export_training_pairs`: fine-tuning pairs from the organisation's chunks and helpful answers."""

from __future__ import annotations

import io
import json
from pathlib import Path
from typing import Any

import pytest
from django.core.management import call_command
from django.core.management.base import CommandError

from evaluation.datasets import dataset_load
from ingest.models import Chunk
from search.models import Feedback, GeneratedQuestion
from tests.search.factories import add_chunks, make_collection, make_document
from tests.search.test_export_feedback import make_feedback
from tuning.management.commands.export_training_pairs import is_held_out

pytestmark = pytest.mark.django_db


def export(*args: str) -> dict[str, Any]:
    out = io.StringIO()
    call_command("export_training_pairs", *args, stdout=out)
    result: dict[str, Any] = json.loads(out.getvalue().strip().splitlines()[-1])
    return result


def read_jsonl(path: Path) -> list[dict[str, Any]]:
    return [json.loads(line) for line in path.read_text().splitlines()]


def test_pairs_come_from_live_headed_chunks_and_helpful_answers_split_by_document(tmp_path: Path) -> None:
    collection = make_collection(name="handbook")
    documents = [make_document(collection=collection) for _ in range(40)]
    for n, document in enumerate(documents):
        add_chunks(document, f"Procedure {n} has {n} steps.", heading_path=f"Handbook > Procedure {n}")
        add_chunks(document, "A paragraph under no heading.")
    stale = Chunk.objects.filter(document=documents[0]).first()
    assert stale is not None
    Chunk.objects.filter(id=stale.id).update(generation=0, ordinal=99)
    make_feedback(rating=Feedback.Rating.UP, answer="25 days [1].")
    make_feedback(rating=Feedback.Rating.DOWN, answer="Booked in the HR tool [2].")

    summary = export("--out-dir", str(tmp_path), "--heldout-pct", "20")

    train, heldout = read_jsonl(tmp_path / "train.jsonl"), read_jsonl(tmp_path / "heldout.jsonl")
    rows = train + heldout
    assert summary["train"] == len(train) and summary["heldout"] == len(heldout)
    assert {row["anchor"] for row in rows if row["source"].startswith("chunk:")} == {
        f"Handbook > Procedure {n}" for n in range(1, 40)
    }, "the stale generation's chunk and the chunks without a heading give no pair"
    assert summary["from_feedback"] == 1
    assert {"How many days of leave? (standalone)"} == {
        row["anchor"] for row in rows if row["source"].startswith("feedback:")
    }, "only the helpful answer's cited passage"
    # Split by document: a document's pairs are all on one side, and both sides are used.
    assert train and heldout
    for row in rows:
        if row["source"].startswith("chunk:"):
            chunk = Chunk.objects.get(id=int(row["source"].split(":")[1]))
            held = is_held_out(f"document:{chunk.document_id}", heldout_pct=20)
            assert (row in heldout) == held

    # The held-out pairs are an evaluation set the gate can read.
    dataset = dataset_load(tmp_path / "heldout-beir")
    assert len(dataset.queries) == summary["heldout_beir"]["queries"] > 0
    assert len(dataset.corpus) == summary["heldout_beir"]["documents"]


def test_only_the_named_collection_is_exported(tmp_path: Path) -> None:
    for name in ("kept", "other"):
        add_chunks(make_document(collection=make_collection(name=name)), f"{name} text", heading_path=name)
    export("--out-dir", str(tmp_path), "--collection", "kept", "--heldout-pct", "1")
    rows = read_jsonl(tmp_path / "train.jsonl") + read_jsonl(tmp_path / "heldout.jsonl")
    assert [row["anchor"] for row in rows] == ["kept"]


def test_nothing_to_export_and_unknown_collections_are_clear_errors(tmp_path: Path) -> None:
    with pytest.raises(CommandError, match="nothing to export"):
        export("--out-dir", str(tmp_path))
    with pytest.raises(CommandError, match="No collection is named 'missing'"):
        export("--out-dir", str(tmp_path), "--collection", "missing")


def test_kept_generated_questions_are_pairs_grouped_with_their_document(tmp_path: Path) -> None:
    collection = make_collection(name="handbook")
    documents = [make_document(collection=collection) for _ in range(30)]
    for n, document in enumerate(documents):
        (chunk,) = add_chunks(document, f"Procedure {n} has {n} steps.")
        GeneratedQuestion.objects.create(
            chunk=chunk, model="m", text=f"How many steps has {n}?", kept=True, rank=1
        )
        GeneratedQuestion.objects.create(chunk=chunk, model="m", text=f"Who wrote {n}?", kept=False)
        GeneratedQuestion.objects.create(chunk=chunk, model="m", text="", kept=False)
    stale = Chunk.objects.get(document=documents[0])
    Chunk.objects.filter(id=stale.id).update(generation=0)

    summary = export("--out-dir", str(tmp_path), "--heldout-pct", "20")

    train, heldout = read_jsonl(tmp_path / "train.jsonl"), read_jsonl(tmp_path / "heldout.jsonl")
    assert summary["from_generated_questions"] == 29, "kept ones of live chunks only"
    assert {row["anchor"] for row in train + heldout} == {f"How many steps has {n}?" for n in range(1, 30)}
    for row in train + heldout:
        question = GeneratedQuestion.objects.get(id=int(row["source"].removeprefix("generated:")))
        chunk = Chunk.objects.get(id=question.chunk_id)
        assert row["positive"] == chunk.text
        assert (row in heldout) == is_held_out(f"document:{chunk.document_id}", heldout_pct=20)
    assert train and heldout


def test_source_keeps_only_the_kinds_of_pair_asked_for(tmp_path: Path) -> None:
    """A fine-tune on kept generated questions alone: heading pairs (and feedback) are left out."""
    collection = make_collection(name="handbook")
    for n in range(10):
        (chunk,) = add_chunks(make_document(collection=collection), f"Step {n}.", heading_path=f"src/{n}.py")
        GeneratedQuestion.objects.create(chunk=chunk, model="m", text=f"What is step {n}?", kept=True, rank=1)
    make_feedback(rating=Feedback.Rating.UP, answer="25 days [1].")

    summary = export("--out-dir", str(tmp_path), "--source", "generated", "--heldout-pct", "20")

    rows = read_jsonl(tmp_path / "train.jsonl") + read_jsonl(tmp_path / "heldout.jsonl")
    assert {row["anchor"] for row in rows} == {f"What is step {n}?" for n in range(10)}
    assert summary["from_feedback"] == 0 and summary["from_generated_questions"] == 10
    both = export("--out-dir", str(tmp_path / "both"), "--source", "generated", "--source", "heading")
    assert both["train"] + both["heldout"] == 20
    with pytest.raises(CommandError):
        export("--out-dir", str(tmp_path / "bad"), "--source", "titles")
