"""Prometheus instruments, one registry per app so several apps can live in one process."""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram

BATCH_SIZE_BUCKETS = (1, 2, 4, 8, 16, 32, 64, 128, 256)
LATENCY_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120, 300)


class Metrics:
    """The service's instruments: queue depth, batch sizes, latencies, rejections, tokens."""

    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        self.queue_depth = Gauge(
            "inference_queue_depth",
            "Admitted work not yet answered (embedding inputs, chat requests).",
            ["queue"],
            registry=self.registry,
        )
        self.queue_capacity = Gauge(
            "inference_queue_capacity",
            "Most admitted work before 429.",
            ["queue"],
            registry=self.registry,
        )
        self.batch_size = Histogram(
            "inference_embedding_batch_size",
            "Inputs encoded together in one model call.",
            buckets=BATCH_SIZE_BUCKETS,
            registry=self.registry,
        )
        self.batch_seconds = Histogram(
            "inference_embedding_batch_seconds",
            "Time spent in one model call.",
            buckets=LATENCY_BUCKETS,
            registry=self.registry,
        )
        self.request_seconds = Histogram(
            "inference_request_seconds",
            "Time from request to answer, by endpoint and status.",
            ["endpoint", "status"],
            buckets=LATENCY_BUCKETS,
            registry=self.registry,
        )
        self.rejections = Counter(
            "inference_rejections",
            "Requests refused or abandoned, by reason.",
            ["endpoint", "reason"],
            registry=self.registry,
        )
        self.tokens = Counter(
            "inference_tokens",
            "Tokens processed: embedding inputs, chat prompts and completions.",
            ["kind"],
            registry=self.registry,
        )
        self.tokens_per_second = Gauge(
            "inference_tokens_per_second",
            "Throughput of the last embedding batch or chat generation.",
            ["kind"],
            registry=self.registry,
        )
        self.models_loaded = Gauge(
            "inference_models_loaded", "1 once the models are loaded.", registry=self.registry
        )
