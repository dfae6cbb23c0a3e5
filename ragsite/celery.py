import atexit
import os
import shutil
import tempfile
from typing import Any

from celery import Celery
from celery.signals import worker_shutdown

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "ragsite.settings.dev")

# Tasks run in the prefork pool's child processes, so their metrics must be gathered across processes: the
# multiprocess mode of prometheus_client, which needs its directory set before the library is first imported.
# A directory made here is this process's alone: removed when the worker shuts down, or at exit.
_OWN_METRICS_DIR: str | None = None
_OWNER_PID = os.getpid()
if os.environ.get("RAGSITE_WORKER_METRICS_PORT") and not os.environ.get("PROMETHEUS_MULTIPROC_DIR"):
    _OWN_METRICS_DIR = tempfile.mkdtemp(prefix="ragsite-worker-metrics-")
    os.environ["PROMETHEUS_MULTIPROC_DIR"] = _OWN_METRICS_DIR

app = Celery("ragsite")
app.config_from_object("django.conf:settings", namespace="CELERY")
app.autodiscover_tasks()


@worker_shutdown.connect
def remove_own_metrics_dir(**kwargs: Any) -> None:
    """Sent once the pool has stopped: the per-process metric files are no longer read or written."""
    # Pool processes are forked from the owner and exit through here too: only the owner removes it.
    if _OWN_METRICS_DIR is not None and os.getpid() == _OWNER_PID:
        shutil.rmtree(_OWN_METRICS_DIR, ignore_errors=True)


atexit.register(remove_own_metrics_dir)  # a cold shutdown, or a process that imported this and is no worker
