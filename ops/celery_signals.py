"""Task metrics in the workers; served on RAGSITE_WORKER_METRICS_PORT when it is set.

ragsite/celery.py then points PROMETHEUS_MULTIPROC_DIR at a fresh directory (unless it is set already), so
the main process's endpoint adds up what every pool process counted.
"""

import os
import time
from typing import Any

from celery.signals import task_failure, task_postrun, task_prerun, worker_process_shutdown, worker_ready

from .metrics import TASK_FAILURES, TASK_SECONDS

_started: dict[str, float] = {}


@task_prerun.connect
def on_task_prerun(task_id: str | None = None, **kwargs: Any) -> None:
    if task_id:
        _started[task_id] = time.perf_counter()


@task_postrun.connect
def on_task_postrun(
    task_id: str | None = None, task: Any = None, state: str | None = None, **kw: Any
) -> None:
    started = _started.pop(task_id or "", None)
    if started is not None and task is not None:
        TASK_SECONDS.labels(task.name, state or "UNKNOWN").observe(time.perf_counter() - started)


@task_failure.connect
def on_task_failure(sender: Any = None, **kwargs: Any) -> None:
    TASK_FAILURES.labels(getattr(sender, "name", "unknown")).inc()


@worker_ready.connect
def on_worker_ready(**kwargs: Any) -> None:
    port = os.environ.get("RAGSITE_WORKER_METRICS_PORT")
    if not port:
        return
    from prometheus_client import CollectorRegistry, start_http_server

    if os.environ.get("PROMETHEUS_MULTIPROC_DIR"):
        from prometheus_client import multiprocess

        registry = CollectorRegistry()
        multiprocess.MultiProcessCollector(registry)
        start_http_server(int(port), addr="127.0.0.1", registry=registry)
    else:
        start_http_server(int(port), addr="127.0.0.1")


@worker_process_shutdown.connect
def on_worker_process_shutdown(pid: int | None = None, **kwargs: Any) -> None:
    """A pool process that exits stops counting in the live gauges (its counters are kept)."""
    if os.environ.get("PROMETHEUS_MULTIPROC_DIR"):
        from prometheus_client import multiprocess

        multiprocess.mark_process_dead(pid or os.getpid())
