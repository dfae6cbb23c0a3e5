"""Writes: registering retrievers, filling their vector slots, the quality gate, switching and rolling back.

A chunk has two vector columns (slots). The active retriever owns one and questions read it; a candidate is
embedded into the other while questions go on, is evaluated against the active one on a held-out dataset,
and becomes active only if it scores no worse. The retriever it replaces keeps its slot, so rolling back is
another switch. Chunk writes hold a shared lock (`retrievers.slots.embedding_slot_for_writes`) and a switch
the exclusive one, so no chunk is stored into a slot that stops being read: the switch fills the stragglers,
then flips.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import re
import shutil
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from django.conf import settings
from django.db import OperationalError, connection, transaction
from django.utils import timezone

from evaluation.datasets import dataset_load
from evaluation.services import collection_delete, corpus_load, dataset_evaluate
from ingest.models import EMBEDDING_DIMENSIONS, Chunk
from ingest.services import chunks_slot_fill
from ops import inference
from ops.services import audit_record
from retrievers.models import SLOT_COLUMNS, Retriever
from retrievers.selectors import BASE_SLOT, EmbeddingSlot, embedding_slot_of
from retrievers.slots import chunk_writes_pause

logger = logging.getLogger(__name__)

Status = Retriever.Status
BUILDING = (Status.EMBEDDING, Status.EVALUATING)
# The model id is a directory name for the inference API: no separators, no leading dot (temporary copies).
NAME_PATTERN = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,99}")
# Advisory lock namespace of one build step per retriever at a time (retrievers.slots uses 0x1A6E58 for chunk
# writes against a switch, ingest.services 0x1A6E57 for its per-document locks).
_BUILD_LOCK_NAMESPACE = 0x1A6E59
# Chunks one build task embeds before it queues the next, so that a lost worker costs one step.
CHUNKS_PER_STEP = 1024
# The gate compares the embedding models themselves: in hybrid mode full text would mask a worse model.
GATE_MODE = "dense"
GATE_METRIC = "ndcg_at_10"
# Documents of the held-out dataset ingested at once while the gate loads it.
GATE_LOAD_WORKERS = 4
# How long a switch waits for chunk writes in flight (new ones wait behind it) before it gives up.
SWITCH_LOCK_TIMEOUT_S = 600


class RetrieverRefused(Exception):
    """The action is not possible now; `message` says why, in words an operator can act on."""

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message


def retrievers_dir() -> Path:
    return Path(settings.RAGSITE_RETRIEVERS_DIR)


# --- the registry ------------------------------------------------------------------------------------------


def retriever_base_ensure() -> Retriever:
    """The base model's row; created active in slot a the first time (what ragsite ran with until then)."""
    base, _ = Retriever.objects.get_or_create(
        name=inference.EMBEDDING_MODEL,
        defaults={
            "slot": BASE_SLOT,
            "status": Status.ACTIVE,
            "message": "The base model, served by the inference API by default.",
            "activated_at": timezone.now(),
        },
    )
    return base


def _read_metrics(path: Path) -> dict[str, Any]:
    try:
        metrics = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise RetrieverRefused(f"{path} is missing: register the training job's --output-dir") from None
    except ValueError as exc:
        raise RetrieverRefused(f"{path} is not valid JSON: {exc}") from None
    if not isinstance(metrics, dict):
        raise RetrieverRefused(f"{path} does not hold a JSON object")
    return metrics


def _check_model_dir(model: Path) -> None:
    if not (model / "modules.json").is_file():
        raise RetrieverRefused(f"{model} is not a sentence-transformers directory (it has no modules.json)")
    pooling = model / "1_Pooling" / "config.json"
    if pooling.is_file():
        dimensions = json.loads(pooling.read_text(encoding="utf-8")).get("word_embedding_dimension")
        if dimensions not in (None, EMBEDDING_DIMENSIONS):
            raise RetrieverRefused(
                f"{model} embeds in {dimensions} dimensions; "
                f"chunks hold {EMBEDDING_DIMENSIONS}-dimensional vectors"
            )


def _default_name(source: Path, metrics: dict[str, Any]) -> str:
    digest = str(metrics.get("weights_sha256") or "")[:8]
    stem = re.sub(r"[^A-Za-z0-9._-]+", "-", source.resolve().name).strip("-._") or "retriever"
    return f"{stem}-{digest}" if digest else stem


def retriever_register(*, source: Path, name: str | None = None) -> Retriever:
    """Copy a training job's `model/` into RAGSITE_RETRIEVERS_DIR under `name` and record its metrics."""
    source = Path(source)
    metrics = _read_metrics(source / "metrics.json")
    model = source / str(metrics.get("model_dir") or "model")
    _check_model_dir(model)
    name = name or _default_name(source, metrics)
    if not NAME_PATTERN.fullmatch(name):
        raise RetrieverRefused(
            f"{name!r} is not a usable name: letters, digits, '.', '_' and '-', "
            "starting with a letter or digit"
        )
    if name == inference.EMBEDDING_MODEL or Retriever.objects.filter(name=name).exists():
        raise RetrieverRefused(f"a retriever called {name!r} exists already; choose another --name")
    target = retrievers_dir() / name
    if target.exists():
        raise RetrieverRefused(f"{target} exists already; choose another --name or remove it")
    retriever_base_ensure()
    target.parent.mkdir(parents=True, exist_ok=True)
    # Copied under a name the inference API ignores, then renamed: it never sees half a model.
    partial = target.parent / f".{name}.{uuid.uuid4().hex[:8]}.partial"
    shutil.copytree(model, partial, symlinks=False)
    os.replace(partial, target)
    try:
        with transaction.atomic():
            retriever = Retriever.objects.create(
                name=name,
                model_dir=str(target),
                source_dir=str(source.resolve()),
                metrics=metrics,
                status=Status.REGISTERED,
            )
            audit_record(
                actor=None,
                action="retriever.register",
                target=retriever,
                details={"source": str(source.resolve()), "eval": metrics.get("eval")},
            )
    except BaseException:
        shutil.rmtree(target, ignore_errors=True)
        raise
    return retriever


def _eval_dataset(retriever: Retriever, eval_dataset: str | None) -> Path:
    recorded = (retriever.metrics.get("eval") or {}).get("dataset") if retriever.metrics else None
    chosen = eval_dataset or recorded
    if not chosen:
        raise RetrieverRefused(
            f"{retriever} has no held-out evaluation set (its metrics.json has no eval.dataset): "
            "pass --eval-dataset DIR, a BEIR-layout directory"
        )
    try:
        dataset_load(chosen)
    except FileNotFoundError as exc:
        raise RetrieverRefused(f"the evaluation set cannot be used: {exc}") from None
    return Path(chosen).resolve()


def _queue_build(retriever_id: int) -> None:
    from .tasks import retriever_build as retriever_build_task

    queue = getattr(settings, "RAGSITE_REEMBED_QUEUE", "reembed")
    transaction.on_commit(lambda: retriever_build_task.apply_async(args=(retriever_id,), queue=queue))


def retriever_activate(*, retriever: Retriever, eval_dataset: str | None = None) -> Retriever:
    """Start embedding every chunk into a free slot for `retriever`; the gate and the switch follow.

    Activating a build that is in progress (a worker lost, say) queues it again; its work so far is kept.
    """
    if retriever.status == Status.ACTIVE:
        raise RetrieverRefused(f"{retriever} is the active retriever already")
    dataset = _eval_dataset(retriever, eval_dataset)
    retriever_base_ensure()
    with transaction.atomic():
        rows = {row.id: row for row in Retriever.objects.select_for_update().order_by("id")}
        target = rows[retriever.id]
        active = next(row for row in rows.values() if row.status == Status.ACTIVE)
        if target.id == active.id:
            raise RetrieverRefused(f"{target} is the active retriever already")
        building = [row for row in rows.values() if row.status in BUILDING and row.id != target.id]
        if building:
            raise RetrieverRefused(
                f"{building[0]} is being built ({building[0].status}); wait until it is switched or refused"
            )
        free_slot = "b" if active.slot == "a" else "a"
        if target.slot != free_slot:
            owner = next((row for row in rows.values() if row.slot == free_slot), None)
            if owner is not None:
                owner.slot = ""
                owner.status = Status.REGISTERED
                owner.message = (
                    f"Its vectors were replaced by {target}'s on {timezone.now():%Y-%m-%d %H:%M} UTC."
                )
                owner.save(update_fields=["slot", "status", "message", "updated_at"])
            column = SLOT_COLUMNS[free_slot]
            # The slot held another model's vectors: empty it, so that the build fills every chunk.
            Chunk.objects.filter(**{f"{column}__isnull": False}).update(**{column: None})
            target.slot = free_slot
        target.status = Status.EMBEDDING
        target.message = f"Embedding every chunk into slot {target.slot}; questions still use {active}."
        target.gate = {"dataset": str(dataset), "mode": GATE_MODE, "metric": "ndcg@10"}
        target.save(update_fields=["slot", "status", "message", "gate", "updated_at"])
        audit_record(
            actor=None, action="retriever.activate", target=target, details={"dataset": str(dataset)}
        )
        _queue_build(target.id)
    return target


# --- the build: fill the slot, evaluate, switch or refuse --------------------------------------------------


@contextlib.contextmanager
def _build_lock(retriever_id: int) -> Iterator[bool]:
    """One build step of a retriever at a time; released if the worker dies (its connection closes)."""
    with connection.cursor() as cursor:
        cursor.execute("SELECT pg_try_advisory_lock(%s, %s)", [_BUILD_LOCK_NAMESPACE, retriever_id])
        acquired = bool(cursor.fetchone()[0])
    try:
        yield acquired
    finally:
        if acquired:
            with connection.cursor() as cursor:
                cursor.execute("SELECT pg_advisory_unlock(%s, %s)", [_BUILD_LOCK_NAMESPACE, retriever_id])


def retriever_build_step(*, retriever_id: int) -> None:
    """Embed the next chunks into the candidate's slot; once none is missing, gate and switch (or refuse).

    Idempotent: a second delivery of a step finds the work done or the lock taken. The next step is
    queued after the lock is released, so that it never finds its predecessor still holding it.
    """
    with _build_lock(retriever_id) as held:
        if not held:
            logger.info("retriever %s: another worker is building it", retriever_id)
            return
        more = _build_step(retriever_id)
    if more:
        _queue_build(retriever_id)


def _build_step(retriever_id: int) -> bool:
    retriever = Retriever.objects.filter(id=retriever_id).first()
    if retriever is None or retriever.status not in BUILDING:
        return False
    slot = embedding_slot_of(retriever=retriever)
    if retriever.status == Status.EMBEDDING:
        if chunks_slot_fill(slot=slot, limit=CHUNKS_PER_STEP):
            return True
        started = Retriever.objects.filter(id=retriever_id, status=Status.EMBEDDING).update(
            status=Status.EVALUATING,
            message="Every chunk is embedded; evaluating it against the active retriever.",
            updated_at=timezone.now(),
        )
        if not started:
            return False
        retriever.refresh_from_db()
    _gate_and_switch(retriever)
    return False


def gate_evaluate(*, dataset_path: str | Path, slots: list[EmbeddingSlot]) -> list[dict[str, Any]]:
    """`manage.py evaluate`'s run per slot: the corpus through ingestion, the queries through chunk_search."""
    dataset = dataset_load(dataset_path)
    collection = corpus_load(dataset=dataset, keep=False, workers=GATE_LOAD_WORKERS)
    try:
        results = []
        for slot in slots:
            chunks_slot_fill(slot=slot, collection_id=collection.id)
            results.append(
                dataset_evaluate(dataset=dataset, collection=collection, mode=GATE_MODE, slot=slot)
            )
        return results
    finally:
        collection_delete(collection=collection)


def _gate_and_switch(candidate: Retriever) -> None:
    current = Retriever.objects.get(status=Status.ACTIVE)
    dataset = str(candidate.gate.get("dataset", ""))
    current_scores, candidate_scores = gate_evaluate(
        dataset_path=dataset,
        slots=[embedding_slot_of(retriever=current), embedding_slot_of(retriever=candidate)],
    )
    ours, theirs = float(candidate_scores[GATE_METRIC]), float(current_scores[GATE_METRIC])
    passed = ours >= theirs
    candidate.gate = {
        **candidate.gate,
        "candidate": {"name": candidate.name, **candidate_scores},
        "current": {"name": current.name, **current_scores},
        "passed": passed,
        "evaluated_at": timezone.now().isoformat(timespec="seconds"),
    }
    numbers = f"nDCG@10 {ours:.4f} against {theirs:.4f} of {current} on {Path(dataset).name}"
    if not passed:
        candidate.status = Status.REFUSED
        candidate.message = f"Refused: {numbers}. Questions still use {current}."
        candidate.save(update_fields=["status", "message", "gate", "updated_at"])
        audit_record(actor=None, action="retriever.refuse", target=candidate, details=candidate.gate)
        logger.info("retriever %s refused: %s", candidate, numbers)
        return
    candidate.save(update_fields=["gate", "updated_at"])
    _switch(candidate, expected_active=current, message=f"Switched: {numbers}.")
    logger.info("switched to retriever %s: %s", candidate, numbers)


def _switch(target: Retriever, *, expected_active: Retriever, message: str) -> Retriever:
    """Make `target` active: fill its slot, then, with chunk writes paused, the stragglers and the flip."""
    slot = embedding_slot_of(retriever=target)
    chunks_slot_fill(slot=slot)  # the bulk of what arrived since, while writes go on
    with transaction.atomic():
        _chunk_writes_pause()
        chunks_slot_fill(slot=slot)  # what arrived meanwhile; new writes now wait for this transaction
        rows = {row.id: row for row in Retriever.objects.select_for_update().order_by("id")}
        target, active = rows[target.id], rows[expected_active.id]
        if active.status != Status.ACTIVE or target.column != slot.column:
            raise RetrieverRefused(f"the registry changed while switching to {target}; nothing was switched")
        active.status = Status.PREVIOUS
        active.message = (
            f"Replaced by {target} on {timezone.now():%Y-%m-%d %H:%M} UTC; `retriever rollback` restores it."
        )
        active.save(update_fields=["status", "message", "updated_at"])
        target.status = Status.ACTIVE
        target.message = message
        target.activated_at = timezone.now()
        target.save(update_fields=["status", "message", "activated_at", "updated_at"])
        audit_record(actor=None, action="retriever.switch", target=target, details={"previous": active.name})
    return target


def _chunk_writes_pause() -> None:
    """Wait for chunk writes in flight and hold new ones until the transaction ends."""
    try:
        chunk_writes_pause(timeout_s=SWITCH_LOCK_TIMEOUT_S)
    except OperationalError as exc:
        raise RetrieverRefused(
            f"Documents being ingested kept writing chunks for {SWITCH_LOCK_TIMEOUT_S:g} s; nothing was "
            "switched. Try again when ingestion is quieter."
        ) from exc


def retriever_rollback() -> Retriever:
    """Switch back to the retriever that was active before the current one; its slot is filled first."""
    retriever_base_ensure()
    previous = Retriever.objects.filter(status=Status.PREVIOUS).exclude(slot="").first()
    if previous is None:
        raise RetrieverRefused(
            "There is nothing to roll back to: no earlier retriever still has its vectors (activating "
            "another candidate re-uses that slot). Activate one with `retriever activate`."
        )
    current = Retriever.objects.get(status=Status.ACTIVE)
    return _switch(previous, expected_active=current, message=f"Rolled back from {current}.")


def retriever_mark_failed(*, retriever_id: int, message: str) -> None:
    """End a build as failed with a message for the operator; the active retriever is untouched."""
    Retriever.objects.filter(id=retriever_id, status__in=BUILDING).update(
        status=Status.FAILED, message=message[:2000], updated_at=timezone.now()
    )
