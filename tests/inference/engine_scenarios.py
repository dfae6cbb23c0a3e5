"""Drives one chat engine through the ChatEngine interface and prints what happened as one JSON line.

Run by tests/inference/test_engines.py in the engine's own venv (.venv-inference for llamacpp,
.venv-vllm for vllm): `python tests/inference/engine_scenarios.py ENGINE MODEL_PATH [OPTIONS_JSON]`.
"""

from __future__ import annotations

import asyncio
import json
import sys
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

from inference.backends import EngineOverloaded, create_engine  # noqa: E402
from inference.backends.base import ChatEngine, ChatMessage, GenerationDelta, SamplingParams  # noqa: E402

COUNTING = [
    ChatMessage("system", "You are a helpful assistant."),
    ChatMessage("user", "Count from 1 to 200, separated by commas."),
]
# Sampled (seeded), so that even a random tiny model keeps going: greedy, it picks its end token at once.
SAMPLED_LONG = SamplingParams(max_tokens=200, temperature=1.0, seed=1)
SAMPLED_SHORT = SamplingParams(max_tokens=12, temperature=1.0, seed=2)


async def collect(stream: AsyncIterator[GenerationDelta]) -> dict[str, Any]:
    deltas = [d async for d in stream]
    return {
        "texts": [d.text for d in deltas],
        "finish_reasons": [d.finish_reason for d in deltas],
        "prompt_tokens": deltas[-1].prompt_tokens,
        "completion_tokens": deltas[-1].completion_tokens,
    }


def unfinished(engine: ChatEngine) -> int | None:
    """Requests the engine still holds: vLLM's own count, or llama.cpp's running and waiting jobs."""
    inner = getattr(engine, "_engine", None)
    if inner is not None:
        return int(inner.get_num_unfinished_requests())
    return getattr(engine, "_jobs", None)


def cancelled_tokens(engine: ChatEngine, request_id: str) -> int | None:
    history = getattr(engine, "history", None)
    if history is None:
        return None
    return next((r.completion_tokens for r in history if r.request_id == request_id), None)


async def scenario_stream(engine: ChatEngine) -> dict[str, Any]:
    return await collect(engine.generate(request_id="s1", messages=COUNTING, params=SAMPLED_SHORT))


async def scenario_close(engine: ChatEngine) -> dict[str, Any]:
    """Close the iterator after two deltas; the next request must then run."""
    stream = engine.generate(request_id="c1", messages=COUNTING, params=SAMPLED_LONG)
    seen = [await anext(stream), await anext(stream)]
    await stream.aclose()  # type: ignore[attr-defined]
    after = await collect(engine.generate(request_id="c2", messages=COUNTING, params=SAMPLED_SHORT))
    return {
        "finished_before_close": any(d.finish_reason for d in seen),
        "cancelled_tokens": cancelled_tokens(engine, "c1"),
        "unfinished_after_next": unfinished(engine),
        "next": after,
    }


async def scenario_cancel(engine: ChatEngine) -> dict[str, Any]:
    """Cancel the task that consumes the stream (a client disconnect); the next request must then run."""
    started = asyncio.Event()

    async def consume() -> None:
        async for _ in engine.generate(request_id="k1", messages=COUNTING, params=SAMPLED_LONG):
            started.set()

    task = asyncio.create_task(consume())
    await started.wait()
    task.cancel()
    await asyncio.gather(task, return_exceptions=True)
    after = await collect(engine.generate(request_id="k2", messages=COUNTING, params=SAMPLED_SHORT))
    return {
        "cancelled": task.cancelled(),
        "cancelled_tokens": cancelled_tokens(engine, "k1"),
        "unfinished_after_next": unfinished(engine),
        "next": after,
    }


async def scenario_overload(engine: ChatEngine, capacity: int) -> dict[str, Any]:
    """Fill the engine's running and waiting places; one more request is refused before any work."""
    holders = [
        engine.generate(request_id=f"o{i}", messages=COUNTING, params=SAMPLED_LONG) for i in range(capacity)
    ]
    first_deltas = await asyncio.gather(*(anext(h) for h in holders[:1]))

    # The waiting ones are admitted (queued) by their first step; start them without waiting for output.
    async def first(stream: AsyncIterator[GenerationDelta]) -> GenerationDelta:
        return await anext(stream)

    waiting = [asyncio.create_task(first(h)) for h in holders[1:]]
    await asyncio.sleep(0)
    refused = False
    try:
        await anext(engine.generate(request_id="extra", messages=COUNTING, params=SAMPLED_SHORT))
    except EngineOverloaded:
        refused = True
    for task in waiting:
        task.cancel()
    await asyncio.gather(*waiting, return_exceptions=True)
    for h in holders:
        await h.aclose()  # type: ignore[attr-defined]
    after = await collect(engine.generate(request_id="o-after", messages=COUNTING, params=SAMPLED_SHORT))
    return {"first_delta": first_deltas[0].text, "refused": refused, "next": after}


async def scenario_concurrent(engine: ChatEngine) -> dict[str, Any]:
    """Two requests at once: which request each delta belonged to, in arrival order."""
    order: list[str] = []

    async def run(request_id: str) -> dict[str, Any]:
        deltas = []
        async for d in engine.generate(request_id=request_id, messages=COUNTING, params=SAMPLED_SHORT):
            order.append(request_id)
            deltas.append(d)
        return {"finish_reason": deltas[-1].finish_reason, "n": len(deltas)}

    a, b = await asyncio.gather(run("p1"), run("p2"))
    return {"order": order, "p1": a, "p2": b}


async def main(engine_name: str, model_path: str, options: dict[str, Any]) -> dict[str, Any]:
    capacity = options.pop("capacity", 1)
    engine = create_engine(engine_name, model_path, **options)
    assert engine is not None
    await engine.start()
    try:
        report: dict[str, Any] = {
            "model_name": engine.model_name,
            "context_tokens": engine.context_tokens,
            "count_tokens": engine.count_tokens("Hello world, how are you?"),
        }
        report["stream"] = await scenario_stream(engine)
        report["close"] = await scenario_close(engine)
        report["cancel"] = await scenario_cancel(engine)
        report["overload"] = await scenario_overload(engine, capacity)
        report["concurrent"] = await scenario_concurrent(engine)
        report["unfinished_at_end"] = unfinished(engine)
    finally:
        await engine.stop()
    return report


if __name__ == "__main__":
    opts = json.loads(sys.argv[3]) if len(sys.argv) > 3 else {}
    result = asyncio.run(main(sys.argv[1], sys.argv[2], opts))
    print("SCENARIOS " + json.dumps(result), flush=True)
