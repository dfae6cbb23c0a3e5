"""Chat completions through the engine interface: formats, admission, deadlines and aborts.

The engine is a scripted one (tests/inference/fake_engine.py): these tests are about the API around
the engine, and the scripted engine reports whether each generation finished or was aborted.
"""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
import time
from pathlib import Path

import httpx
import pytest

from tests.inference.conftest import StartService
from tests.inference.helpers import assert_openai_error, metric
from tests.processes import ROOT

APP = "tests.inference.fake_engine:create_app"
DISCONNECTED = 'inference_rejections_total{endpoint="/v1/chat/completions",reason="client_disconnected"}'
CHAT = {"model": "scripted-chat", "messages": [{"role": "user", "content": "say five words"}]}


def sse_events(text: str) -> list[str]:
    return [line.removeprefix("data: ") for line in text.split("\n\n") if line.startswith("data: ")]


def engine_log(path: Path) -> list[str]:
    return path.read_text().splitlines() if path.exists() else []


def test_non_streaming_answer_is_a_chat_completion(start_service: StartService) -> None:
    service = start_service(app=APP, FAKE_ENGINE_TOKENS="5")
    body = httpx.post(f"{service.url}/v1/chat/completions", json=CHAT, timeout=30).json()
    assert body["object"] == "chat.completion" and body["model"] == "scripted-chat"
    assert body["id"].startswith("chatcmpl-")
    [choice] = body["choices"]
    assert choice["message"] == {"role": "assistant", "content": "word0 word1 word2 word3 word4 "}
    assert choice["finish_reason"] == "stop"
    assert body["usage"]["completion_tokens"] == 5
    assert body["usage"]["total_tokens"] == body["usage"]["prompt_tokens"] + 5
    models = httpx.get(f"{service.url}/v1/models").json()
    assert [card["id"] for card in models["data"]] == ["all-MiniLM-L6-v2", "scripted-chat"]
    error = assert_openai_error(
        httpx.post(f"{service.url}/v1/chat/completions", json={**CHAT, "model": "x"}), 404
    )
    assert error["code"] == "model_not_found"


def test_engine_refusals_are_429_and_400_before_any_byte(start_service: StartService) -> None:
    service = start_service(app=APP)
    url = f"{service.url}/v1/chat/completions"
    for stream in (False, True):
        overloaded = {
            **CHAT,
            "stream": stream,
            "messages": [{"role": "user", "content": "refuse: overloaded"}],
        }
        busy = httpx.post(url, json=overloaded, timeout=30)
        assert assert_openai_error(busy, 429)["code"] == "queue_full"
        assert busy.headers["Retry-After"] == "1"
        too_long = {**CHAT, "stream": stream, "messages": [{"role": "user", "content": "refuse: too long"}]}
        error = assert_openai_error(httpx.post(url, json=too_long, timeout=30), 400)
        assert error["code"] == "context_length_exceeded"
    assert metric(service.url, 'inference_queue_depth{queue="chat"}') == 0


def test_streaming_answer_is_chat_completion_chunks_ending_with_done(start_service: StartService) -> None:
    service = start_service(app=APP, FAKE_ENGINE_TOKENS="3")
    request = {**CHAT, "stream": True, "max_tokens": 2, "stream_options": {"include_usage": True}}
    with httpx.stream("POST", f"{service.url}/v1/chat/completions", json=request, timeout=30) as response:
        assert response.status_code == 200
        assert response.headers["content-type"].startswith("text/event-stream")
        events = sse_events(response.read().decode())
    assert events[-1] == "[DONE]"
    chunks = [json.loads(event) for event in events[:-1]]
    assert {chunk["object"] for chunk in chunks} == {"chat.completion.chunk"}
    assert len({chunk["id"] for chunk in chunks}) == 1
    assert chunks[0]["choices"][0]["delta"] == {"role": "assistant", "content": ""}
    text = "".join(chunk["choices"][0]["delta"].get("content", "") for chunk in chunks if chunk["choices"])
    assert text == "word0 word1 "
    finishing = [chunk for chunk in chunks if chunk["choices"] and chunk["choices"][0]["finish_reason"]]
    assert [chunk["choices"][0]["finish_reason"] for chunk in finishing] == ["length"]
    assert chunks[-1]["choices"] == [] and chunks[-1]["usage"]["completion_tokens"] == 2


def test_a_disconnected_stream_aborts_the_generation_and_frees_its_slot(
    start_service: StartService, tmp_path: Path
) -> None:
    log = tmp_path / "engine.log"
    service = start_service(
        app=APP,
        FAKE_ENGINE_TOKENS="100000",
        FAKE_ENGINE_DELAY_S="0.01",
        FAKE_ENGINE_LOG=str(log),
        INFERENCE_CHAT_MAX_ACTIVE="1",
        INFERENCE_CHAT_MAX_QUEUE="0",
    )
    url = f"{service.url}/v1/chat/completions"
    with httpx.stream("POST", url, json={**CHAT, "stream": True}, timeout=30) as response:
        assert response.status_code == 200
        lines = response.iter_lines()  # kept: dropping the iterator would close the connection
        assert next(lines).startswith("data: ")
        # The one slot is taken: another request is refused at once.
        busy = httpx.post(url, json=CHAT, timeout=30)
        assert_openai_error(busy, 429)
        assert int(busy.headers["Retry-After"]) >= 1
    for _ in range(200):
        if metric(service.url, 'inference_queue_depth{queue="chat"}') == 0:
            break
        time.sleep(0.05)
    [start, end] = engine_log(log)
    assert start.startswith("start ") and end == start.replace("start", "abort")
    assert metric(service.url, DISCONNECTED) == 1
    # The slot is free again: a short request is served.
    short = httpx.post(url, json={**CHAT, "max_tokens": 3}, timeout=30)
    assert short.status_code == 200, short.text


def test_full_chat_queue_answers_429_and_recovers(start_service: StartService) -> None:
    service = start_service(
        app=APP,
        FAKE_ENGINE_TOKENS="20",
        FAKE_ENGINE_DELAY_S="0.05",
        INFERENCE_CHAT_MAX_ACTIVE="1",
        INFERENCE_CHAT_MAX_QUEUE="1",
    )

    async def burst() -> list[httpx.Response]:
        async with httpx.AsyncClient(base_url=service.url, timeout=60) as http:
            return await asyncio.gather(*(http.post("/v1/chat/completions", json=CHAT) for _ in range(6)))

    statuses = sorted(response.status_code for response in asyncio.run(burst()))
    assert statuses.count(200) >= 2 and set(statuses) == {200, 429}
    assert httpx.post(f"{service.url}/v1/chat/completions", json=CHAT, timeout=60).status_code == 200
    # The chat model's card says how many it answers at once, for clients that queue their own.
    cards = httpx.get(f"{service.url}/v1/models").json()["data"]
    assert [card["max_active"] for card in cards if card["kind"] == "chat"] == [1]


def test_chat_deadline_ends_both_kinds_of_answer_cleanly(start_service: StartService, tmp_path: Path) -> None:
    log = tmp_path / "engine.log"
    service = start_service(
        app=APP,
        FAKE_ENGINE_TOKENS="100000",
        FAKE_ENGINE_DELAY_S="0.01",
        FAKE_ENGINE_LOG=str(log),
        INFERENCE_CHAT_TIMEOUT_S="1",
    )
    url = f"{service.url}/v1/chat/completions"
    error = assert_openai_error(httpx.post(url, json=CHAT, timeout=30), 504)
    assert error["code"] == "timeout"
    with httpx.stream("POST", url, json={**CHAT, "stream": True}, timeout=30) as response:
        events = sse_events(response.read().decode())
    assert events[-1] == "[DONE]"
    assert json.loads(events[-2])["error"]["code"] == "timeout"
    assert [line.split()[0] for line in engine_log(log)] == ["start", "abort", "start", "abort"]
    assert metric(service.url, 'inference_queue_depth{queue="chat"}') == 0


# The probe's exit status when the engine is simply not there (not installed, no model provisioned).
ENGINE_ABSENT = 3
LLAMACPP_PROBE = f"""
import importlib.util, os, sys
if importlib.util.find_spec("llama_cpp") is None:
    print("llama-cpp-python is not installed in .venv-inference")
    sys.exit({ENGINE_ABSENT})
import llama_cpp
from inference.backends import default_model_path
if not os.path.exists(default_model_path("llamacpp")):
    print("the default chat model is not provisioned")
    sys.exit({ENGINE_ABSENT})
"""


def engines_required() -> bool:
    """In CI, and under `make test` (which installs llama.cpp first), a missing engine is a failure."""
    ci = os.environ.get("CI", "").strip().lower() in ("1", "true", "yes")
    return ci or os.environ.get("RAGSITE_REQUIRE_ENGINES") == "1"


def require_llamacpp() -> None:
    """Skip only where llama.cpp is truly absent outside CI; an engine that is there but broken fails."""
    python = ROOT / ".venv-inference" / "bin" / "python"
    if not python.exists():
        absent: str | None = f"{python} does not exist"
    else:
        result = subprocess.run(
            [str(python), "-c", LLAMACPP_PROBE], cwd=ROOT, capture_output=True, text=True, check=False
        )
        if result.returncode not in (0, ENGINE_ABSENT):
            pytest.fail(f"the llama.cpp engine is installed but does not load:\n{result.stderr[-3000:]}")
        absent = result.stdout.strip() if result.returncode == ENGINE_ABSENT else None
    if absent is None:
        return
    if engines_required():
        pytest.fail(f"llama.cpp engine missing ({absent}): `make test` installs it (mk/engines.mk)")
    pytest.skip(f"llama.cpp engine not installed here (make engines): {absent}")


def test_with_the_llamacpp_engine_a_dropped_stream_frees_its_slot(start_service: StartService) -> None:
    require_llamacpp()
    service = start_service(
        INFERENCE_CHAT_ENGINE="llamacpp", INFERENCE_CHAT_MAX_ACTIVE="1", INFERENCE_CHAT_MAX_QUEUE="0"
    )
    model = httpx.get(f"{service.url}/v1/models").json()["data"][-1]["id"]
    url = f"{service.url}/v1/chat/completions"
    long_answer = {
        "model": model,
        "stream": True,
        "max_tokens": 400,
        "messages": [{"role": "user", "content": "Count from 1 to 500, one number per line."}],
    }
    with httpx.stream("POST", url, json=long_answer, timeout=120) as response:
        assert response.status_code == 200
        lines = response.iter_lines()  # kept: dropping the iterator would close the connection
        assert any('"content"' in line for line, _ in zip(lines, range(5), strict=False))
        busy = httpx.post(url, json={**long_answer, "stream": False}, timeout=120)
        assert_openai_error(busy, 429)
    for _ in range(400):
        if metric(service.url, 'inference_queue_depth{queue="chat"}') == 0:
            break
        time.sleep(0.05)
    assert metric(service.url, DISCONNECTED) == 1
    short = {**long_answer, "stream": False, "max_tokens": 4}
    answer = httpx.post(url, json=short, timeout=120)
    assert answer.status_code == 200, answer.text
    assert answer.json()["object"] == "chat.completion"
