from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.processes import WebProcess, start_web

# The search suite's scripted inference API: the model is the widget's outside world.
from tests.search.conftest import fake_inference, fake_inference_server
from tests.search.fake_inference import FakeInference

__all__ = ["fake_inference", "fake_inference_server", "web"]


@pytest.fixture(scope="module")
def web(
    test_database_name: str, fake_inference_server: FakeInference, logs_dir: Path
) -> Iterator[WebProcess]:
    """The Django ASGI app under uvicorn on the test database, its model the scripted inference API."""
    web = start_web(
        database_name=test_database_name, log_dir=logs_dir, inference_url=fake_inference_server.url
    )
    yield web
    web.stop()
