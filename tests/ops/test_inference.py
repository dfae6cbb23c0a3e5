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


def test_a_busy_service_is_asked_again_no_sooner_than_it_said(monkeypatch: pytest.MonkeyPatch) -> None:
    waits: list[float] = []
    undone: list[int] = []
    monkeypatch.setattr(inference.time, "sleep", waits.append)
    busy = inference.InferenceBusy("busy", retry_after=7.0)
    failures = iter([busy, inference.InferenceUnavailable("down")])

    def call() -> str:
        failure = next(failures, None)
        if failure is not None:
            raise failure
        return "done"

    assert inference.with_retries(call, attempts=3, before_retry=lambda: undone.append(1)) == "done"
    assert waits == [7.0, 2]  # the service's Retry-After, then the backoff's second step
    assert undone == [1, 1]


def test_retries_end_with_the_last_error(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(inference.time, "sleep", lambda seconds: None)

    def call() -> str:
        raise inference.InferenceUnavailable("down")

    with pytest.raises(inference.InferenceUnavailable):
        inference.with_retries(call, attempts=2)
