from collections.abc import Iterator
from typing import Any

import pytest

from tests.search.fake_inference import FakeInference


@pytest.fixture(scope="session")
def fake_inference_server() -> Iterator[FakeInference]:
    from ragsite.devstack import free_port

    fake = FakeInference(port=free_port())
    fake.start()
    yield fake
    fake.stop()


@pytest.fixture
def fake_inference(fake_inference_server: FakeInference, settings: Any) -> Iterator[FakeInference]:
    """Point Django's inference client at the scripted stand-in, with a clean script and log."""
    from ops import inference

    fake_inference_server.reset()
    settings.INFERENCE_URL = fake_inference_server.url
    inference.clients_reset()
    yield fake_inference_server
    inference.clients_reset()
