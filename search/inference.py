"""The one client of the inference API (`INFERENCE_URL`); nothing else in Django builds URLs to it."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator, Sequence
from dataclasses import dataclass
from typing import Any

import httpx
from django.conf import settings

EMBEDDING_MODEL = "all-MiniLM-L6-v2"
_sync_client: httpx.Client | None = None
_async_clients: dict[asyncio.AbstractEventLoop, httpx.AsyncClient] = {}


class InferenceError(Exception):
    """The inference API refused or failed a request; `message` is fit to show a person."""

    def __init__(self, message: str, *, status: int | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.status = status


class InferenceBusy(InferenceError):
    """The inference API is at capacity (429); try again after `retry_after` seconds."""

    def __init__(self, message: str, *, retry_after: float) -> None:
        super().__init__(message, status=429)
        self.retry_after = retry_after


class InferenceUnavailable(InferenceError):
    """The inference API cannot be reached, timed out or answered 5xx: a transient fault."""


def _base_url() -> str:
    return str(settings.INFERENCE_URL).rstrip("/")


def _timeout() -> httpx.Timeout:
    return httpx.Timeout(float(getattr(settings, "INFERENCE_TIMEOUT_S", 60.0)), connect=5.0)


def _headers(request_id: str | None = None) -> dict[str, str]:
    """Carry the request id of the question being served to the model's logs."""
    from ops.context import request_id_get

    request_id = request_id or request_id_get()
    return {"X-Request-ID": request_id} if request_id else {}


def _client() -> httpx.Client:
    global _sync_client
    if _sync_client is None:
        _sync_client = httpx.Client(base_url=_base_url(), timeout=_timeout())
    return _sync_client


def _async_client() -> httpx.AsyncClient:
    loop = asyncio.get_running_loop()
    client = _async_clients.get(loop)
    if client is None:
        limits = httpx.Limits(max_connections=1000, max_keepalive_connections=100)
        client = httpx.AsyncClient(base_url=_base_url(), timeout=_timeout(), limits=limits)
        _async_clients[loop] = client
    return client


def _raise_for_response(response: httpx.Response) -> None:
    if response.status_code < 400:
        return
    try:
        message = response.json()["error"]["message"]
    except (ValueError, KeyError, TypeError):
        message = response.text[:200] or response.reason_phrase
    if response.status_code == 429:
        retry_after = float(response.headers.get("Retry-After", "1") or 1)
        raise InferenceBusy(f"The model service is busy: {message}", retry_after=retry_after)
    if response.status_code >= 500:
        raise InferenceUnavailable(
            f"The model service failed ({response.status_code}): {message}", status=response.status_code
        )
    raise InferenceError(f"The model service refused the request: {message}", status=response.status_code)


@dataclass(frozen=True)
class Health:
    url: str
    ok: bool
    error: str = ""


def health() -> Health:
    """Whether the inference API has its models loaded (its /readyz)."""
    try:
        response = _client().get("/readyz", timeout=2.0)
    except httpx.TransportError as exc:
        return Health(url=_base_url(), ok=False, error=f"cannot be reached: {exc}")
    if response.status_code != 200:
        return Health(url=_base_url(), ok=False, error=f"not ready (HTTP {response.status_code})")
    return Health(url=_base_url(), ok=True)


def embed(texts: Sequence[str]) -> list[list[float]]:
    """Embed texts with the served embedding model, in order."""
    if not texts:
        return []
    try:
        response = _client().post(
            "/v1/embeddings", json={"model": EMBEDDING_MODEL, "input": list(texts)}, headers=_headers()
        )
    except httpx.TransportError as exc:
        raise InferenceUnavailable(f"The model service at {_base_url()} cannot be reached: {exc}") from exc
    _raise_for_response(response)
    data = sorted(response.json()["data"], key=lambda item: item["index"])
    return [item["embedding"] for item in data]


async def aembed(texts: Sequence[str]) -> list[list[float]]:
    """Embed texts without blocking the event loop."""
    if not texts:
        return []
    try:
        response = await _async_client().post(
            "/v1/embeddings", json={"model": EMBEDDING_MODEL, "input": list(texts)}, headers=_headers()
        )
    except httpx.TransportError as exc:
        raise InferenceUnavailable(f"The model service at {_base_url()} cannot be reached: {exc}") from exc
    _raise_for_response(response)
    data = sorted(response.json()["data"], key=lambda item: item["index"])
    return [item["embedding"] for item in data]


async def chat_stream(
    *,
    messages: list[dict[str, str]],
    max_tokens: int = 400,
    temperature: float = 0.0,
    request_id: str | None = None,
) -> AsyncIterator[str]:
    """Stream the text deltas of a chat completion; closing the iterator closes the connection."""
    body: dict[str, Any] = {
        "model": "default",
        "messages": messages,
        "max_tokens": max_tokens,
        "temperature": temperature,
        "stream": True,
    }
    headers = _headers(request_id)
    try:
        async with _async_client().stream(
            "POST", "/v1/chat/completions", json=body, headers=headers
        ) as response:
            if response.status_code >= 400:
                await response.aread()
                _raise_for_response(response)
            async for line in response.aiter_lines():
                if not line.startswith("data:"):
                    continue
                payload = line[5:].strip()
                if payload == "[DONE]":
                    return
                event = json.loads(payload)
                if "error" in event:
                    raise InferenceError(f"The model failed while answering: {event['error']['message']}")
                delta = event["choices"][0].get("delta", {}).get("content")
                if delta:
                    yield delta
    except httpx.TransportError as exc:
        raise InferenceUnavailable(f"The model service at {_base_url()} cannot be reached: {exc}") from exc


async def chat_complete(
    *,
    messages: list[dict[str, str]],
    max_tokens: int = 128,
    temperature: float = 0.0,
    request_id: str | None = None,
) -> str:
    """A whole (non-streamed) chat completion's text."""
    parts = [
        delta
        async for delta in chat_stream(
            messages=messages, max_tokens=max_tokens, temperature=temperature, request_id=request_id
        )
    ]
    return "".join(parts)
