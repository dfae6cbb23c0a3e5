"""A connection the inference API drops before answering is tried once more, not reported at once.

Under `make bench-web`'s 10,000 askers about one answer in 10,000 failed with "cannot be reached:
ReadError": the connection broke after the request went out and before any answer came back, and with one
replica nothing else was tried. The server here is a real socket server that resets (RST) the connection
of the requests it is told to drop, after reading them whole, and answers the others as the API does.
"""

from __future__ import annotations

import asyncio
import json
import socket
import socketserver
import struct
import threading
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

import pytest

from ops import inference


@dataclass
class _Script:
    """Which requests (1-based, in arrival order) are dropped, and what arrived."""

    drop: set[int] = field(default_factory=set)
    seen: list[str] = field(default_factory=list)
    lock: threading.Lock = field(default_factory=threading.Lock)


def _read_request(stream: Any) -> str | None:
    line = stream.readline()
    if not line:
        return None
    path = line.decode().split()[1]
    length = 0
    while (header := stream.readline()) not in (b"\r\n", b""):
        name, _, value = header.decode().partition(":")
        if name.strip().lower() == "content-length":
            length = int(value)
    stream.read(length)
    return path


def _response(path: str) -> bytes:
    if path == "/v1/embeddings":
        body = json.dumps({"data": [{"index": 0, "embedding": [0.5] * 4}]}).encode()
        head = "HTTP/1.1 200 OK\r\nContent-Type: application/json\r\n"
        return f"{head}Content-Length: {len(body)}\r\n\r\n".encode() + body
    chunk = {"choices": [{"delta": {"content": "An answer."}}]}
    body = f"data: {json.dumps(chunk)}\n\ndata: [DONE]\n\n".encode()
    head = "HTTP/1.1 200 OK\r\nContent-Type: text/event-stream\r\n"
    return f"{head}Content-Length: {len(body)}\r\n\r\n".encode() + body


def _handler(script: _Script) -> type[socketserver.StreamRequestHandler]:
    class Handler(socketserver.StreamRequestHandler):
        def handle(self) -> None:
            while (path := _read_request(self.rfile)) is not None:
                with script.lock:
                    script.seen.append(path)
                    dropped = len(script.seen) in script.drop
                if dropped:  # a reset, as a peer that gave up on the connection sends
                    self.connection.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
                    return
                self.wfile.write(_response(path))
                self.wfile.flush()

    return Handler


@pytest.fixture
def dropping_server(settings: Any) -> Iterator[_Script]:
    script = _Script()
    server = socketserver.ThreadingTCPServer(("127.0.0.1", 0), _handler(script))
    server.daemon_threads = True
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    settings.INFERENCE_URL = f"http://127.0.0.1:{server.server_address[1]}"
    settings.INFERENCE_CHAT_MODEL = "a-model"
    inference.clients_reset()
    yield script
    inference.clients_reset()
    server.shutdown()
    server.server_close()


def test_a_dropped_embedding_request_is_sent_once_more(dropping_server: _Script) -> None:
    dropping_server.drop = {2}  # the second request, on the connection the first one left open
    assert inference.embed(["first"]) == [[0.5] * 4]
    assert inference.embed(["second"]) == [[0.5] * 4]
    assert len(dropping_server.seen) == 3


def _chat() -> str:
    return asyncio.run(inference.chat_complete(messages=[{"role": "user", "content": "Hello?"}]))


def test_a_dropped_request_is_sent_once_more_without_blocking(dropping_server: _Script) -> None:
    dropping_server.drop = {1}
    assert asyncio.run(inference.aembed(["a question"])) == [[0.5] * 4]
    assert len(dropping_server.seen) == 2


def test_a_dropped_chat_is_sent_once_more_before_any_answer(dropping_server: _Script) -> None:
    dropping_server.drop = {1}
    assert _chat() == "An answer."
    assert dropping_server.seen == ["/v1/chat/completions", "/v1/chat/completions"]


def test_a_replica_that_keeps_dropping_is_reported_after_one_more_try(dropping_server: _Script) -> None:
    dropping_server.drop = {1, 2, 3, 4}
    with pytest.raises(inference.InferenceUnavailable, match="cannot be reached"):
        asyncio.run(inference.aembed(["a question"]))
    with pytest.raises(inference.InferenceUnavailable, match="cannot be reached"):
        _chat()
    assert len(dropping_server.seen) == 4  # two tries each, never a third
