"""Fixtures of the retriever suite: the real inference API reading a retrievers directory, a real worker on
private ingest and reembed queues, and training-job outputs (a copy of the base model, a damaged one)."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.evaluation.beir import write_dataset
from tests.inference.test_retrievers import base_model_path
from tests.ingest.conftest import ingest_worker_env
from tests.processes import ROOT, InferenceProcess, WorkerProcess, start_inference, start_worker

INGEST_QUEUE = f"ingest-retrievers-{uuid.uuid4().hex[:8]}"
REEMBED_QUEUE = f"reembed-retrievers-{uuid.uuid4().hex[:8]}"
# Small, slow re-embedding batches: a build spans several steps and questions are asked while it runs.
REEMBED_BATCH_SIZE = 4
REEMBED_BATCH_DELAY_S = 0.5


@pytest.fixture(scope="session")
def retrievers_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("retrievers")


@pytest.fixture(scope="session")
def retriever_media_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("media")


@pytest.fixture(scope="session")
def heldout_dataset(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The held-out split of the gate: the evaluation tests' tiny BEIR dataset."""
    return write_dataset(tmp_path_factory.mktemp("heldout") / "tiny")


@pytest.fixture(scope="session")
def retriever_inference(logs_dir: Path, retrievers_dir: Path) -> Iterator[InferenceProcess]:
    server = start_inference(
        log_dir=logs_dir, chat_engine="none", extra_env={"RAGSITE_RETRIEVERS_DIR": str(retrievers_dir)}
    )
    yield server
    server.stop()


@pytest.fixture(scope="session")
def retriever_worker(
    test_database_name: str,
    logs_dir: Path,
    retriever_inference: InferenceProcess,
    retriever_media_dir: Path,
    retrievers_dir: Path,
) -> Iterator[WorkerProcess]:
    """A real worker taking this suite's ingestion and re-embedding, through the real inference API."""
    env = ingest_worker_env(queue=INGEST_QUEUE, inference=retriever_inference, media=retriever_media_dir)
    worker = start_worker(
        database_name=test_database_name,
        log_dir=logs_dir,
        queues=f"{INGEST_QUEUE},{REEMBED_QUEUE}",
        concurrency=2,
        extra_env={
            **env,
            "DJANGO_SETTINGS_MODULE": "tests.tuning.worker_settings",
            "RAGSITE_REEMBED_QUEUE": REEMBED_QUEUE,
            "RAGSITE_REEMBED_BATCH_SIZE": str(REEMBED_BATCH_SIZE),
            "RAGSITE_REEMBED_BATCH_DELAY_S": str(REEMBED_BATCH_DELAY_S),
            "RAGSITE_RETRIEVERS_DIR": str(retrievers_dir),
        },
    )
    yield worker
    worker.stop()


@pytest.fixture(autouse=True)
def retriever_settings(settings: Any, retrievers_dir: Path, retriever_media_dir: Path) -> None:
    settings.RAGSITE_RETRIEVERS_DIR = str(retrievers_dir)
    settings.RAGSITE_REEMBED_QUEUE = REEMBED_QUEUE
    settings.RAGSITE_INGEST_QUEUE = INGEST_QUEUE
    settings.MEDIA_ROOT = str(retriever_media_dir)


@pytest.fixture
def use_retriever_inference(retriever_inference: InferenceProcess, settings: Any) -> InferenceProcess:
    from ops import inference

    settings.INFERENCE_URL = retriever_inference.url
    inference.clients_reset()
    return retriever_inference


def training_output(root: Path, *, model: Path, dataset: Path, score: float) -> Path:
    """What `training.train --output-dir` leaves for registration: model/ and metrics.json."""
    shutil.copytree(model, root / "model")
    metrics = {
        "model_dir": "model",
        "weights_sha256": uuid.uuid4().hex * 2,
        "eval": {"metric": "ndcg@10", "score": score, "base_score": 1.0, "dataset": str(dataset)},
    }
    (root / "metrics.json").write_text(json.dumps(metrics))
    return root


@pytest.fixture(scope="session")
def base_copy_output(tmp_path_factory: pytest.TempPathFactory, heldout_dataset: Path) -> Path:
    """A "fine-tuned" model of exactly the base model's quality: its own files, the same weights."""
    return training_output(
        tmp_path_factory.mktemp("run-copy"), model=base_model_path(), dataset=heldout_dataset, score=1.0
    )


@pytest.fixture(scope="session")
def damaged_output(tmp_path_factory: pytest.TempPathFactory, heldout_dataset: Path) -> Path:
    """The base model with noise on every weight, saved by the inference venv (this one has no torch)."""
    scratch = tmp_path_factory.mktemp("damaged")
    subprocess.run(
        [
            str(ROOT / ".venv-inference" / "bin" / "python"),
            str(ROOT / "tests" / "tuning" / "damage_model.py"),
            str(base_model_path()),
            str(scratch / "model"),
        ],
        check=True,
        capture_output=True,
        env={**os.environ, "HF_HUB_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1"},
    )
    return training_output(
        tmp_path_factory.mktemp("run-damaged"), model=scratch / "model", dataset=heldout_dataset, score=0.1
    )
