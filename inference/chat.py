"""Chat completions over the ChatEngine interface: admission, SSE chunks, deadlines, aborts."""

from __future__ import annotations

import asyncio
import json
import time
import uuid
from collections.abc import AsyncIterator, Callable
from typing import Any

import anyio
from starlette.requests import Request
from starlette.responses import JSONResponse, Response, StreamingResponse
from starlette.types import Receive, Scope, Send

from inference.backends import EngineOverloaded
from inference.backends.base import ChatEngine, ChatMessage, GenerationDelta, SamplingParams
from inference.batching import AdmissionGate, QueueFull
from inference.cancellation import deadline_passed, run_for_client
from inference.metrics import Metrics
from inference.schemas import ApiError, ChatCompletionRequest

DEFAULT_MAX_TOKENS = 256


class ChatStreamResponse(StreamingResponse):
    """SSE that always closes its generator and frees its slot: on the end, an error or a disconnect."""

    def __init__(self, content: AsyncIterator[bytes], *, on_close: Callable[[bool], None]) -> None:
        super().__init__(
            content,
            media_type="text/event-stream",
            headers={"Cache-Control": "no-cache", "X-Accel-Buffering": "no"},
        )
        self._on_close = on_close

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        completed = False
        try:
            async with anyio.create_task_group() as group:

                async def stream_then_stop() -> None:
                    nonlocal completed
                    await self.stream_response(send)
                    completed = True
                    group.cancel_scope.cancel()

                group.start_soon(stream_then_stop)
                await self.listen_for_disconnect(receive)
                group.cancel_scope.cancel()
        finally:
            with anyio.CancelScope(shield=True):
                aclose = getattr(self.body_iterator, "aclose", None)
                if aclose is not None:
                    await aclose()
                self._on_close(completed)


async def complete(
    body: ChatCompletionRequest,
    request: Request,
    *,
    engine: ChatEngine | None,
    gate: AdmissionGate,
    metrics: Metrics,
    timeout_s: float,
) -> Response:
    """Answer one chat completion request, streaming or not."""
    deadline = asyncio.get_running_loop().time() + timeout_s
    if engine is None:
        raise ApiError(
            503,
            "No chat engine is configured on this service (INFERENCE_CHAT_ENGINE=none).",
            error_type="service_unavailable",
            code="chat_unavailable",
        )
    if body.model != engine.model_name:
        raise ApiError(
            404,
            f"The model {body.model!r} does not exist; this service chats with {engine.model_name!r}.",
            param="model",
            code="model_not_found",
        )
    messages = [ChatMessage(role=message.role, content=message.content) for message in body.messages]
    params = sampling_params(body, engine, messages)
    try:
        ticket = gate.admit()
    except QueueFull as exc:
        raise ApiError(
            429,
            "The chat queue is full; retry after the Retry-After seconds.",
            error_type="rate_limit_error",
            code="queue_full",
            headers={"Retry-After": str(exc.retry_after)},
        ) from None
    try:
        await run_for_client(request, ticket.acquire(), deadline=deadline)
    except BaseException:
        ticket.release()
        raise
    request_id = f"chatcmpl-{uuid.uuid4().hex}"
    deltas = engine.generate(request_id=request_id, messages=messages, params=params)
    try:
        # The engine refuses (overloaded, prompt too long) on its first step: answer that before any byte.
        first = await run_for_client(request, first_delta(deltas), deadline=deadline)
    except BaseException:
        await close_quietly(deltas)
        ticket.release()
        raise
    reply = Reply(request_id=request_id, model=engine.model_name, metrics=metrics)
    if body.stream:
        include_usage = bool(body.stream_options and body.stream_options.include_usage)
        chunks = reply.sse(first, deltas, deadline=deadline, include_usage=include_usage)

        def on_close(completed: bool) -> None:
            ticket.release()
            if not completed:
                metrics.rejections.labels("/v1/chat/completions", "client_disconnected").inc()

        return ChatStreamResponse(chunks, on_close=on_close)
    try:
        return JSONResponse(await run_for_client(request, reply.collect(first, deltas), deadline=deadline))
    finally:
        await close_quietly(deltas)
        ticket.release()


async def first_delta(deltas: AsyncIterator[GenerationDelta]) -> GenerationDelta | None:
    """The engine's first delta (None if it produced nothing), its refusals turned into API errors."""
    try:
        return await anext(deltas)
    except StopAsyncIteration:
        return None
    except EngineOverloaded as exc:
        raise ApiError(
            429,
            f"The chat engine is at capacity ({exc}); retry after the Retry-After seconds.",
            error_type="rate_limit_error",
            code="queue_full",
            headers={"Retry-After": "1"},
        ) from None
    except ValueError as exc:
        raise ApiError(400, str(exc), param="messages", code="context_length_exceeded") from None


def sampling_params(
    body: ChatCompletionRequest, engine: ChatEngine, messages: list[ChatMessage]
) -> SamplingParams:
    """The engine's parameters; refuse prompts that leave no room in the context window."""
    prompt_tokens = sum(engine.count_tokens(message.content) for message in messages)
    room = engine.context_tokens - prompt_tokens
    if room < 1:
        raise ApiError(
            400,
            f"The messages are about {prompt_tokens} tokens; the model's context is {engine.context_tokens}.",
            param="messages",
            code="context_length_exceeded",
        )
    requested = body.max_completion_tokens or body.max_tokens or DEFAULT_MAX_TOKENS
    stop = (body.stop,) if isinstance(body.stop, str) else tuple(body.stop or ())
    return SamplingParams(
        max_tokens=min(requested, room),
        temperature=body.temperature,
        top_p=body.top_p,
        stop=stop,
        seed=body.seed,
    )


async def close_quietly(deltas: AsyncIterator[GenerationDelta]) -> None:
    """Close the engine's iterator, which aborts its generation."""
    aclose = getattr(deltas, "aclose", None)
    if aclose is not None:
        await aclose()


class Reply:
    """Turns an engine's deltas into OpenAI `chat.completion` or `chat.completion.chunk` objects."""

    def __init__(self, *, request_id: str, model: str, metrics: Metrics) -> None:
        self.request_id = request_id
        self.model = model
        self.created = int(time.time())
        self.metrics = metrics
        self.started = time.perf_counter()

    async def collect(
        self, first: GenerationDelta | None, deltas: AsyncIterator[GenerationDelta]
    ) -> dict[str, Any]:
        last = first or GenerationDelta(text="")
        parts = [last.text]
        if first is not None and first.finish_reason is None:
            async for delta in deltas:
                parts.append(delta.text)
                last = delta
        self.record(last)
        return {
            "id": self.request_id,
            "object": "chat.completion",
            "created": self.created,
            "model": self.model,
            "choices": [
                {
                    "index": 0,
                    "message": {"role": "assistant", "content": "".join(parts)},
                    "finish_reason": last.finish_reason or "stop",
                }
            ],
            "usage": usage(last),
        }

    async def sse(
        self,
        first: GenerationDelta | None,
        deltas: AsyncIterator[GenerationDelta],
        *,
        deadline: float,
        include_usage: bool,
    ) -> AsyncIterator[bytes]:
        """Server-sent events; the deadline is checked around each await, never across a yield."""
        try:
            yield self.chunk({"role": "assistant", "content": ""}, None)
            last = first or GenerationDelta(text="")
            if last.text:
                yield self.chunk({"content": last.text}, None)
            while first is not None and last.finish_reason is None:
                try:
                    async with asyncio.timeout_at(deadline):
                        delta = await anext(deltas)
                except StopAsyncIteration:
                    break
                last = delta
                if delta.text:
                    yield self.chunk({"content": delta.text}, None)
            self.record(last)
            yield self.chunk({}, last.finish_reason or "stop")
            if include_usage:
                yield self.event({**self.envelope(), "choices": [], "usage": usage(last)})
        except TimeoutError:
            yield self.event(deadline_passed().body())
        finally:
            await close_quietly(deltas)
        yield b"data: [DONE]\n\n"

    def envelope(self) -> dict[str, Any]:
        return {
            "id": self.request_id,
            "object": "chat.completion.chunk",
            "created": self.created,
            "model": self.model,
        }

    def chunk(self, delta: dict[str, str], finish_reason: str | None) -> bytes:
        choice = {"index": 0, "delta": delta, "finish_reason": finish_reason}
        return self.event({**self.envelope(), "choices": [choice]})

    @staticmethod
    def event(payload: dict[str, Any]) -> bytes:
        return b"data: " + json.dumps(payload, separators=(",", ":")).encode() + b"\n\n"

    def record(self, last: GenerationDelta) -> None:
        self.metrics.tokens.labels("chat_prompt").inc(last.prompt_tokens)
        self.metrics.tokens.labels("chat_completion").inc(last.completion_tokens)
        elapsed = time.perf_counter() - self.started
        if last.completion_tokens and elapsed > 0:
            self.metrics.tokens_per_second.labels("chat_completion").set(last.completion_tokens / elapsed)


def usage(last: GenerationDelta) -> dict[str, int]:
    return {
        "prompt_tokens": last.prompt_tokens,
        "completion_tokens": last.completion_tokens,
        "total_tokens": last.prompt_tokens + last.completion_tokens,
    }
