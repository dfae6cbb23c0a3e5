"""The OpenAI-compatible inference API: embeddings, chat completions, health and metrics."""

from __future__ import annotations

import asyncio
import base64
import json
import logging
import os
import re
import sys
import time
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse, Response
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from inference import chat
from inference.auth import ApiKeyMiddleware
from inference.backends.base import ChatEngine
from inference.batching import AdmissionGate, EmbeddingBatcher, QueueFull, Reservation
from inference.cancellation import ClientDisconnected, run_for_client
from inference.config import Settings
from inference.encoder import EncoderProcess, EncoderUnavailable
from inference.metrics import Metrics
from inference.schemas import (
    ApiError,
    ChatCompletionRequest,
    EmbeddingRequest,
    EmbeddingResponse,
    ErrorResponse,
    ModelCard,
    ModelList,
)

logger = logging.getLogger("inference")
access_logger = logging.getLogger("inference.access")


def _access_log_to_stderr() -> None:
    """One JSON line per request on stderr, carrying the caller's X-Request-ID (the web app's request id)."""
    if access_logger.handlers:
        return
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(logging.Formatter("%(message)s"))
    access_logger.addHandler(handler)
    access_logger.setLevel(logging.INFO)
    access_logger.propagate = False


ChatEngineFactory = Callable[[Settings], ChatEngine | None]

KNOWN_PATHS = frozenset(
    {
        "/v1/embeddings",
        "/v1/chat/completions",
        "/v1/models",
        "/healthz",
        "/readyz",
        "/metrics",
        "/openapi.json",
    }
)
ERROR_RESPONSES: dict[int | str, dict[str, Any]] = {
    status: {"model": ErrorResponse, "description": description}
    for status, description in {
        400: "Invalid request",
        401: "Missing or invalid API key (`Authorization: Bearer <key>`, one of INFERENCE_API_KEYS)",
        404: "Unknown model",
        408: "The request body did not arrive within the deadline",
        413: "Request body too large",
        429: "Queue full; retry after the `Retry-After` seconds",
        503: "Model not loaded yet, its encoder process died, or no chat engine configured",
        504: "Deadline passed before the answer was ready",
    }.items()
}


# The share of a request's deadline its expected queue wait may take. The rest is margin: for a rate
# that drops after admission (other work on the machine), and for the answer to be written out.
QUEUE_SHARE_OF_DEADLINE = 0.6
# The request state's key for the embeddings queue room that ShedLoadMiddleware reserved.
RESERVATION = "embedding_reservation"
# The request state's key for an embeddings request's deadline (event loop time), set on its arrival.
DEADLINE = "embedding_deadline"

# A retriever's model id is the name of its directory: no path separators, no leading dot.
RETRIEVER_ID = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,99}")


@dataclass
class LoadedEmbedder:
    """An embedding model with its own micro-batcher."""

    model: EncoderProcess
    batcher: EmbeddingBatcher


@dataclass
class ServiceState:
    """What the lifespan creates; handlers reach it through `request.app.state.service`."""

    settings: Settings
    metrics: Metrics
    started_at: int = field(default_factory=lambda: int(time.time()))
    embedder: EncoderProcess | None = None
    batcher: EmbeddingBatcher | None = None
    chat_engine: ChatEngine | None = None
    # Sized from the chat engine once it has started (Settings.chat_admission).
    chat_gate: AdmissionGate | None = None
    # What is loading now, for /readyz to say.
    loading: str = "the embedding model"
    load_error: str | None = None
    # Registered retrievers (RAGSITE_RETRIEVERS_DIR/<model id>/), loaded on first use.
    retrievers: dict[str, LoadedEmbedder] = field(default_factory=dict)
    retriever_loads: dict[str, asyncio.Task[LoadedEmbedder]] = field(default_factory=dict)

    @property
    def ready(self) -> bool:
        return (
            self.batcher is not None
            and self.load_error is None
            and self.embedder is not None
            and self.embedder.alive  # false while a crashed encoder process is being replaced
        )


def default_chat_engine(settings: Settings) -> ChatEngine | None:
    """The engine INFERENCE_CHAT_ENGINE names (None for `none`), its options from INFERENCE_CHAT_*."""
    from inference.backends import create_engine_from_env

    chosen = {
        "INFERENCE_CHAT_ENGINE": settings.chat_engine,
        "INFERENCE_CHAT_MODEL": settings.chat_model or "",
    }
    return create_engine_from_env({**os.environ, **chosen})


def service(request: Request) -> ServiceState:
    state: ServiceState = request.app.state.service
    return state


def error_response(error: ApiError) -> JSONResponse:
    return JSONResponse(error.body(), status_code=error.status_code, headers=error.headers)


class BodySizeLimitMiddleware:
    """Refuse bodies over `max_bytes` with 413 before they are read whole."""

    def __init__(self, app: ASGIApp, *, max_bytes: int) -> None:
        self.app = app
        self.max_bytes = max_bytes

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        for name, value in scope["headers"]:
            if name == b"content-length" and value.isdigit() and int(value) > self.max_bytes:
                await error_response(self._too_large())(scope, receive, send)
                return
        received = 0

        async def limited_receive() -> Message:
            nonlocal received
            message = await receive()
            if message["type"] == "http.request":
                received += len(message.get("body", b""))
                if received > self.max_bytes:
                    # An HTTPException is what FastAPI lets through from a body read.
                    raise StarletteHTTPException(413, self._too_large().message)
            return message

        await self.app(scope, limited_receive, send)

    def _too_large(self) -> ApiError:
        return ApiError(
            413,
            f"The request body is larger than {self.max_bytes} bytes.",
            code="request_too_large",
            param=None,
        )


class ShedLoadMiddleware:
    """Reserve room in the embeddings queue as a request arrives; without room, 429 before the body is read.

    The reservation is handed to the route in the request's state and given back when the request's
    inputs are queued, or when the request ends without queuing them. The request's deadline starts
    here too, and bounds the reading of its body (408 past it), so a client that sends its headers and
    then stalls cannot hold the room for longer than any other request could.
    """

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or scope["path"] != "/v1/embeddings" or scope["method"] != "POST":
            await self.app(scope, receive, send)
            return
        state: ServiceState | None = getattr(scope["app"].state, "service", None)
        batcher = state.batcher if state is not None else None
        if state is None or batcher is None:  # still loading: the route answers 503
            await self.app(scope, receive, send)
            return
        timeout_s = state.settings.request_timeout_s
        reservation = batcher.reserve(within_s=QUEUE_SHARE_OF_DEADLINE * timeout_s)
        if reservation is None:
            state.metrics.rejections.labels("/v1/embeddings", "queue_full").inc()
            await error_response(queue_full(batcher.retry_after(1)))(scope, receive, send)
            return
        deadline = asyncio.get_running_loop().time() + timeout_s
        scope.setdefault("state", {}).update({RESERVATION: reservation, DEADLINE: deadline})
        body_read = False

        async def receive_by_deadline() -> Message:
            nonlocal body_read
            if body_read:  # what follows the body is only the client's disconnect
                return await receive()
            try:
                async with asyncio.timeout_at(deadline):
                    message = await receive()
            except TimeoutError:
                state.metrics.rejections.labels("/v1/embeddings", "timeout").inc()
                raise StarletteHTTPException(
                    408, f"The request body did not arrive within {timeout_s:g} s."
                ) from None
            body_read = message["type"] != "http.request" or not message.get("more_body", False)
            return message

        try:
            await self.app(scope, receive_by_deadline, send)
        finally:
            reservation.release()


class RequestMetricsMiddleware:
    """Observe each request's latency by endpoint and status."""

    def __init__(self, app: ASGIApp, *, metrics: Metrics) -> None:
        self.app = app
        self.metrics = metrics

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        started = time.perf_counter()
        status = 0

        async def send_with_status(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
            await send(message)

        try:
            await self.app(scope, receive, send_with_status)
        finally:
            endpoint = scope["path"] if scope["path"] in KNOWN_PATHS else "other"
            elapsed = time.perf_counter() - started
            self.metrics.request_seconds.labels(endpoint, str(status or 499)).observe(elapsed)
            if endpoint.startswith("/v1/"):
                headers = dict(scope.get("headers") or [])
                request_id = headers.get(b"x-request-id", b"").decode("latin-1")[:64]
                access_logger.info(
                    json.dumps(
                        {
                            "time": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
                            "logger": "inference.access",
                            "method": scope["method"],
                            "path": endpoint,
                            "status": status or 499,
                            "ms": round(elapsed * 1000, 1),
                            "request_id": request_id,
                        }
                    )
                )


def create_app(
    settings: Settings | None = None, *, chat_engine_factory: ChatEngineFactory | None = None
) -> FastAPI:
    """Build the service; `uvicorn --factory inference.app:create_app` reads settings from the environment."""
    settings = settings or Settings.from_env()
    _access_log_to_stderr()
    make_chat_engine = chat_engine_factory or default_chat_engine
    metrics = Metrics()

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        state = ServiceState(settings=settings, metrics=metrics)
        app.state.service = state
        loading = asyncio.create_task(load_models(state, make_chat_engine), name="load-models")
        try:
            yield
        finally:
            loading.cancel()
            await asyncio.gather(loading, return_exceptions=True)
            for load in state.retriever_loads.values():
                load.cancel()
            await asyncio.gather(*state.retriever_loads.values(), return_exceptions=True)
            for retriever in state.retrievers.values():
                await retriever.batcher.stop()
                await asyncio.to_thread(retriever.model.stop)
            if state.batcher is not None:
                await state.batcher.stop()
            if state.embedder is not None:
                await asyncio.to_thread(state.embedder.stop)
            if state.chat_engine is not None:
                await state.chat_engine.stop()

    app = FastAPI(
        title="ragsite inference",
        version="1.0.0",
        description="OpenAI-compatible embeddings and chat completions for ragsite.",
        lifespan=lifespan,
    )
    app.add_middleware(BodySizeLimitMiddleware, max_bytes=settings.max_body_bytes)
    app.add_middleware(ShedLoadMiddleware)
    # Outside the load shedding, so that a request without a key reserves no queue room.
    app.add_middleware(ApiKeyMiddleware, api_keys=settings.api_keys, metrics_token=settings.metrics_token)
    app.add_middleware(RequestMetricsMiddleware, metrics=metrics)
    install_error_handlers(app, metrics)
    install_routes(app)
    return app


async def load_models(state: ServiceState, make_chat_engine: ChatEngineFactory) -> None:
    """Load the models off the event loop so /healthz answers while they load."""
    settings = state.settings
    try:
        import torch

        # For an in-process chat engine; the embedding model sets its own in its encoder process.
        torch.set_num_threads(settings.torch_threads)
        embedder = await asyncio.to_thread(
            EncoderProcess,
            settings.embedding_model_path,
            model_id=settings.embedding_model_id,
            torch_threads=settings.torch_threads,
            packed=settings.embedding_packed,
            stall_timeout_s=settings.encoder_stall_timeout_s,
        )
        rate = await asyncio.to_thread(warm_up, embedder, settings.embedding_max_batch_size)
        state.loading = f"the chat engine ({settings.chat_engine})"
        engine = make_chat_engine(settings)
        if engine is not None:
            try:
                await engine.start()  # loads off the event loop
            except BaseException:
                await engine.stop()
                raise
    except Exception as exc:
        logger.exception("loading the models failed")
        state.load_error = f"{type(exc).__name__}: {exc}"
        return
    max_active, max_queue = settings.chat_admission(getattr(engine, "max_num_seqs", None))
    gate = AdmissionGate(name="chat", max_active=max_active, max_waiting=max_queue, metrics=state.metrics)
    batcher = new_batcher(state, embedder, inputs_per_second=rate)
    state.embedder, state.chat_engine, state.chat_gate, state.batcher = embedder, engine, gate, batcher
    state.metrics.models_loaded.set(1)
    logger.info(
        "models loaded: %s, chat engine %s admitting %d at once and %d waiting",
        settings.embedding_model_id,
        settings.chat_engine,
        max_active,
        max_queue,
    )


def new_batcher(
    state: ServiceState, embedder: EncoderProcess, *, inputs_per_second: float
) -> EmbeddingBatcher:
    settings = state.settings
    batcher = EmbeddingBatcher(
        embedder.encode,
        max_batch_size=settings.embedding_max_batch_size,
        max_wait_s=settings.embedding_max_wait_ms / 1000,
        max_batch_tokens=settings.embedding_max_batch_tokens,
        max_queue=settings.embedding_max_queue,
        metrics=state.metrics,
        inputs_per_second=inputs_per_second,
    )
    batcher.start()
    return batcher


def retriever_ids(settings: Settings) -> list[str]:
    """The subdirectories of RAGSITE_RETRIEVERS_DIR that hold a sentence-transformers model."""
    root = Path(settings.retrievers_dir)
    if not root.is_dir():
        return []
    return sorted(
        path.name
        for path in root.iterdir()
        if RETRIEVER_ID.fullmatch(path.name)
        and path.name != settings.embedding_model_id
        and (path / "modules.json").is_file()
    )


async def load_retriever(state: ServiceState, model_id: str) -> LoadedEmbedder:
    path = str(Path(state.settings.retrievers_dir) / model_id)
    model = await asyncio.to_thread(
        EncoderProcess,
        path,
        model_id=model_id,
        torch_threads=state.settings.torch_threads,
        packed=state.settings.embedding_packed,
        stall_timeout_s=state.settings.encoder_stall_timeout_s,
    )
    rate = await asyncio.to_thread(warm_up, model, state.settings.embedding_max_batch_size)
    loaded = LoadedEmbedder(model=model, batcher=new_batcher(state, model, inputs_per_second=rate))
    state.retrievers[model_id] = loaded
    logger.info("retriever loaded: %s", model_id)
    return loaded


async def embedder_for(state: ServiceState, model_id: str, *, deadline: float) -> LoadedEmbedder:
    """The default model, or a registered retriever (loaded by the first request that names it)."""
    if state.embedder is None or state.batcher is None:
        raise not_ready(state)
    if model_id == state.settings.embedding_model_id:
        return LoadedEmbedder(model=state.embedder, batcher=state.batcher)
    loaded = state.retrievers.get(model_id)
    if loaded is not None:
        return loaded
    if not RETRIEVER_ID.fullmatch(model_id) or model_id not in retriever_ids(state.settings):
        raise ApiError(
            404,
            f"The model {model_id!r} does not exist; this service embeds with "
            f"{', '.join(repr(name) for name in embedding_model_ids(state))}.",
            param="model",
            code="model_not_found",
        )
    load = state.retriever_loads.get(model_id)
    if load is None:
        load = asyncio.create_task(load_retriever(state, model_id), name=f"load-{model_id}")
        state.retriever_loads[model_id] = load
    remaining = deadline - asyncio.get_running_loop().time()
    try:
        # Shielded: a caller that gives up does not cancel a load the next caller will want.
        return await asyncio.wait_for(asyncio.shield(load), timeout=max(remaining, 0.001))
    except TimeoutError:
        raise model_not_ready(f"The model {model_id!r} is loading.") from None
    except Exception as exc:
        state.retriever_loads.pop(model_id, None)  # the next request tries again
        logger.exception("loading the retriever %s failed", model_id)
        raise model_not_ready(f"The model {model_id!r} failed to load: {type(exc).__name__}: {exc}") from None


def warm_up(embedder: EncoderProcess, batch_size: int) -> float:
    """Encode a full batch of typical inputs twice (the first pays one-off costs); inputs/s of the second."""
    texts = [
        "a typical passage of a few dozen tokens for the embedding model to warm up on " * 2
    ] * batch_size
    embedder.encode(texts)
    started = time.perf_counter()
    embedder.encode(texts)
    return batch_size / max(time.perf_counter() - started, 1e-9)


def install_error_handlers(app: FastAPI, metrics: Metrics) -> None:
    @app.exception_handler(ApiError)
    async def api_error(request: Request, exc: ApiError) -> JSONResponse:
        return error_response(exc)

    @app.exception_handler(RequestValidationError)
    async def validation_error(request: Request, exc: RequestValidationError) -> JSONResponse:
        errors = exc.errors()
        first = errors[0] if errors else {}
        loc = [str(part) for part in first.get("loc", ()) if part != "body"]
        param = ".".join(loc) or None
        message = first.get("msg", "Invalid request.")
        if first.get("type") == "json_invalid":
            message, param = "The request body is not valid JSON.", None
        elif first.get("type") == "model_attributes_type" and not loc:
            message = "The request body must be a JSON object sent as Content-Type: application/json."
        elif param:
            message = f"{param}: {message}"
        metrics.rejections.labels(request.url.path, "invalid").inc()
        return error_response(ApiError(400, message, param=param, code=first.get("type")))

    @app.exception_handler(StarletteHTTPException)
    async def http_error(request: Request, exc: StarletteHTTPException) -> JSONResponse:
        codes = {404: "not_found", 405: "method_not_allowed", 408: "timeout", 413: "request_too_large"}
        return error_response(
            ApiError(
                exc.status_code,
                str(exc.detail),
                code=codes.get(exc.status_code),
                headers=dict(exc.headers or {}),
            )
        )

    @app.exception_handler(ClientDisconnected)
    async def client_disconnected(request: Request, exc: ClientDisconnected) -> Response:
        metrics.rejections.labels(request.url.path, "client_disconnected").inc()
        return Response(status_code=499)


def install_routes(app: FastAPI) -> None:
    @app.get("/healthz", tags=["health"])
    async def healthz() -> dict[str, str]:
        """The process is alive."""
        return {"status": "ok"}

    @app.get("/readyz", tags=["health"], responses={503: {"model": ErrorResponse}})
    async def readyz(request: Request) -> Response:
        """The models are loaded and requests will be served."""
        state = service(request)
        if not state.ready:
            return error_response(not_ready(state))
        return JSONResponse({"status": "ready", "models": [card.id for card in model_cards(state)]})

    @app.get("/metrics", tags=["health"], response_class=Response)
    async def metrics(request: Request) -> Response:
        """Prometheus metrics."""
        return Response(generate_latest(service(request).metrics.registry), media_type=CONTENT_TYPE_LATEST)

    @app.get("/v1/models", response_model=ModelList, tags=["openai"], responses={401: ERROR_RESPONSES[401]})
    async def list_models(request: Request) -> ModelList:
        """The models this service serves."""
        return ModelList(data=model_cards(service(request)))

    @app.post("/v1/embeddings", response_model=EmbeddingResponse, responses=ERROR_RESPONSES, tags=["openai"])
    async def create_embeddings(body: EmbeddingRequest, request: Request) -> Response:
        """Embed one string or a list of strings (OpenAI's embeddings API)."""
        state = service(request)
        deadline = getattr(request.state, DEADLINE, None)
        if deadline is None:  # the service was still loading when the request arrived
            deadline = asyncio.get_running_loop().time() + state.settings.request_timeout_s
        try:
            payload = await embed(state, body, request, deadline=deadline)
        except ApiError as exc:
            state.metrics.rejections.labels("/v1/embeddings", exc.code or str(exc.status_code)).inc()
            raise
        return Response(json.dumps(payload, separators=(",", ":")), media_type="application/json")

    @app.post("/v1/chat/completions", responses=ERROR_RESPONSES, tags=["openai"])
    async def create_chat_completion(body: ChatCompletionRequest, request: Request) -> Response:
        """Chat completions (OpenAI's API); `stream: true` answers server-sent events."""
        state = service(request)
        if not state.ready or state.chat_gate is None:
            raise not_ready(state)
        try:
            return await chat.complete(
                body,
                request,
                engine=state.chat_engine,
                gate=state.chat_gate,
                metrics=state.metrics,
                timeout_s=state.settings.chat_timeout_s,
            )
        except ApiError as exc:
            state.metrics.rejections.labels("/v1/chat/completions", exc.code or str(exc.status_code)).inc()
            raise


def model_not_ready(message: str) -> ApiError:
    """503 with Retry-After: a model is loading or failed to load."""
    return ApiError(
        503, message, error_type="service_unavailable", code="not_ready", headers={"Retry-After": "5"}
    )


def not_ready(state: ServiceState) -> ApiError:
    return model_not_ready(
        f"The models failed to load: {state.load_error}"
        if state.load_error
        else f"The models are loading: now {state.loading}."
    )


def embedding_model_ids(state: ServiceState) -> list[str]:
    return [state.settings.embedding_model_id, *retriever_ids(state.settings)]


def model_cards(state: ServiceState) -> list[ModelCard]:
    cards = [ModelCard(id=state.settings.embedding_model_id, created=state.started_at)]
    if state.chat_engine is not None:
        max_active = state.chat_gate.max_active if state.chat_gate is not None else None
        cards.append(
            ModelCard(
                id=state.chat_engine.model_name, created=state.started_at, kind="chat", max_active=max_active
            )
        )
    cards.extend(
        ModelCard(id=model_id, created=state.started_at) for model_id in retriever_ids(state.settings)
    )
    return cards


async def embed(
    state: ServiceState, body: EmbeddingRequest, request: Request, *, deadline: float
) -> dict[str, Any]:
    """Validate, admit and batch-encode one embeddings request; the OpenAI response as a dict."""
    loaded = await embedder_for(state, body.model, deadline=deadline)
    embedder, batcher, settings, model_id = loaded.model, loaded.batcher, state.settings, body.model
    reservation: Reservation | None = getattr(request.state, RESERVATION, None)
    if reservation is not None and not reservation.holds(batcher):
        reservation.release()  # held in the default model's queue; this request goes to another
    texts = [body.input] if isinstance(body.input, str) else body.input
    most = min(settings.embedding_max_inputs, batcher.max_queue)
    if not texts:
        raise ApiError(400, "input must not be empty.", param="input", code="empty_input")
    if len(texts) > most:
        raise ApiError(400, f"input holds {len(texts)} strings; at most {most} are allowed.", param="input")
    if body.dimensions is not None and body.dimensions != embedder.dimensions:
        raise ApiError(
            400,
            f"{model_id} embeds in {embedder.dimensions} dimensions only.",
            param="dimensions",
        )
    for index, text in enumerate(texts):
        if not text:
            raise ApiError(400, f"input[{index}] is an empty string.", param="input", code="empty_input")
    within_s = QUEUE_SHARE_OF_DEADLINE * (deadline - asyncio.get_running_loop().time())
    if not batcher.has_room_for(len(texts), reservation, within_s=within_s):
        # Refuse before tokenising: overload must cost as little as possible.
        raise queue_full(batcher.retry_after(len(texts)))
    counts = embedder.count_tokens(texts)
    if not body.truncate:
        for index, count in enumerate(counts):
            if count > embedder.max_tokens:
                raise ApiError(
                    400,
                    f"input[{index}] is {count} tokens; {model_id} takes at most "
                    f'{embedder.max_tokens}. Shorten it, or send "truncate": true to cut it.',
                    param="input",
                    code="context_length_exceeded",
                )
    counts = [min(count, embedder.max_tokens) for count in counts]
    try:
        vectors = await run_for_client(
            request,
            batcher.embed(texts, counts, within_s=within_s, reservation=reservation),
            deadline=deadline,
        )
    except QueueFull as exc:
        raise queue_full(exc.retry_after) from None
    except EncoderUnavailable as exc:
        raise ApiError(
            503,
            f"{exc} Retry the request.",
            error_type="service_unavailable",
            code="encoder_unavailable",
            headers={"Retry-After": "5"},
        ) from None
    encode = vector_as_base64 if body.encoding_format == "base64" else vector_as_floats
    total = sum(counts)
    return {
        "object": "list",
        "data": [{"object": "embedding", "index": i, "embedding": encode(v)} for i, v in enumerate(vectors)],
        "model": model_id,
        "usage": {"prompt_tokens": total, "total_tokens": total},
    }


def queue_full(retry_after: int) -> ApiError:
    return ApiError(
        429,
        "The service is at capacity; retry after the Retry-After seconds.",
        error_type="rate_limit_error",
        code="queue_full",
        headers={"Retry-After": str(retry_after)},
    )


def vector_as_floats(vector: np.ndarray) -> list[float]:
    floats: list[float] = vector.tolist()
    return floats


def vector_as_base64(vector: np.ndarray) -> str:
    """OpenAI's `encoding_format: base64`: the little-endian float32 bytes."""
    return base64.b64encode(vector.astype("<f4").tobytes()).decode("ascii")


# What `uvicorn inference.app:app` serves; settings come from the environment, read once here.
app = create_app()
