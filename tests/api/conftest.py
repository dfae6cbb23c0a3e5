"""Fixtures of the API suite: uploads kept in a temporary folder and queued where no worker listens, and the
search suite's scripted inference API (the model is the API's outside world)."""

from __future__ import annotations

import uuid
from pathlib import Path
from typing import Any

import pytest

from tests.search.conftest import fake_inference, fake_inference_server

__all__ = ["fake_inference", "fake_inference_server"]

# Uploads through the API are queued for ingestion; no worker of any suite takes this queue.
INGEST_QUEUE = f"api-test-{uuid.uuid4().hex[:8]}"


@pytest.fixture(scope="session")
def media_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("api-media")


@pytest.fixture(autouse=True)
def api_settings(settings: Any, media_dir: Path) -> None:
    settings.MEDIA_ROOT = str(media_dir)
    settings.RAGSITE_INGEST_QUEUE = INGEST_QUEUE
