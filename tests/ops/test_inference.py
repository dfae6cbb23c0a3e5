"""The inference client against the real inference API: it presents INFERENCE_API_KEY as a bearer token."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from ops import inference
from tests.processes import InferenceProcess, start_inference

KEY = "web-app-key-0123456789"


@pytest.fixture(scope="module")
def keyed_inference(logs_dir: Path) -> Iterator[InferenceProcess]:
    """The real inference API (embeddings only) with API keys."""
    server = start_inference(log_dir=logs_dir, extra_env={"INFERENCE_API_KEYS": f"another-key,{KEY}"})
    yield server
    server.stop()


@pytest.fixture
def client_settings(keyed_inference: InferenceProcess, settings: Any) -> Iterator[Any]:
    settings.INFERENCE_URL = keyed_inference.url
    inference.clients_reset()
    yield settings
    inference.clients_reset()


def test_the_client_sends_its_key_and_is_served(client_settings: Any) -> None:
    client_settings.INFERENCE_API_KEY = KEY
    [vector] = inference.embed(["a question about refunds"])
    assert len(vector) == 384
    assert inference.health().ok


def test_without_the_right_key_the_service_refuses_and_says_why(client_settings: Any) -> None:
    client_settings.INFERENCE_API_KEY = "not-the-key"
    with pytest.raises(inference.InferenceError) as refused:
        inference.embed(["a question about refunds"])
    assert refused.value.status == 401
    assert "API key" in refused.value.message
