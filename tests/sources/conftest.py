"""Fixtures of the sources suite: git repositories made by the test, and workers on private queues."""

from __future__ import annotations

import os
import subprocess
import uuid
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

import pytest

from tests.ingest.conftest import embedding_server, ingest_worker_env, media_dir
from tests.processes import InferenceProcess, WorkerProcess, start_worker

__all__ = ["embedding_server", "media_dir"]

# Other suites' workers listen on "default"; ours get a queue of their own, so no other worker takes a sync.
SOURCES_QUEUE = f"sources-test-{uuid.uuid4().hex[:8]}"
# Ingestion queued by a sync has a queue of its own: the ingest tests' worker, which may still be running in
# the same session, reads another media folder (this package's media_dir is its own fixture instance), so it
# must never take these documents.
SOURCES_INGEST_QUEUE = f"ingest-sources-test-{uuid.uuid4().hex[:8]}"


class Repository:
    """A git repository in a directory of the test's, changed by commits the test makes."""

    def __init__(self, path: Path, branch: str = "main") -> None:
        self.path = path
        self.git("init", "--quiet", "--initial-branch", branch)

    def git(self, *args: str) -> str:
        env = {
            **os.environ,
            "GIT_AUTHOR_NAME": "Test",
            "GIT_AUTHOR_EMAIL": "test@example.com",
            "GIT_COMMITTER_NAME": "Test",
            "GIT_COMMITTER_EMAIL": "test@example.com",
            "GIT_CONFIG_NOSYSTEM": "1",
            "HOME": str(self.path),
        }
        result = subprocess.run(
            ["git", *args], cwd=self.path, env=env, capture_output=True, check=True, timeout=60
        )
        return result.stdout.decode()

    def write(self, files: Mapping[str, bytes | str]) -> None:
        for name, content in files.items():
            target = self.path / name
            target.parent.mkdir(parents=True, exist_ok=True)
            target.write_bytes(content.encode() if isinstance(content, str) else content)

    def commit(
        self, message: str, files: Mapping[str, bytes | str] | None = None, remove: tuple[str, ...] = ()
    ) -> str:
        self.write(files or {})
        for name in remove:
            self.git("rm", "--quiet", name)
        self.git("add", "--all")
        self.git("commit", "--quiet", "--allow-empty", "--message", message)
        return self.git("rev-parse", "HEAD").strip()

    def blob(self, path: str) -> str:
        return self.git("rev-parse", f"HEAD:{path}").strip()


@pytest.fixture
def repository(tmp_path: Path) -> Repository:
    path = tmp_path / "repo"
    path.mkdir()
    return Repository(path)


@pytest.fixture(autouse=True)
def sources_settings(settings: Any, media_dir: Path, tmp_path: Path) -> None:
    settings.MEDIA_ROOT = str(media_dir)
    settings.RAGSITE_INGEST_QUEUE = SOURCES_INGEST_QUEUE
    settings.RAGSITE_SOURCES_QUEUE = SOURCES_QUEUE
    settings.RAGSITE_SOURCES_CACHE_DIR = str(tmp_path / "sources-cache")


def sources_worker_env(*, inference: InferenceProcess, media: Path, cache: Path) -> dict[str, str]:
    return {
        **ingest_worker_env(queue=SOURCES_INGEST_QUEUE, inference=inference, media=media),
        "RAGSITE_SOURCES_QUEUE": SOURCES_QUEUE,
        "RAGSITE_SOURCES_CACHE_DIR": str(cache),
    }


@pytest.fixture(scope="session")
def sources_worker(
    test_database_name: str,
    logs_dir: Path,
    embedding_server: InferenceProcess,
    media_dir: Path,
    tmp_path_factory: pytest.TempPathFactory,
) -> Iterator[WorkerProcess]:
    """A real Celery worker on the private sources and ingest queues, embedding through the inference API;
    its metrics on a port."""
    from ragsite.devstack import free_port

    port = free_port()
    worker = start_worker(
        database_name=test_database_name,
        log_dir=logs_dir,
        queues=f"{SOURCES_QUEUE},{SOURCES_INGEST_QUEUE}",
        concurrency=2,
        extra_env={
            **sources_worker_env(
                inference=embedding_server, media=media_dir, cache=tmp_path_factory.mktemp("worker-cache")
            ),
            "RAGSITE_WORKER_METRICS_PORT": str(port),
        },
    )
    worker.metrics_url = f"http://127.0.0.1:{port}/metrics"
    yield worker
    worker.stop()
