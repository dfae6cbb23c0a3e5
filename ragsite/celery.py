import os
import tempfile

from celery import Celery

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "ragsite.settings.dev")

# Tasks run in the prefork pool's child processes, so their metrics must be gathered across processes: the
# multiprocess mode of prometheus_client, which needs its directory set before the library is first imported.
if os.environ.get("RAGSITE_WORKER_METRICS_PORT") and not os.environ.get("PROMETHEUS_MULTIPROC_DIR"):
    os.environ["PROMETHEUS_MULTIPROC_DIR"] = tempfile.mkdtemp(prefix="ragsite-worker-metrics-")

app = Celery("ragsite")
app.config_from_object("django.conf:settings", namespace="CELERY")
app.autodiscover_tasks()
