"""Start the real inference service (its own venv, a free loopback port) with chosen settings."""

from __future__ import annotations

import os
import subprocess
from collections.abc import Callable, Iterator
from pathlib import Path

import httpx
import pytest

from ragsite.devstack import free_port
from tests.processes import ROOT, InferenceProcess

StartService = Callable[..., InferenceProcess]


@pytest.fixture(scope="session")
def inference_logs(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("inference-logs")


def launch(log_dir: Path, *, app: str = "inference.app:create_app", **env: str) -> InferenceProcess:
    """Run `app` (a factory) under uvicorn from .venv-inference and wait for /readyz."""
    port = free_port()
    log_path = log_dir / f"inference-{port}.log"
    full_env = {
        **os.environ,
        "HF_HUB_OFFLINE": "1",
        "TRANSFORMERS_OFFLINE": "1",
        "INFERENCE_CHAT_ENGINE": "none",
        "PYTHONPATH": str(ROOT),
        **env,
    }
    command = [str(ROOT / ".venv-inference" / "bin" / "python"), "-m", "uvicorn", "--factory", app]
    command += ["--host", "127.0.0.1", "--port", str(port), "--no-access-log"]
    with open(log_path, "wb") as log:
        process = subprocess.Popen(
            command, env=full_env, cwd=ROOT, stdout=log, stderr=subprocess.STDOUT, start_new_session=True
        )
    server = InferenceProcess(process=process, log_path=log_path, port=port)
    try:
        server.wait_ready(timeout=180)
    except BaseException:
        server.stop()
        raise
    return server


@pytest.fixture
def start_service(inference_logs: Path) -> Iterator[StartService]:
    """Start services with the given INFERENCE_* settings; each is stopped after the test."""
    started: list[InferenceProcess] = []

    def start(*, app: str = "inference.app:create_app", **env: str) -> InferenceProcess:
        server = launch(inference_logs, app=app, **env)
        started.append(server)
        return server

    yield start
    for server in started:
        server.stop()


@pytest.fixture(scope="session")
def embedding_service(inference_logs: Path) -> Iterator[InferenceProcess]:
    """One service with default settings (no chat engine), shared by the tests that only read."""
    server = launch(inference_logs)
    yield server
    server.stop()


@pytest.fixture
def client(embedding_service: InferenceProcess) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=embedding_service.url, timeout=60) as http:
        yield http
