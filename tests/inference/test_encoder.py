"""The embedding model's own process: a crash is a clean 503 and a restart, never a hang."""

from __future__ import annotations

import os
import signal
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import httpx

from tests.inference.conftest import StartService
from tests.inference.helpers import MODEL, assert_openai_error

LONG_TEXT = "retrieval augmented generation over many documents " * 60


def encoder_pids(service_pid: int) -> list[int]:
    """The service's multiprocessing children that run a model (not its resource tracker)."""
    pids = []
    # Children are listed under the thread that started them: look at every thread.
    for task in Path(f"/proc/{service_pid}/task").iterdir():
        try:
            children = (task / "children").read_text().split()
            pids += [int(child) for child in children if b"spawn_main" in read_cmdline(child)]
        except FileNotFoundError:  # a thread or child that has just ended
            continue
    return pids


def read_cmdline(pid: str) -> bytes:
    return Path(f"/proc/{pid}/cmdline").read_bytes()


def cpu_seconds(pid: int) -> float:
    """User plus system CPU time the process has used so far."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def wait_until_encoding(pid: int, started_with: float) -> None:
    """Return once the encoder has worked a while on this request (it spends no CPU while idle)."""
    for _ in range(600):
        if cpu_seconds(pid) - started_with > 0.3:
            return
        time.sleep(0.05)
    raise AssertionError("the encoder process never started on the batch")


def test_the_model_runs_in_a_child_process_and_a_crash_mid_batch_is_a_503_then_a_restart(
    start_service: StartService,
) -> None:
    service = start_service()
    [encoder] = encoder_pids(service.process.pid)
    body = {"model": MODEL, "input": [LONG_TEXT] * 256, "truncate": True}
    with httpx.Client(base_url=service.url, timeout=120) as http, ThreadPoolExecutor(1) as pool:
        before = cpu_seconds(encoder)
        pending = pool.submit(http.post, "/v1/embeddings", json=body)
        wait_until_encoding(encoder, before)
        os.kill(encoder, signal.SIGKILL)
        error = assert_openai_error(pending.result(), 503)
        assert error["code"] == "encoder_unavailable"
        assert "exited" in str(error["message"])

        # The next request starts a new encoder process and is answered.
        again = http.post("/v1/embeddings", json={"model": MODEL, "input": "after the crash"})
        assert again.status_code == 200, again.text
        assert len(again.json()["data"][0]["embedding"]) == 384
        assert http.get("/readyz").status_code == 200
    [restarted] = encoder_pids(service.process.pid)
    assert restarted != encoder


def test_a_stalled_encoder_is_stopped_after_the_stall_timeout_with_a_503_then_restarted(
    start_service: StartService,
) -> None:
    """An encoder that hangs mid-batch (SIGSTOP: alive, answering nothing) is killed once it has been
    silent for INFERENCE_ENCODER_STALL_TIMEOUT_S; its request is a 503 and the next one is served."""
    service = start_service(INFERENCE_ENCODER_STALL_TIMEOUT_S="3", INFERENCE_REQUEST_TIMEOUT_S="60")
    [encoder] = encoder_pids(service.process.pid)
    body = {"model": MODEL, "input": [LONG_TEXT] * 256, "truncate": True}
    with httpx.Client(base_url=service.url, timeout=120) as http, ThreadPoolExecutor(1) as pool:
        before = cpu_seconds(encoder)
        sent_at = time.monotonic()
        pending = pool.submit(http.post, "/v1/embeddings", json=body)
        wait_until_encoding(encoder, before)
        os.kill(encoder, signal.SIGSTOP)
        error = assert_openai_error(pending.result(), 503)
        waited = time.monotonic() - sent_at
        assert error["code"] == "encoder_unavailable"
        assert "answered nothing in 3 s" in str(error["message"])
        # The watchdog's 3 s (counted from the batch's sending), not the request's deadline (60 s), ended it.
        assert 3 <= waited < 30, waited
        assert not Path(f"/proc/{encoder}").exists(), "the stalled encoder was left behind"

        again = http.post("/v1/embeddings", json={"model": MODEL, "input": "after the stall"})
        assert again.status_code == 200, again.text
        assert len(again.json()["data"][0]["embedding"]) == 384
        assert http.get("/readyz").status_code == 200
    [restarted] = encoder_pids(service.process.pid)
    assert restarted != encoder
