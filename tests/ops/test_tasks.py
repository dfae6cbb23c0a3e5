import time

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
