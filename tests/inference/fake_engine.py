"""A scripted ChatEngine: the outside world of the chat API, so its streaming and aborts can be tested.

Served by `uvicorn --factory tests.inference.fake_engine:create_app`. It emits `FAKE_ENGINE_TOKENS`
words, `FAKE_ENGINE_DELAY_S` apart, or refuses as real engines do for the prompts "refuse: ...". It
appends `start <id>`, then `finish <id>` or `abort <id>`, to `FAKE_ENGINE_LOG`, so a test can see
whether a generation ran to its end or was cut off.
"""

from __future__ import annotations

import asyncio
import os
from collections.abc import AsyncIterator
from pathlib import Path

from inference.backends import EngineOverloaded
from inference.backends.base import ChatMessage, GenerationDelta, SamplingParams


class ScriptedChatEngine:
    model_name = "scripted-chat"
    context_tokens = 512

    def __init__(self, *, tokens: int, delay_s: float, log_path: Path | None) -> None:
        self.tokens = tokens
        self.delay_s = delay_s
        self.log_path = log_path

    async def start(self) -> None:
        return None

    async def stop(self) -> None:
        return None

    def count_tokens(self, text: str) -> int:
        return len(text.split()) + 1

    def _log(self, line: str) -> None:
        if self.log_path is not None:
            with self.log_path.open("a") as log:
                log.write(line + "\n")

    async def generate(
        self, *, request_id: str, messages: list[ChatMessage], params: SamplingParams
    ) -> AsyncIterator[GenerationDelta]:
        # Refusals the real engines make on their first step, triggered by the prompt.
        if messages[-1].content == "refuse: overloaded":
            raise EngineOverloaded("scripted refusal")
        if messages[-1].content == "refuse: too long":
            raise ValueError("prompt has 9999 tokens; the context holds 512")
        prompt_tokens = sum(self.count_tokens(message.content) for message in messages)
        count = min(self.tokens, params.max_tokens)
        self._log(f"start {request_id}")
        finished = False
        try:
            for index in range(count):
                await asyncio.sleep(self.delay_s)
                last = index == count - 1
                yield GenerationDelta(
                    text=f"word{index} ",
                    finish_reason=("length" if count < self.tokens else "stop") if last else None,
                    prompt_tokens=prompt_tokens if last else 0,
                    completion_tokens=count if last else 0,
                )
            finished = True
        finally:
            self._log(f"{'finish' if finished else 'abort'} {request_id}")


def create_app() -> object:
    from inference.app import create_app as create_service
    from inference.config import Settings

    log = os.environ.get("FAKE_ENGINE_LOG")
    engine = ScriptedChatEngine(
        tokens=int(os.environ.get("FAKE_ENGINE_TOKENS", "5")),
        delay_s=float(os.environ.get("FAKE_ENGINE_DELAY_S", "0.01")),
        log_path=Path(log) if log else None,
    )
    return create_service(Settings.from_env(), chat_engine_factory=lambda settings: engine)
