"""Schemathesis fuzzes the service's OpenAPI document: whatever it sends, no answer is a 5xx."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

from tests.inference.conftest import StartService


def test_fuzzing_the_openapi_document_finds_no_server_error(
    start_service: StartService, tmp_path: Path
) -> None:
    # The scripted engine serves chat, so both POST endpoints are fuzzed past the "no engine" 503.
    service = start_service(
        app="tests.inference.fake_engine:create_app", FAKE_ENGINE_TOKENS="3", FAKE_ENGINE_DELAY_S="0"
    )
    schemathesis = Path(sys.executable).parent / "schemathesis"
    result = subprocess.run(
        [
            str(schemathesis),
            "run",
            f"{service.url}/openapi.json",
            "--checks",
            "not_a_server_error",
            "--max-examples",
            "60",
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
    assert result.returncode == 0, result.stdout[-6000:] + result.stderr[-2000:]
    assert "Server error" not in result.stdout
