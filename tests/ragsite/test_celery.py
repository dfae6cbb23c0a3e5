"""The Celery app's worker hooks: what a worker sets up for itself, it cleans up."""

from __future__ import annotations

from pathlib import Path

import pytest

from ragsite.devstack import free_port
from tests.processes import start_worker


@pytest.mark.django_db(transaction=True)
def test_a_worker_removes_the_metrics_directory_it_made_when_it_stops(
    test_database_name: str, logs_dir: Path, tmp_path: Path
) -> None:
    worker = start_worker(
        database_name=test_database_name,
        log_dir=logs_dir,
        queues="metrics-directory-test",  # a queue nothing is sent to: it takes no other test's tasks
        extra_env={"RAGSITE_WORKER_METRICS_PORT": str(free_port()), "TMPDIR": str(tmp_path)},
    )
    try:
        assert len(list(tmp_path.glob("ragsite-worker-metrics-*"))) == 1
    finally:
        worker.stop()
    assert list(tmp_path.glob("ragsite-worker-metrics-*")) == [], worker.log()
