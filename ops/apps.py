import contextlib

from django.apps import AppConfig


class OpsConfig(AppConfig):
    name = "ops"
    verbose_name = "Operations"

    def ready(self) -> None:
        from prometheus_client import REGISTRY

        from . import celery_signals, receivers  # noqa: F401
        from .metrics import BrokerQueueCollector

        with contextlib.suppress(ValueError):  # already registered: ready() may run twice in tests
            REGISTRY.register(BrokerQueueCollector())
