"""A scripted stand-in for the inference API, for tests whose subject is how we react to it.

It speaks the same OpenAI-style protocol as `inference/app.py` (embeddings, streamed chat, 429 with
Retry-After) so the real client in `ops/inference.py` is exercised unchanged. Embeddings are hashed
bags of words: texts sharing words are close, texts sharing none are orthogonal.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import math
import re
import threading
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import uvicorn

from ingest.models import EMBEDDING_DIMENSIONS

EMBEDDING_MODEL = "all-MiniLM-L6-v2"
CHAT_MODEL = "fake-chat"


def embed_text(text: str) -> list[float]:
    vector = [0.0] * EMBEDDING_DIMENSIONS
    for word in re.findall(r"\w+", text.lower()):
        if len(word) < 3:
            continue
        digest = hashlib.blake2b(word.encode(), digest_size=4).digest()
        vector[int.from_bytes(digest, "big") % EMBEDDING_DIMENSIONS] += 1.0
    norm = math.sqrt(sum(v * v for v in vector))
    if not norm:
        vector[0] = 1.0
        return vector
    return [v / norm for v in vector]


@dataclass(frozen=True)
class Reply:
    """Stream these deltas (a pause between them lets a test watch them arrive)."""

    deltas: Sequence[str]
    pause_s: float = 0.0


@dataclass(frozen=True)
class Busy:
    retry_after: int = 0


@dataclass(frozen=True)
class Fail:
    status: int = 500


Action = Reply | Busy | Fail


@dataclass
class FakeInference:
    port: int
    # Chat requests take the next action; when none is scripted they get `default_reply`.
    chat_script: list[Action] = field(default_factory=list)
    embedding_script: list[Busy | Fail] = field(default_factory=list)
    default_reply: Reply = field(default_factory=lambda: Reply(["I do not know."]))
    # What the chat model's card says it runs at once (None: the card does not say).
    chat_max_active: int | None = None
    chat_requests: list[dict[str, Any]] = field(default_factory=list)
    embedding_inputs: list[str] = field(default_factory=list)
    _server: uvicorn.Server | None = field(default=None, repr=False)
    _thread: threading.Thread | None = field(default=None, repr=False)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def reset(self) -> None:
        self.chat_script.clear()
        self.embedding_script.clear()
        self.chat_requests.clear()
        self.embedding_inputs.clear()
        self.default_reply = Reply(["I do not know."])
        self.chat_max_active = None

    @property
    def answer_requests(self) -> list[dict[str, Any]]:
        """Chat requests that asked for an answer (not a follow-up rewrite)."""
        return [body for body in self.chat_requests if "Passages:" in body["messages"][-1]["content"]]

    def start(self) -> None:
        config = uvicorn.Config(self, host="127.0.0.1", port=self.port, log_level="warning", lifespan="off")
        self._server = uvicorn.Server(config)
        self._thread = threading.Thread(target=self._server.run, daemon=True)
        self._thread.start()
        deadline = time.monotonic() + 30
        while not self._server.started:
            if time.monotonic() > deadline or not self._thread.is_alive():
                raise RuntimeError("the fake inference API did not start")
            time.sleep(0.02)

    def stop(self) -> None:
        if self._server is not None and self._thread is not None:
            self._server.should_exit = True
            self._thread.join(timeout=10)

    async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        assert scope["type"] == "http"
        body = b""
        while True:
            message = await receive()
            body += message.get("body", b"")
            if not message.get("more_body"):
                break
        path, method = scope["path"], scope["method"]
        if method == "GET" and path == "/v1/models":
            chat: dict[str, Any] = {"id": CHAT_MODEL}
            if self.chat_max_active is not None:
                chat.update(kind="chat", max_active=self.chat_max_active)
            await _json(send, 200, {"object": "list", "data": [{"id": EMBEDDING_MODEL}, chat]})
        elif method == "GET" and path == "/readyz":
            await _json(send, 200, {"status": "ready"})
        elif method == "POST" and path == "/v1/embeddings":
            await self._embeddings(send, json.loads(body))
        elif method == "POST" and path == "/v1/chat/completions":
            await self._chat(send, json.loads(body))
        else:
            await _json(send, 404, {"error": {"message": "not found"}})

    async def _embeddings(self, send: Any, request: dict[str, Any]) -> None:
        action = self.embedding_script.pop(0) if self.embedding_script else None
        if isinstance(action, Busy):
            await _busy(send, action)
            return
        if isinstance(action, Fail):
            await _json(send, action.status, {"error": {"message": "scripted failure"}})
            return
        texts = request["input"] if isinstance(request["input"], list) else [request["input"]]
        self.embedding_inputs.extend(texts)
        data = [{"object": "embedding", "index": i, "embedding": embed_text(t)} for i, t in enumerate(texts)]
        await _json(send, 200, {"object": "list", "data": data, "model": EMBEDDING_MODEL})

    async def _chat(self, send: Any, request: dict[str, Any]) -> None:
        self.chat_requests.append(request)
        action = self.chat_script.pop(0) if self.chat_script else self.default_reply
        if isinstance(action, Busy):
            await _busy(send, action)
            return
        if isinstance(action, Fail):
            await _json(send, action.status, {"error": {"message": "scripted failure"}})
            return
        await send(
            {
                "type": "http.response.start",
                "status": 200,
                "headers": [(b"content-type", b"text/event-stream"), (b"cache-control", b"no-cache")],
            }
        )
        for delta in action.deltas:
            chunk = {
                "object": "chat.completion.chunk",
                "choices": [{"index": 0, "delta": {"content": delta}}],
            }
            await send(
                {
                    "type": "http.response.body",
                    "body": f"data: {json.dumps(chunk)}\n\n".encode(),
                    "more_body": True,
                }
            )
            if action.pause_s:
                await asyncio.sleep(action.pause_s)
        await send({"type": "http.response.body", "body": b"data: [DONE]\n\n", "more_body": False})


async def _json(
    send: Any, status: int, payload: dict[str, Any], headers: Sequence[tuple[bytes, bytes]] = ()
) -> None:
    body = json.dumps(payload).encode()
    await send(
        {
            "type": "http.response.start",
            "status": status,
            "headers": [(b"content-type", b"application/json"), *headers],
        }
    )
    await send({"type": "http.response.body", "body": body})


async def _busy(send: Any, action: Busy) -> None:
    await _json(
        send,
        429,
        {"error": {"message": "The chat queue is full", "type": "rate_limit_error", "code": "queue_full"}},
        headers=[(b"retry-after", str(action.retry_after).encode())],
    )
