"""Request bodies are read within a deadline and a size before a request takes an admission slot."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from ragsite.request_body import Message, Receive, RequestBodyLimit, Scope, Send
from tests.processes import WebProcess, start_web

BODY_TIMEOUT_S = 2.0


@pytest.fixture(scope="module")
def web(test_database_name: str, logs_dir: Path) -> Iterator[WebProcess]:
    """The web app under uvicorn with two run slots, no queue, and a short body deadline."""
    web = start_web(
        database_name=test_database_name,
        log_dir=logs_dir,
        inference_url="http://127.0.0.1:9",
        extra_env={
            "RAGSITE_WEB_MAX_ACTIVE": "2",
            "RAGSITE_WEB_MAX_WAITING": "0",
            "RAGSITE_WEB_MAX_WAIT_S": "1",
            "RAGSITE_WEB_BODY_TIMEOUT_S": str(BODY_TIMEOUT_S),
        },
    )
    yield web
    web.stop()


async def send_head(
    port: int, path: str, *, length: int, content_type: str = "application/x-www-form-urlencoded"
) -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
    """Open a connection and send a POST's headers and one byte of its `length`-byte body."""
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    head = (
        f"POST {path} HTTP/1.1\r\nhost: 127.0.0.1\r\ncontent-type: {content_type}\r\n"
        f"content-length: {length}\r\n\r\n"
    )
    writer.write(head.encode() + b"a")
    await writer.drain()
    return reader, writer


async def trickle(writer: asyncio.StreamWriter, *, every_s: float = 0.2) -> None:
    """Send one byte at a time, slowly, until cancelled or the server closes the connection."""
    try:
        while True:
            await asyncio.sleep(every_s)
            writer.write(b"a")
            await writer.drain()
    except (ConnectionError, OSError):
        return


async def status_of(reader: asyncio.StreamReader, *, timeout: float) -> int | None:
    """The status of the answer on `reader`, or None if none began within `timeout`."""
    try:
        head = await asyncio.wait_for(reader.readuntil(b"\r\n"), timeout)
    except TimeoutError:
        return None
    return int(head.split()[1])


async def get_status(port: int, path: str) -> int | None:
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    writer.write(f"GET {path} HTTP/1.1\r\nhost: 127.0.0.1\r\nconnection: close\r\n\r\n".encode())
    await writer.drain()
    try:
        return await status_of(reader, timeout=10)
    finally:
        writer.close()


@pytest.mark.parametrize("path", ["/accounts/login/", "/healthz"])
def test_slow_bodies_take_no_slot_and_are_answered_408_at_their_deadline(web: WebProcess, path: str) -> None:
    """Bodies trickling in on every slot of a lane leave it free; each is cut off at the body deadline."""

    async def scenario() -> tuple[list[int | None], int | None, list[float]]:
        loop = asyncio.get_running_loop()
        started = loop.time()
        slow = [await send_head(web.port, path, length=10_000) for _ in range(3)]
        tricklers = [asyncio.create_task(trickle(writer)) for _reader, writer in slow]
        await asyncio.sleep(0.5)
        meanwhile = await get_status(web.port, path)
        statuses: list[int | None] = []
        elapsed: list[float] = []
        for reader, _writer in slow:
            statuses.append(await status_of(reader, timeout=BODY_TIMEOUT_S + 10))
            elapsed.append(loop.time() - started)
        for task in tricklers:
            task.cancel()
        for _reader, writer in slow:
            writer.close()
        return statuses, meanwhile, elapsed

    statuses, meanwhile, elapsed = asyncio.run(scenario())
    assert meanwhile == 200
    assert statuses == [408, 408, 408]
    assert all(BODY_TIMEOUT_S - 0.5 < seconds < BODY_TIMEOUT_S + 3 for seconds in elapsed), elapsed


def test_a_body_larger_than_the_limit_is_refused_413_before_it_is_read(web: WebProcess) -> None:
    async def scenario() -> int | None:
        reader, writer = await send_head(web.port, "/accounts/login/", length=50 * 2**20)
        try:
            return await status_of(reader, timeout=5)
        finally:
            writer.close()

    assert asyncio.run(scenario()) == 413


class RecordingApp:
    """An ASGI app that reads the whole body it is given, then one more message, and answers 200."""

    def __init__(self) -> None:
        self.body = b""
        self.after_body: Message | None = None

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        more = True
        while more:
            message = await receive()
            self.body += message.get("body", b"")
            more = message.get("more_body", False)
        self.after_body = await receive()
        await send({"type": "http.response.start", "status": 200, "headers": []})
        await send({"type": "http.response.body", "body": b"ok"})


def call(
    parts: list[bytes], *, headers: list[tuple[bytes, bytes]], pause_s: float = 0, **limits: Any
) -> tuple[int, RecordingApp]:
    """Send `parts` as one request's body through a RequestBodyLimit, `pause_s` apart; its status and app."""
    app = RecordingApp()
    options = {"timeout_s": 5.0, "min_rate": 0, "max_bytes": 2**20, "max_multipart_bytes": 2**24, **limits}
    limit = RequestBodyLimit(app, **options)
    queue = [
        {"type": "http.request", "body": part, "more_body": index < len(parts) - 1}
        for index, part in enumerate(parts)
    ]
    sent: list[Message] = []

    async def receive() -> Message:
        if queue:
            await asyncio.sleep(pause_s)
            return queue.pop(0)
        return {"type": "http.disconnect"}

    async def send(message: Message) -> None:
        sent.append(message)

    asyncio.run(limit({"type": "http", "path": "/", "headers": headers}, receive, send))
    return sent[0]["status"], app


def test_a_body_in_many_parts_is_replayed_whole_then_the_client_disconnect() -> None:
    parts = [bytes([n]) * (100 * 1024) for n in range(30)]  # 3 MB: past the in-memory part, onto disk
    status, app = call(parts, headers=[(b"content-type", b"multipart/form-data; boundary=x")])
    assert status == 200 and app.body == b"".join(parts)
    assert app.after_body == {"type": "http.disconnect"}


def test_a_small_body_in_parts_is_replayed_whole_from_memory() -> None:
    parts = [b"question=", b"how+do+I+", b"reset+my+VPN"]
    status, app = call(parts, headers=[(b"content-type", b"application/x-www-form-urlencoded")])
    assert status == 200 and app.body == b"".join(parts)
    assert app.after_body == {"type": "http.disconnect"}


def test_a_body_that_outgrows_memory_midway_keeps_the_parts_already_in() -> None:
    parts = [b"a" * (40 * 1024), b"b" * (40 * 1024), b"c" * 10]  # past IN_MEMORY_BYTES at the second part
    status, app = call(parts, headers=[])
    assert status == 200 and app.body == b"".join(parts)


def test_an_empty_body_is_replayed_as_one_empty_message() -> None:
    status, app = call([b""], headers=[])
    assert status == 200 and app.body == b"" and app.after_body == {"type": "http.disconnect"}


def test_a_body_without_a_length_is_cut_off_at_the_limit() -> None:
    status, app = call([b"x" * 600, b"x" * 600], headers=[], max_bytes=1000)
    assert status == 413 and app.after_body is None


def test_a_large_body_arriving_at_the_minimum_rate_earns_more_time_than_the_timeout() -> None:
    """mod_reqtimeout's MinRate: each byte received extends the deadline, so slow uploads still arrive."""
    parts = [b"x" * 1000] * 5  # 0.1 s apart: 0.5 s in all, against a 0.25 s timeout
    assert call(parts, headers=[], pause_s=0.1, timeout_s=0.25, min_rate=5000)[0] == 200
    assert call(parts, headers=[], pause_s=0.1, timeout_s=0.25, min_rate=0)[0] == 408
