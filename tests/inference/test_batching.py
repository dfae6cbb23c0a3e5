"""Dynamic micro-batching and overload, against the real service process and model."""

from __future__ import annotations

import asyncio
import json

import httpx

from tests.inference.conftest import StartService
from tests.inference.helpers import MODEL, assert_openai_error, max_abs_difference, metric

TEXTS = [f"document {i}: " + "retrieval augmented generation " * (i % 7 + 1) for i in range(24)]


async def post_all(url: str, bodies: list[dict[str, object]]) -> list[httpx.Response]:
    limits = httpx.Limits(max_connections=len(bodies))
    async with httpx.AsyncClient(base_url=url, timeout=120, limits=limits) as http:
        return await asyncio.gather(*(http.post("/v1/embeddings", json=body) for body in bodies))


def test_concurrent_requests_are_encoded_together_and_match_unbatched_encoding(
    start_service: StartService,
) -> None:
    service = start_service(INFERENCE_EMBEDDING_MAX_BATCH_SIZE="32", INFERENCE_EMBEDDING_MAX_WAIT_MS="200")
    batched = asyncio.run(post_all(service.url, [{"model": MODEL, "input": text} for text in TEXTS]))
    assert [response.status_code for response in batched] == [200] * len(TEXTS)
    batches = metric(service.url, "inference_embedding_batch_size_count")
    assert metric(service.url, "inference_embedding_batch_size_sum") == len(TEXTS)
    assert batches < len(TEXTS), "concurrent requests should share model calls"

    with httpx.Client(base_url=service.url, timeout=60) as http:
        for text, response in zip(TEXTS, batched, strict=True):
            alone = http.post("/v1/embeddings", json={"model": MODEL, "input": text}).json()
            assert (
                max_abs_difference(alone["data"][0]["embedding"], response.json()["data"][0]["embedding"])
                < 1e-5
            )
    # Each request above ran alone: the batch count grew by one per request.
    assert metric(service.url, "inference_embedding_batch_size_count") == batches + len(TEXTS)


def test_a_full_queue_answers_429_with_retry_after_at_once_then_recovers(start_service: StartService) -> None:
    # Two inputs fit; the batch waits a second for more, so everything else sent meanwhile finds it full.
    service = start_service(
        INFERENCE_EMBEDDING_MAX_QUEUE="2",
        INFERENCE_EMBEDDING_MAX_BATCH_SIZE="8",
        INFERENCE_EMBEDDING_MAX_WAIT_MS="1000",
    )
    responses = asyncio.run(post_all(service.url, [{"model": MODEL, "input": text} for text in TEXTS]))
    statuses = [response.status_code for response in responses]
    assert set(statuses) == {200, 429}
    assert statuses.count(200) >= 2
    for response in responses:
        if response.status_code == 429:
            error = assert_openai_error(response, 429)
            assert error["code"] == "queue_full"
            assert int(response.headers["Retry-After"]) >= 1
    rejected = metric(
        service.url, 'inference_rejections_total{endpoint="/v1/embeddings",reason="queue_full"}'
    )
    assert rejected == statuses.count(429)

    again = asyncio.run(post_all(service.url, [{"model": MODEL, "input": text} for text in TEXTS[:2]]))
    assert [response.status_code for response in again] == [200, 200]


async def start_request(
    port: int, body: dict[str, object]
) -> tuple[asyncio.StreamReader, asyncio.StreamWriter, bytes]:
    """Send a request's headers and the first half of its body; the rest of the body is returned."""
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    payload = json.dumps(body).encode()
    head = (
        f"POST /v1/embeddings HTTP/1.1\r\nhost: 127.0.0.1\r\ncontent-type: application/json\r\n"
        f"content-length: {len(payload)}\r\n\r\n"
    )
    half = len(payload) // 2
    writer.write(head.encode() + payload[:half])
    await writer.drain()
    return reader, writer, payload[half:]


async def open_request(port: int, body: dict[str, object]) -> asyncio.StreamWriter:
    """Send a whole request on a raw connection and return without reading the answer."""
    _, writer, rest = await start_request(port, body)
    writer.write(rest)
    await writer.drain()
    return writer


async def wait_for_depth(url: str, depth: float) -> None:
    async with httpx.AsyncClient(base_url=url, timeout=10) as http:
        for _ in range(200):
            text = (await http.get("/metrics")).text
            if f'inference_queue_depth{{queue="embeddings"}} {depth}' in text:
                return
            await asyncio.sleep(0.05)
    raise AssertionError(f"queue depth never reached {depth}")


def test_a_client_that_disconnects_frees_its_queue_slot(start_service: StartService) -> None:
    # Two slots and a minute-long batch window: queued inputs stay queued until their clients leave.
    service = start_service(
        INFERENCE_EMBEDDING_MAX_QUEUE="2",
        INFERENCE_EMBEDDING_MAX_BATCH_SIZE="4",
        INFERENCE_EMBEDDING_MAX_WAIT_MS="60000",
    )
    disconnected = 'inference_rejections_total{endpoint="/v1/embeddings",reason="client_disconnected"}'

    async def fill_queue() -> list[asyncio.StreamWriter]:
        writers = [await open_request(service.port, {"model": MODEL, "input": t}) for t in TEXTS[:2]]
        await wait_for_depth(service.url, 2.0)
        return writers

    async def leave(writers: list[asyncio.StreamWriter]) -> None:
        for writer in writers:
            writer.close()
            await writer.wait_closed()
        await wait_for_depth(service.url, 0.0)

    async def scenario() -> None:
        writers = await fill_queue()
        [full] = await post_all(service.url, [{"model": MODEL, "input": "no room"}])
        assert_openai_error(full, 429)
        await leave(writers)
        assert metric(service.url, disconnected) == 2
        # The freed slots admit new work again.
        await leave(await fill_queue())

    asyncio.run(asyncio.wait_for(scenario(), timeout=120))
    assert metric(service.url, disconnected) == 4


async def read_answer(reader: asyncio.StreamReader) -> tuple[int, dict[str, object]]:
    """The status and JSON body of one HTTP/1.1 answer with a Content-Length."""
    head = (await reader.readuntil(b"\r\n\r\n")).decode("latin-1").split("\r\n")
    status = int(head[0].split()[1])
    headers = dict(line.split(": ", 1) for line in head[1:] if line)
    length = int(next(value for name, value in headers.items() if name.lower() == "content-length"))
    return status, json.loads(await reader.readexactly(length))


def test_a_request_holds_queue_room_from_its_arrival_and_its_body_has_a_deadline(
    start_service: StartService,
) -> None:
    """A burst is refused before its bodies are read, and a stalled body cannot hold the room for long."""
    service = start_service(
        INFERENCE_EMBEDDING_MAX_QUEUE="2",
        INFERENCE_EMBEDDING_MAX_WAIT_MS="10",
        INFERENCE_REQUEST_TIMEOUT_S="4",
    )

    async def scenario() -> None:
        # Two requests whose bodies are still arriving hold the queue's two places.
        started = [await start_request(service.port, {"model": MODEL, "input": t}) for t in TEXTS[:2]]
        await wait_for_depth(service.url, 2.0)
        [full] = await post_all(service.url, [{"model": MODEL, "input": "no room"}])
        assert assert_openai_error(full, 429)["code"] == "queue_full"
        # Their bodies complete: both are answered.
        for _, writer, rest in started:
            writer.write(rest)
            await writer.drain()
        for reader, writer, _ in started:
            status, body = await read_answer(reader)
            assert status == 200 and len(body["data"][0]["embedding"]) == 384  # type: ignore[index]
            writer.close()
        await wait_for_depth(service.url, 0.0)
        # A body that stops arriving is answered 408 at the request's deadline, and its room freed.
        reader, writer, _ = await start_request(service.port, {"model": MODEL, "input": "stalled"})
        await wait_for_depth(service.url, 1.0)
        status, body = await read_answer(reader)
        assert status == 408 and body["error"]["code"] == "timeout"  # type: ignore[index]
        writer.close()
        await wait_for_depth(service.url, 0.0)
        [served] = await post_all(service.url, [{"model": MODEL, "input": "room again"}])
        assert served.status_code == 200

    asyncio.run(asyncio.wait_for(scenario(), timeout=120))
