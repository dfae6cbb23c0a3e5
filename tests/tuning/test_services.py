"""Registering, activating (re-embed, gate, switch or refuse) and rolling back retrievers, end to end.

Real PostgreSQL, a real Celery worker and the real inference API serving the base model and the registered
copies; the held-out split is the evaluation tests' tiny BEIR dataset.
"""

from __future__ import annotations

import io
import json
import threading
import uuid
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import pytest
from asgiref.sync import async_to_sync
from django.core.management import call_command
from django.core.management.base import CommandError
from django.db import connection

from ingest import services as ingest_services
from ingest.models import Chunk, Collection, Document
from ops import inference
from retrievers.models import Retriever
from retrievers.selectors import BASE_EMBEDDING_SLOT, EmbeddingSlot, embedding_slot_active
from search import services as search_services
from search.services import AnswerEvent
from tests.factories import CollectionFactory
from tests.ingest.conftest import wait_for, wait_until_done
from tests.processes import InferenceProcess, WorkerProcess
from tuning.services import RetrieverRefused, retriever_activate, retriever_register, retriever_rollback

Status = Retriever.Status

TOPICS = {
    "kitchen": (
        "Kitchen",
        ["The kettle is descaled every Friday.", "Mugs go in the dishwasher, not the sink."],
    ),
    "parking": ("Parking", ["Visitors park on level minus two.", "Bicycles are locked in the courtyard."]),
    "travel": ("Travel", ["Hotels are booked through the travel desk.", "Trains are second class."]),
    "payroll": ("Payroll", ["Salaries are paid on the 25th.", "Payslips are in the HR portal."]),
    "security": ("Security", ["Badges are worn visibly at all times.", "Lost badges are reported at once."]),
    "printing": ("Printing", ["The printer on floor three prints in colour.", "Toner is kept in room 301."]),
    "canteen": ("Canteen", ["Lunch is served from noon.", "The canteen closes at three."]),
}


def _markdown(title: str, paragraphs: Sequence[str]) -> bytes:
    sections = "".join(f"## Part {n}\n\n{text}\n\n" for n, text in enumerate(paragraphs, start=1))
    return f"# {title}\n\n{sections}".encode()


def _ingest(collection: Collection, names: Sequence[str], worker: WorkerProcess) -> list[Document]:
    documents = [
        ingest_services.document_create_from_bytes(
            collection=collection, data=_markdown(*TOPICS[name]), name=f"{name}-{uuid.uuid4().hex[:6]}.md"
        )
        for name in names
    ]
    wait_until_done([document.id for document in documents], worker=worker)
    assert all(
        d.status == Document.Status.READY for d in Document.objects.filter(id__in=[d.id for d in documents])
    )
    return documents


class QuestionSpy:
    """Asks through `answer_stream` (the path staff and the widget use) and records what it used."""

    def __init__(self, monkeypatch: pytest.MonkeyPatch) -> None:
        self.models: list[str] = []
        self.columns: list[str] = []
        aembed, chunk_search = inference.aembed, search_services.chunk_search

        async def recording_aembed(texts: Sequence[str], *, model: str = inference.EMBEDDING_MODEL) -> Any:
            self.models.append(model)
            return await aembed(texts, model=model)

        def recording_chunk_search(**kwargs: Any) -> Any:
            self.columns.append(kwargs["embedding_column"])
            return chunk_search(**kwargs)

        monkeypatch.setattr(inference, "aembed", recording_aembed)
        monkeypatch.setattr(search_services, "chunk_search", recording_chunk_search)

    def ask(self, collection: Collection, question: str) -> list[str]:
        """The titles of the passages the answer was given (the chat model is off: sources, then an error)."""

        async def run() -> list[AnswerEvent]:
            return [
                event
                async for event in search_services.answer_stream(
                    collection_ids=[collection.id], question=question, request_id="retriever-test"
                )
            ]

        events = async_to_sync(run)()
        sources = next(event for event in events if event.kind == "sources")
        return [source.document_title for source in sources.sources]

    def last(self) -> EmbeddingSlot:
        return EmbeddingSlot(model_id=self.models[-1], column=self.columns[-1])


def _wait_for_outcome(retriever: Retriever, worker: WorkerProcess) -> Retriever:
    def settled() -> bool:
        if worker.process.poll() is not None:
            raise AssertionError(f"the worker exited:\n{worker.log()[-4000:]}")
        retriever.refresh_from_db()
        return retriever.status not in (Status.EMBEDDING, Status.EVALUATING)

    wait_for(settled, timeout=600, what=f"the build of {retriever}")
    return retriever


def _command(*args: str) -> str:
    out = io.StringIO()
    call_command("retriever", *args, stdout=out)
    return out.getvalue()


# Registration (no worker needed)


@pytest.mark.django_db
def test_register_copies_the_model_and_records_its_metrics(
    base_copy_output: Path, retrievers_dir: Path, tmp_path: Path
) -> None:
    name = f"copy-{uuid.uuid4().hex[:6]}"
    out = _command("register", str(base_copy_output), "--name", name)

    retriever = Retriever.objects.get(name=name)
    assert f"registered {name}" in out and "1.0000" in out
    assert (retriever.status, retriever.slot) == (Status.REGISTERED, "")
    assert retriever.metrics["eval"]["score"] == 1.0
    assert Path(retriever.model_dir) == retrievers_dir / name
    assert (retrievers_dir / name / "modules.json").is_file()
    assert not [p for p in retrievers_dir.iterdir() if p.name.startswith(".")]  # no partial copy left
    base = Retriever.objects.get(name=inference.EMBEDDING_MODEL)
    assert (base.status, base.slot) == (Status.ACTIVE, "a")
    assert embedding_slot_active() == BASE_EMBEDDING_SLOT

    with pytest.raises(CommandError, match="exists already"):
        _command("register", str(base_copy_output), "--name", name)
    with pytest.raises(RetrieverRefused, match="usable name"):
        retriever_register(source=base_copy_output, name="../escape")
    with pytest.raises(RetrieverRefused, match="metrics.json is missing"):
        retriever_register(source=tmp_path, name="nothing")


@pytest.mark.django_db
def test_activate_needs_a_held_out_set_and_refuses_the_active_one(
    base_copy_output: Path, tmp_path: Path
) -> None:
    retriever = retriever_register(source=base_copy_output, name=f"copy-{uuid.uuid4().hex[:6]}")
    with pytest.raises(RetrieverRefused, match="cannot be used"):
        retriever_activate(retriever=retriever, eval_dataset=str(tmp_path))
    base = Retriever.objects.get(name=inference.EMBEDDING_MODEL)
    with pytest.raises(RetrieverRefused, match="active retriever already"):
        retriever_activate(retriever=base)
    with pytest.raises(RetrieverRefused, match="nothing to roll back to"):
        retriever_rollback()
    retriever.refresh_from_db()
    assert retriever.status == Status.REGISTERED


# Activation, end to end


@pytest.mark.django_db(transaction=True)
def test_an_equal_model_is_switched_to_while_questions_go_on_and_rollback_restores_the_base(
    base_copy_output: Path,
    retriever_worker: WorkerProcess,
    use_retriever_inference: InferenceProcess,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    collection = CollectionFactory.create()
    _ingest(collection, ["kitchen", "parking", "travel", "payroll", "security"], retriever_worker)
    assert not Chunk.objects.filter(embedding__isnull=True).exists()
    assert not Chunk.objects.filter(embedding_b__isnull=False).exists()
    spy = QuestionSpy(monkeypatch)
    name = f"copy-{uuid.uuid4().hex[:6]}"
    retriever_register(source=base_copy_output, name=name)

    out = _command("activate", name)

    assert "re-embedding every chunk into slot b" in out
    # Questions are answered from the base model's slot while the candidate is built.
    assert spy.ask(collection, "Where do visitors park?")[0] == "Parking"
    assert spy.last() == BASE_EMBEDDING_SLOT
    assert Retriever.objects.get(name=name).status in (Status.EMBEDDING, Status.EVALUATING)
    # A document that arrives meanwhile is in the new slot too once the switch is made.
    (printing,) = _ingest(collection, ["printing"], retriever_worker)

    retriever = _wait_for_outcome(Retriever.objects.get(name=name), retriever_worker)

    assert retriever.status == Status.ACTIVE, retriever.message
    gate = retriever.gate
    assert gate["passed"] is True and gate["mode"] == "dense"
    assert gate["candidate"]["ndcg_at_10"] == gate["current"]["ndcg_at_10"] == 1.0
    assert (gate["candidate"]["name"], gate["current"]["name"]) == (name, inference.EMBEDDING_MODEL)
    assert "1.0000 against 1.0000" in retriever.message
    base = Retriever.objects.get(name=inference.EMBEDDING_MODEL)
    assert (base.status, base.slot, retriever.slot) == (Status.PREVIOUS, "a", "b")
    assert not Chunk.objects.filter(embedding_b__isnull=True).exists()
    assert Chunk.objects.filter(document=printing, embedding_b__isnull=False).exists()
    assert not Collection.objects.filter(name__startswith="evaluation").exists()  # the gate's corpus is gone
    # Questions now embed with the new model and read its slot.
    assert spy.ask(collection, "Who books hotels?")[0] == "Travel"
    assert spy.last() == EmbeddingSlot(model_id=name, column="embedding_b")
    # New chunks go to the active slot only; rollback fills the old slot first.
    (canteen,) = _ingest(collection, ["canteen"], retriever_worker)
    assert not Chunk.objects.filter(document=canteen, embedding__isnull=False).exists()

    out = _command("rollback")

    assert f"{inference.EMBEDDING_MODEL} is active again" in out
    base.refresh_from_db()
    retriever.refresh_from_db()
    assert (base.status, retriever.status) == (Status.ACTIVE, Status.PREVIOUS)
    assert not Chunk.objects.filter(embedding__isnull=True).exists()
    assert spy.ask(collection, "When are salaries paid?")[0] == "Payroll"
    assert spy.last() == BASE_EMBEDDING_SLOT
    listing = _command("list")
    assert f"{name}" in listing and "previous" in listing and "1.0000 vs 1.0000" in listing


@pytest.mark.django_db(transaction=True)
def test_a_worse_model_is_refused_with_both_numbers_and_nothing_switches(
    damaged_output: Path,
    heldout_dataset: Path,
    retriever_worker: WorkerProcess,
    use_retriever_inference: InferenceProcess,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    collection = CollectionFactory.create()
    _ingest(collection, ["kitchen", "security"], retriever_worker)
    spy = QuestionSpy(monkeypatch)
    name = f"damaged-{uuid.uuid4().hex[:6]}"
    retriever = retriever_register(source=damaged_output, name=name)

    with pytest.raises(CommandError, match="was not switched to") as refused:
        _command("activate", name, "--wait")

    retriever.refresh_from_db()
    assert retriever.status == Status.REFUSED
    ours, theirs = retriever.gate["candidate"]["ndcg_at_10"], retriever.gate["current"]["ndcg_at_10"]
    assert ours < theirs == 1.0 and retriever.gate["passed"] is False
    assert f"nDCG@10 {ours:.4f} against {theirs:.4f} of {inference.EMBEDDING_MODEL}" in str(refused.value)
    assert Retriever.objects.get(status=Status.ACTIVE).name == inference.EMBEDDING_MODEL
    assert embedding_slot_active() == BASE_EMBEDDING_SLOT
    assert spy.ask(collection, "When is the kettle descaled?")[0] == "Kitchen"
    assert spy.last() == BASE_EMBEDDING_SLOT
    with pytest.raises(RetrieverRefused, match="nothing to roll back to"):
        retriever_rollback()
    assert f"{ours:.4f} vs {theirs:.4f}" in _command("list")
    # The gate's number is what `manage.py evaluate` gives for that retriever.
    out = io.StringIO()
    evaluate = ["--dataset", str(heldout_dataset), "--mode", "dense", "--json", "--workers", "2"]
    call_command("evaluate", *evaluate, "--retriever", name, stdout=out)
    assert json.loads(out.getvalue().splitlines()[-1])["ndcg_at_10"] == ours


# The switch and chunk writes


@pytest.mark.django_db(transaction=True)
def test_a_switch_waits_for_chunk_writes_in_flight_and_gives_up_cleanly(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    from retrievers import slots
    from tuning import services

    base = services.retriever_base_ensure()
    Retriever.objects.filter(id=base.id).update(status=Status.PREVIOUS)
    current = Retriever.objects.create(name="current-model", slot="b", status=Status.ACTIVE)
    monkeypatch.setattr(services, "SWITCH_LOCK_TIMEOUT_S", 0.5)
    writing, release = threading.Event(), threading.Event()

    def write_chunks() -> None:
        try:
            with slots.embedding_slot_for_writes() as slot:
                assert slot == EmbeddingSlot(model_id="current-model", column="embedding_b")
                writing.set()
                release.wait(timeout=60)
        finally:
            connection.close()

    writer = threading.Thread(target=write_chunks)
    writer.start()
    try:
        assert writing.wait(timeout=30)
        with pytest.raises(RetrieverRefused, match="kept writing chunks"):
            retriever_rollback()
        assert Retriever.objects.get(status=Status.ACTIVE) == current
    finally:
        release.set()
        writer.join()

    assert retriever_rollback() == base  # no chunk is missing from slot a: nothing to embed
    assert embedding_slot_active() == BASE_EMBEDDING_SLOT
