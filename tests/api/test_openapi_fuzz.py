"""Schemathesis fuzzes the API's OpenAPI document on the web app as it is served (uvicorn), with a valid
token, so its requests get past authentication: whatever it sends, no answer is a 5xx."""

from __future__ import annotations

import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
from django.contrib.auth.models import User

from tests.processes import WebProcess, start_web
from tests.search.factories import add_chunks, make_document
from tests.search.fake_inference import FakeInference, Reply

from .conftest import INGEST_QUEUE
from .factories import make_collection, make_group, make_staff, make_token

pytestmark = pytest.mark.django_db(transaction=True)


@pytest.fixture
def web(
    test_database_name: str, fake_inference: FakeInference, logs_dir: Path, media_dir: Path
) -> Iterator[WebProcess]:
    web = start_web(
        database_name=test_database_name,
        log_dir=logs_dir,
        inference_url=fake_inference.url,
        extra_env={"MEDIA_ROOT": str(media_dir), "RAGSITE_INGEST_QUEUE": INGEST_QUEUE},
    )
    yield web
    web.stop()


def test_fuzzing_the_openapi_document_finds_no_server_error(
    web: WebProcess, fake_inference: FakeInference, tmp_path: Path
) -> None:
    fake_inference.default_reply = Reply(["Within 30 days [1]."])
    readers = make_group()
    owner: User = make_staff(groups=[readers])
    document = make_document(title="Returns policy", collection=make_collection(readers=readers))
    add_chunks(document, "Customers may return a laptop within 30 days of delivery for a full refund.")
    _, secret = make_token(user=owner, rate_limit_per_minute=100_000)

    schemathesis = Path(sys.executable).parent / "schemathesis"
    result = subprocess.run(
        [
            str(schemathesis),
            "run",
            f"{web.url}/api/v1/openapi.json",
            "--header",
            f"Authorization: Bearer {secret}",
            "--checks",
            "not_a_server_error",
            "--max-examples",
            "40",
            "--generation-deterministic",
            "--request-timeout",
            "60",
            "--report-dir",
            str(tmp_path),
        ],
        capture_output=True,
        text=True,
        timeout=900,
        check=False,
    )
    assert result.returncode == 0, result.stdout[-6000:] + result.stderr[-2000:] + web.log()[-4000:]
    assert "Server error" not in result.stdout
    assert "Tested: 3" in result.stdout  # ask, list and upload, each past authentication
