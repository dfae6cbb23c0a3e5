from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.processes import WorkerProcess, start_worker


@pytest.fixture(scope="session")
def logs_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("logs")


@pytest.fixture(scope="session")
def test_database_name(django_db_setup: None, django_db_blocker: object) -> str:
    from django.db import connection

    return str(connection.settings_dict["NAME"])


@pytest.fixture(scope="session")
def celery_worker(test_database_name: str, logs_dir: Path) -> Iterator[WorkerProcess]:
    """A real Celery worker process on the run's Redis, writing to the test database."""
    worker = start_worker(database_name=test_database_name, log_dir=logs_dir)
    yield worker
    worker.stop()
