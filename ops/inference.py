"""The one client of the inference API (`INFERENCE_URL`); nothing else in Django builds URLs to it."""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import json
import time
from collections.abc import AsyncIterator, Callable, Iterator, Sequence
from contextvars import ContextVar
from dataclasses import dataclass
from typing import Any, Protocol, TypeVar

import httpx
from django.conf import settings

EMBEDDING_MODEL = "all-MiniLM-L6-v2"
_sync_clients: dict[str, httpx.Client] = {}
_async_clients: dict[tuple[asyncio.AbstractEventLoop, str], httpx.AsyncClient] = {}
_round_robin = itertools.count()
BUSY_RETRY_AFTER_S = 5.0


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


_T = TypeVar("_T")


def with_retries(
    call: Callable[[], _T], *, attempts: int, before_retry: Callable[[], object] | None = None
) -> _T:
    """`call`, tried up to `attempts` times while the service is busy or briefly unavailable.

    Between tries the wait doubles from 1 s; a busy service's Retry-After is a floor on it, since asking
    earlier only adds to the load that made it busy. `before_retry` undoes a failed try's partial work.
    """
    for attempt in range(attempts):
        try:
            return call()
        except (InferenceBusy, InferenceUnavailable) as error:
            if attempt + 1 == attempts:
                raise
            if before_retry is not None:
                before_retry()
            asked = error.retry_after if isinstance(error, InferenceBusy) else 0.0
            time.sleep(max(2**attempt, asked))
    raise AssertionError("unreachable")


class EmbeddingCache(Protocol):
    """Where `aembed` looks vectors up before making them (search's shared answers keep one in Redis)."""

    async def cached(self, *, model: str, texts: Sequence[str]) -> list[list[float] | None]: ...

    async def store(self, *, model: str, texts: Sequence[str], vectors: Sequence[list[float]]) -> None: ...


# Set by the caller, not imported: this client sits below every app, so the cache is passed in.
_embedding_cache: ContextVar[EmbeddingCache | None] = ContextVar("embedding_cache", default=None)


@contextlib.contextmanager
def embeddings_cached_in(cache: EmbeddingCache) -> Iterator[None]:
    """Within this block (and tasks it starts), `aembed` takes what `cache` keeps and stores what it makes."""
    token = _embedding_cache.set(cache)
    try:
        yield
    finally:
        _embedding_cache.reset(token)


def _base_urls() -> list[str]:
    """INFERENCE_URL may list several replicas, comma-separated; requests go round-robin."""
    urls = [url.strip().rstrip("/") for url in str(settings.INFERENCE_URL).split(",") if url.strip()]
    if not urls:
        raise InferenceUnavailable("INFERENCE_URL is empty: set it to the inference API's address")
    return urls


def _base_url() -> str:
    return ", ".join(_base_urls())


def _replicas_in_turn() -> list[str]:
    urls = _base_urls()
    start = next(_round_robin) % len(urls)
    return urls[start:] + urls[:start]


def _timeout() -> httpx.Timeout:
    return httpx.Timeout(float(getattr(settings, "INFERENCE_TIMEOUT_S", 60.0)), connect=5.0)


def _headers(request_id: str | None = None) -> dict[str, str]:
    """The API key (INFERENCE_API_KEY), and the id of the request being served for the model's logs."""
    from ops.context import request_id_get

    headers = {}
    api_key = str(settings.INFERENCE_API_KEY)
    if api_key:
        headers["Authorization"] = f"Bearer {api_key}"
    request_id = request_id or request_id_get()
    if request_id:
        headers["X-Request-ID"] = request_id
    return headers


# A connection that broke after the request went out and before the answer's head came back (reset, or
# closed by the server): nothing was answered, so the clients' transports send the request once more, on
# the same replica, before the fault counts. The pool has dropped the broken connection by then. Refused
# connections and timeouts are not resent: the first says the replica is down, the second that it is slow.
_DROPPED = (httpx.ReadError, httpx.WriteError, httpx.RemoteProtocolError)


class _ResendDropped(httpx.BaseTransport):
    def __init__(self, inner: httpx.BaseTransport) -> None:
        self.inner = inner

    def handle_request(self, request: httpx.Request) -> httpx.Response:
        try:
            return self.inner.handle_request(request)
        except _DROPPED:
            return self.inner.handle_request(request)

    def close(self) -> None:
        self.inner.close()


class _AsyncResendDropped(httpx.AsyncBaseTransport):
    def __init__(self, inner: httpx.AsyncBaseTransport) -> None:
        self.inner = inner

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        try:
            return await self.inner.handle_async_request(request)
        except _DROPPED:
            return await self.inner.handle_async_request(request)

    async def aclose(self) -> None:
        await self.inner.aclose()


def _client(url: str) -> httpx.Client:
    client = _sync_clients.get(url)
    if client is None:
        transport = _ResendDropped(httpx.HTTPTransport())
        client = httpx.Client(base_url=url, timeout=_timeout(), transport=transport)
        _sync_clients[url] = client
    return client


def _async_client(url: str) -> httpx.AsyncClient:
    key = (asyncio.get_running_loop(), url)
    client = _async_clients.get(key)
    if client is None:
        limits = httpx.Limits(max_connections=1000, max_keepalive_connections=100)
        transport = _AsyncResendDropped(httpx.AsyncHTTPTransport(limits=limits))
        client = httpx.AsyncClient(base_url=url, timeout=_timeout(), transport=transport)
        _async_clients[key] = client
    return client


def clients_reset() -> None:
    """Forget pooled connections (tests that point INFERENCE_URL elsewhere)."""
    _sync_clients.clear()
    _async_clients.clear()
    _chat_cards.clear()


def _should_try_next(response: httpx.Response) -> bool:
    """Another replica may take what this one cannot: it is full (429) or not ready (503)."""
    return response.status_code in (429, 503)


def _reason(exc: httpx.TransportError) -> str:
    """httpx's timeouts carry no message; name the fault so a person can act on it."""
    return str(exc) or type(exc).__name__


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


def _post(path: str, body: dict[str, Any]) -> httpx.Response:
    """POST to the replicas in turn until one takes it; the last answer or fault decides."""
    replicas = _replicas_in_turn()
    for position, url in enumerate(replicas):
        last = position == len(replicas) - 1
        try:
            response = _client(url).post(path, json=body, headers=_headers())
        except httpx.TransportError as exc:
            if last:
                raise InferenceUnavailable(
                    f"The model service at {url} cannot be reached: {_reason(exc)}"
                ) from exc
            continue
        if last or not _should_try_next(response):
            return response
    raise AssertionError("unreachable: the last replica always returns or raises")


async def _apost(path: str, body: dict[str, Any]) -> httpx.Response:
    replicas = _replicas_in_turn()
    for position, url in enumerate(replicas):
        last = position == len(replicas) - 1
        try:
            response = await _async_client(url).post(path, json=body, headers=_headers())
        except httpx.TransportError as exc:
            if last:
                raise InferenceUnavailable(
                    f"The model service at {url} cannot be reached: {_reason(exc)}"
                ) from exc
            continue
        if last or not _should_try_next(response):
            return response
    raise AssertionError("unreachable: the last replica always returns or raises")


@dataclass(frozen=True)
class Health:
    url: str
    ok: bool
    error: str = ""


def health() -> Health:
    """Whether every inference replica has its models loaded (their /readyz)."""
    for url in _base_urls():
        try:
            response = _client(url).get("/readyz", timeout=2.0)
        except httpx.TransportError as exc:
            return Health(url=url, ok=False, error=f"cannot be reached: {_reason(exc)}")
        if response.status_code != 200:
            return Health(url=url, ok=False, error=f"not ready (HTTP {response.status_code})")
    return Health(url=_base_url(), ok=True)


def _embeddings_from(response: httpx.Response) -> list[list[float]]:
    _raise_for_response(response)
    data = sorted(response.json()["data"], key=lambda item: item["index"])
    return [item["embedding"] for item in data]


def embed(texts: Sequence[str], *, model: str = EMBEDDING_MODEL, truncate: bool = False) -> list[list[float]]:
    """Embed texts, in order, with `model` (the base model, or a registered retriever's id); with
    `truncate`, a text longer than the model reads is cut to what it reads instead of refused."""
    if not texts:
        return []
    body: dict[str, Any] = {"model": model, "input": list(texts)}
    if truncate:
        body["truncate"] = True
    return _embeddings_from(_post("/v1/embeddings", body))


async def aembed(texts: Sequence[str], *, model: str = EMBEDDING_MODEL) -> list[list[float]]:
    """Embed texts without blocking the event loop; within `embeddings_cached_in`, only those not cached."""
    if not texts:
        return []
    cache = _embedding_cache.get()
    if cache is None:
        return _embeddings_from(await _apost("/v1/embeddings", {"model": model, "input": list(texts)}))
    vectors = await cache.cached(model=model, texts=texts)
    missing = [index for index, vector in enumerate(vectors) if vector is None]
    if missing:
        response = await _apost("/v1/embeddings", {"model": model, "input": [texts[i] for i in missing]})
        made = _embeddings_from(response)
        await cache.store(model=model, texts=[texts[i] for i in missing], vectors=made)
        for index, vector in zip(missing, made, strict=True):
            vectors[index] = vector
    return [vector for vector in vectors if vector is not None]


@dataclass(frozen=True)
class _ChatCard:
    model: str
    max_active: int | None


_chat_cards: dict[str, _ChatCard] = {}


async def _chat_card(url: str) -> _ChatCard:
    """The chat model a replica serves (the first its /v1/models lists) and how many chats it runs at once."""
    if url not in _chat_cards:
        response = await _async_client(url).get("/v1/models", timeout=5.0, headers=_headers())
        _raise_for_response(response)
        chat = [
            item
            for item in response.json()["data"]
            if item["id"] != EMBEDDING_MODEL and item.get("kind") != "embedding"
        ]
        if not chat:
            raise InferenceError(f"The model service at {url} serves no chat model")
        max_active = chat[0].get("max_active")
        _chat_cards[url] = _ChatCard(
            model=chat[0]["id"], max_active=int(max_active) if isinstance(max_active, int) else None
        )
    return _chat_cards[url]


async def _chat_model(url: str) -> str:
    """The chat model a replica serves: INFERENCE_CHAT_MODEL, else the one its /v1/models lists."""
    configured = str(getattr(settings, "INFERENCE_CHAT_MODEL", "") or "")
    if configured:
        return configured
    return (await _chat_card(url)).model


async def chat_model_name() -> str:
    """The chat model that answers: INFERENCE_CHAT_MODEL, else the one the first replica serves."""
    return await _chat_model(_base_urls()[0])


async def chat_slots() -> int | None:
    """How many chats the replicas answer at once, together; None when one does not say (or cannot)."""
    total = 0
    for url in _base_urls():
        try:
            slots = (await _chat_card(url)).max_active
        except (InferenceError, httpx.HTTPError, ValueError, KeyError, TypeError):
            return None
        if slots is None:
            return None
        total += slots
    return total


async def chat_stream(
    *,
    messages: list[dict[str, str]],
    max_tokens: int = 400,
    temperature: float = 0.0,
    request_id: str | None = None,
) -> AsyncIterator[str]:
    """Stream the text deltas of a chat completion; closing the iterator closes the connection.

    A replica that is unreachable, full or not ready is skipped for the next one, but only before the
    first byte of the answer: once streaming has begun, a failure is reported, never silently restarted.
    """
    replicas = _replicas_in_turn()
    started = False
    for position, url in enumerate(replicas):
        last = position == len(replicas) - 1
        try:
            body: dict[str, Any] = {
                "model": await _chat_model(url),
                "messages": messages,
                "max_tokens": max_tokens,
                "temperature": temperature,
                "stream": True,
            }
            async with _async_client(url).stream(
                "POST", "/v1/chat/completions", json=body, headers=_headers(request_id)
            ) as response:
                if response.status_code >= 400:
                    await response.aread()
                    if not last and _should_try_next(response):
                        continue
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
                        started = True
                        yield delta
                return
        except httpx.ReadTimeout as exc:
            if started:
                raise InferenceUnavailable(f"The model at {url} stopped answering mid-way") from exc
            if last:
                # Accepted into the model's queue, but no answer began in time: that is the model being
                # busy, and the caller may try again, not a fault to report.
                raise InferenceBusy(
                    "The model service is busy: no answer began in time", retry_after=BUSY_RETRY_AFTER_S
                ) from exc
        except httpx.TransportError as exc:
            if started or last:
                raise InferenceUnavailable(
                    f"The model service at {url} cannot be reached: {_reason(exc)}"
                ) from exc


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
