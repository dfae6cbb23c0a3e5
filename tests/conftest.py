import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.processes import InferenceProcess, WorkerProcess, start_inference, start_worker

pytest_plugins = ["tests.browser"]


@pytest.fixture(scope="session")
def logs_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("logs")


@pytest.fixture(scope="session")
def test_database_name(django_db_setup: None, django_db_blocker: object) -> str:
    from django.db import connection

    return str(connection.settings_dict["NAME"])


@pytest.fixture(scope="session")
def celery_worker(test_database_name: str, logs_dir: Path) -> Iterator[WorkerProcess]:
    """A real Celery worker process on the run's Redis, writing to the test database; metrics on a port."""
    from ragsite.devstack import free_port

    port = free_port()
    worker = start_worker(
        database_name=test_database_name,
        log_dir=logs_dir,
        extra_env={"RAGSITE_WORKER_METRICS_PORT": str(port)},
    )
    worker.metrics_url = f"http://127.0.0.1:{port}/metrics"
    yield worker
    worker.stop()


@pytest.fixture(scope="session")
def inference_server(logs_dir: Path) -> Iterator[InferenceProcess]:
    """The real inference API (embeddings; chat engine per RAGSITE_TEST_CHAT_ENGINE, default llamacpp)."""
    engine = os.environ.get("RAGSITE_TEST_CHAT_ENGINE", "llamacpp")
    model = os.environ.get("RAGSITE_TEST_CHAT_MODEL", "")
    server = start_inference(log_dir=logs_dir, chat_engine=engine, chat_model=model)
    yield server
    server.stop()


@pytest.fixture
def use_inference(inference_server: InferenceProcess, settings: Any) -> InferenceProcess:
    """Point the Django side (and its one inference client) at the test session's inference API."""
    from ops import inference

    settings.INFERENCE_URL = inference_server.url
    inference.clients_reset()
    return inference_server
