import re
import time

import httpx
import pytest

from ops.models import Heartbeat
from ops.services import heartbeat_create
from tests.processes import WorkerProcess


@pytest.mark.django_db(transaction=True)
def test_task_sent_through_redis_is_run_by_a_real_worker_and_lands_in_postgres(
    celery_worker: WorkerProcess,
) -> None:
    heartbeat = heartbeat_create()
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        heartbeat.refresh_from_db()
        if heartbeat.processed_at is not None:
            break
        time.sleep(0.2)
    assert heartbeat.processed_at is not None, celery_worker.log()
    assert heartbeat.worker.startswith(celery_worker.name)
    assert Heartbeat.objects.filter(processed_at__isnull=False).count() >= 1


@pytest.mark.django_db(transaction=True)
def test_the_worker_metrics_endpoint_counts_tasks_run_in_its_pool_processes(
    celery_worker: WorkerProcess,
) -> None:
    url = celery_worker.metrics_url
    assert url is not None

    def runs() -> float:
        text = httpx.get(url, timeout=10).text
        pattern = r'^ragsite_task_seconds_count\{[^}]*task="ops\.tasks\.heartbeat_process_task"[^}]*\} (\S+)$'
        return sum(float(value) for value in re.findall(pattern, text, flags=re.MULTILINE))

    before = runs()
    heartbeat = heartbeat_create()
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline and runs() <= before:
        time.sleep(0.2)
    heartbeat.refresh_from_db()
    assert heartbeat.processed_at is not None, celery_worker.log()
    assert runs() >= before + 1, celery_worker.log()
