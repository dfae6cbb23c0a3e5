"""Prometheus metrics of the web app and the workers (the inference API exports its own)."""

from collections.abc import AsyncIterator, Iterable

from prometheus_client import Counter, Gauge, Histogram
from prometheus_client.core import GaugeMetricFamily
from prometheus_client.registry import Collector

HTTP_REQUESTS = Counter(
    "ragsite_http_requests_total", "HTTP requests answered", ["method", "route", "status"]
)
HTTP_LATENCY = Histogram(
    "ragsite_http_request_seconds",
    "Time to the response headers",
    ["method", "route"],
    buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30),
)
SSE_STREAMS_OPEN = Gauge("ragsite_sse_streams_open", "Server-sent event streams now open", ["kind"])
# How each answer was served: "cache" (a finished answer reused), "joined" (attached to the same question's
# answer in progress), "led" (answered, for whoever joins too), "unshared" (a follow-up, or too many at once),
# "retrieval_busy" (retrieval could not keep up: the asker was told to ask again).
ANSWERS_SERVED = Counter("ragsite_answers_total", "Answers served, by how", ["path"])
TASK_SECONDS = Histogram(
    "ragsite_task_seconds",
    "Celery task run time",
    ["task", "state"],
    buckets=(0.1, 0.5, 1, 2.5, 5, 10, 30, 60, 120, 300, 900),
)
TASK_FAILURES = Counter("ragsite_task_failures_total", "Celery tasks that failed", ["task"])
# Source syncs: items by outcome (seen, new, changed, deleted, failed) and each sync's duration, by kind.
SOURCE_SYNC_ITEMS = Counter(
    "ragsite_source_sync_items_total", "Items handled by source syncs, by outcome", ["kind", "outcome"]
)
SOURCE_SYNC_SECONDS = Histogram(
    "ragsite_source_sync_seconds",
    "Duration of a source sync",
    ["kind"],
    buckets=(0.5, 1, 2.5, 5, 10, 30, 60, 120, 300, 900, 1800, 3600),
)

QUEUES = ("default", "ingest", "reembed")


async def stream_tracked(kind: str, events: AsyncIterator[bytes]) -> AsyncIterator[bytes]:
    """Count an SSE stream as open for as long as it is being served."""
    SSE_STREAMS_OPEN.labels(kind).inc()
    try:
        async for event in events:
            yield event
    finally:
        SSE_STREAMS_OPEN.labels(kind).dec()


class BrokerQueueCollector(Collector):
    """Queue depths read from the broker at scrape time, so any process can report them."""

    def collect(self) -> Iterable[GaugeMetricFamily]:
        from .selectors import queue_depths

        family = GaugeMetricFamily("ragsite_queue_depth", "Tasks waiting in a Celery queue", labels=["queue"])
        for queue, depth in queue_depths().items():
            if depth is not None:
                family.add_metric([queue], depth)
        yield family
