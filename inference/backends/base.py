"""The chat engine interface every backend implements."""

from __future__ import annotations

from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Literal, Protocol


@dataclass(frozen=True)
class ChatMessage:
    role: Literal["system", "user", "assistant"]
    content: str


@dataclass(frozen=True)
class SamplingParams:
    max_tokens: int = 256
    temperature: float = 0.0
    top_p: float = 1.0
    stop: tuple[str, ...] = ()
    seed: int | None = None


@dataclass(frozen=True)
class GenerationDelta:
    """A piece of generated text; the last one carries finish_reason and the token counts."""

    text: str
    finish_reason: Literal["stop", "length"] | None = None
    prompt_tokens: int = 0
    completion_tokens: int = 0


class ChatEngine(Protocol):
    """An LLM engine: started in the service's lifespan, streaming deltas per request.

    Closing or cancelling the iterator returned by `generate` must abort the generation
    and free its slot (this is how a client disconnect reaches the engine).
    """

    model_name: str
    context_tokens: int

    async def start(self) -> None: ...

    async def stop(self) -> None: ...

    def count_tokens(self, text: str) -> int: ...

    def generate(
        self, *, request_id: str, messages: list[ChatMessage], params: SamplingParams
    ) -> AsyncIterator[GenerationDelta]: ...
