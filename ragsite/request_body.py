"""Read each request's body, bounded in time and size, before it may take an admission slot.

Django's ASGI handler reads the whole body before the view runs, with no timeout; behind the admission gate
(ops.admission) a client that sends its headers and then trickles its body would hold one of the few run
slots for as long as it liked, and a handful of them would close the site (or its probes' lane). Here the
body is read first, buffered (in memory up to `IN_MEMORY_BYTES`, past it in a temporary file), and replayed
to the app; a body that has not arrived by its deadline is answered 408, one past its size 413, and neither
ever reaches the gate. The deadline is mod_reqtimeout's: `timeout_s` from the request's arrival, extended by
one second for every `min_rate` bytes received, so that a large upload over a slow line still arrives while
a trickle does not.
"""

from __future__ import annotations

import asyncio
import tempfile
from collections.abc import Awaitable, Callable
from typing import IO, Any

Scope = dict[str, Any]
Message = dict[str, Any]
Receive = Callable[[], Awaitable[Any]]
Send = Callable[[Any], Awaitable[None]]
ASGIApp = Callable[[Any, Any, Any], Awaitable[None]]

# A body up to this size stays in memory while it waits; larger ones go to a temporary file.
IN_MEMORY_BYTES = 64 * 1024
# Replayed to the app in parts of this size.
REPLAY_CHUNK_BYTES = 1024 * 1024


class RequestBodyLimit:
    """Buffer each HTTP request's body within a deadline (408) and a size (413), then call the app."""

    def __init__(
        self, app: ASGIApp, *, timeout_s: float, min_rate: float, max_bytes: int, max_multipart_bytes: int
    ) -> None:
        self.app = app
        self.timeout_s = timeout_s
        self.min_rate = min_rate
        self.max_bytes = max_bytes
        self.max_multipart_bytes = max_multipart_bytes

    @classmethod
    def from_settings(cls, app: ASGIApp) -> RequestBodyLimit:
        from django.conf import settings

        upload_bytes = settings.RAGSITE_MAX_UPLOAD_REQUEST_BYTES
        return cls(
            app,
            timeout_s=settings.RAGSITE_WEB_BODY_TIMEOUT_S,
            min_rate=settings.RAGSITE_WEB_BODY_MIN_RATE,
            max_bytes=settings.DATA_UPLOAD_MAX_MEMORY_SIZE or upload_bytes,
            max_multipart_bytes=upload_bytes,
        )

    def _limit(self, scope: Scope) -> int:
        """Forms with files may carry uploads; every other body is held to Django's in-memory data limit."""
        content_type = _header(scope, b"content-type") or b""
        if content_type.lower().startswith(b"multipart/form-data"):
            return self.max_multipart_bytes
        return self.max_bytes

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        limit = self._limit(scope)
        declared = _content_length(scope)
        if declared is not None and declared > limit:
            await _refuse(send, 413, f"The request body is larger than {limit} bytes.\n")
            return
        loop = asyncio.get_running_loop()
        arrived = loop.time()
        # Up to IN_MEMORY_BYTES the parts are kept as they came (a question's form is one small part);
        # past it, in a temporary file. Thousands of requests may wait at the door with their bodies.
        parts: list[bytes] = []
        spool: IO[bytes] | None = None
        try:
            size = 0
            more = True
            while more:
                deadline = arrived + self.timeout_s + (size / self.min_rate if self.min_rate > 0 else 0)
                try:
                    async with asyncio.timeout_at(deadline):
                        message = await receive()
                except TimeoutError:
                    await _refuse(
                        send, 408, f"The request body did not arrive within {self.timeout_s:g} s.\n"
                    )
                    return
                if message["type"] != "http.request":  # the client left before its body was in
                    return
                part = message.get("body", b"")
                size += len(part)
                if size > limit:
                    await _refuse(send, 413, f"The request body is larger than {limit} bytes.\n")
                    return
                if spool is None and size > IN_MEMORY_BYTES:
                    spool = tempfile.SpooledTemporaryFile(max_size=IN_MEMORY_BYTES)  # noqa: SIM115 (closed below)
                    spool.writelines(parts)
                    parts.clear()
                if spool is None:
                    parts.append(part)
                else:
                    spool.write(part)
                more = bool(message.get("more_body", False))
            body: bytes | IO[bytes]
            if spool is None:
                body = parts[0] if len(parts) == 1 else b"".join(parts)
            else:
                spool.seek(0)
                body = spool
            parts.clear()
            await self.app(scope, _Replay(body, size, receive), send)
        finally:
            if spool is not None:
                spool.close()


class _Replay:
    """A receive that gives the buffered body, then whatever the client sends next (its disconnect).

    A class with slots rather than a closure: one is held by every request waiting at the door.
    """

    __slots__ = ("_body", "_left", "_receive")

    def __init__(self, body: bytes | IO[bytes], size: int, receive: Receive) -> None:
        self._body: bytes | IO[bytes] | None = body
        self._left = size
        self._receive = receive

    async def __call__(self) -> Message:
        body = self._body
        if body is None:
            return await self._receive()
        if isinstance(body, bytes):
            part, self._body = body[:REPLAY_CHUNK_BYTES], body[REPLAY_CHUNK_BYTES:]
        else:
            part = body.read(REPLAY_CHUNK_BYTES)
        self._left -= len(part)
        done = self._left <= 0
        if done:
            self._body = None
        return {"type": "http.request", "body": part, "more_body": not done}


def _header(scope: Scope, name: bytes) -> bytes | None:
    for key, value in scope.get("headers", ()):
        if key.lower() == name:
            return bytes(value)
    return None


def _content_length(scope: Scope) -> int | None:
    value = _header(scope, b"content-length")
    return int(value) if value is not None and value.strip().isdigit() else None


async def _refuse(send: Send, status: int, text: str) -> None:
    body = text.encode()
    headers: list[tuple[bytes, Any]] = [
        (b"content-type", b"text/plain; charset=utf-8"),
        (b"content-length", str(len(body)).encode()),
        # The rest of the body is never read, so the connection cannot carry another request.
        (b"connection", b"close"),
    ]
    await send({"type": "http.response.start", "status": status, "headers": headers})
    await send({"type": "http.response.body", "body": body})
