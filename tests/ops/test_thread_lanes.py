"""ThreadLanes: requests' synchronous work on a fixed set of threads, each request's on one of them."""

from __future__ import annotations

import asyncio
import threading
import time
from typing import Any

from asgiref.sync import sync_to_async
from django.core import signals
from django.core.asgi import get_asgi_application

from ops.thread_lanes import ThreadLanes

Message = dict[str, Any]


async def get(app: Any, path: str) -> int:
    sent: list[Message] = []
    requested = False
    done = asyncio.Event()

    async def receive() -> Message:
        nonlocal requested
        if not requested:
            requested = True
            return {"type": "http.request", "body": b"", "more_body": False}
        await done.wait()
        return {"type": "http.disconnect"}

    async def send(message: Message) -> None:
        sent.append(message)
        if message["type"] == "http.response.body" and not message.get("more_body"):
            done.set()

    scope = {
        "type": "http",
        "asgi": {"version": "3.0"},
        "http_version": "1.1",
        "method": "GET",
        "scheme": "http",
        "path": path,
        "raw_path": path.encode(),
        "query_string": b"",
        "root_path": "",
        "headers": [(b"host", b"testserver")],
        "client": ("127.0.0.1", 50000),
        "server": ("127.0.0.1", 8000),
    }
    await app(scope, receive, send)
    return int(sent[0]["status"])


def test_many_requests_at_once_share_the_lanes_threads_instead_of_one_thread_each() -> None:
    """Django's handler under the lanes: 40 requests in flight together use at most the lanes' 4 threads."""
    threads: dict[str, set[str]] = {"started": set(), "finished": set()}

    def started(**kwargs: Any) -> None:
        threads["started"].add(threading.current_thread().name)
        time.sleep(0.02)  # the requests overlap, as a burst's do

    def finished(**kwargs: Any) -> None:
        threads["finished"].add(threading.current_thread().name)

    signals.request_started.connect(started)
    signals.request_finished.connect(finished)
    try:
        app = ThreadLanes(get_asgi_application(), threads=4)

        async def burst() -> list[int]:
            return await asyncio.gather(*(get(app, f"/no-such-page-{n}/") for n in range(40)))

        statuses = asyncio.run(burst())
    finally:
        signals.request_started.disconnect(started)
        signals.request_finished.disconnect(finished)

    assert statuses == [404] * 40
    assert 1 <= len(threads["started"]) <= 4
    assert all(name.startswith("web-lane-") for name in threads["started"] | threads["finished"])


def test_a_requests_sync_steps_run_on_one_thread_in_order() -> None:
    seen: list[tuple[str, int]] = []

    async def app(scope: Any, receive: Any, send: Any) -> None:
        for _step in range(3):
            seen.append((scope["path"], await sync_to_async(threading.get_ident)()))
            await asyncio.sleep(0)
        await send({"type": "http.response.start", "status": 200, "headers": []})
        await send({"type": "http.response.body", "body": b""})

    lanes = ThreadLanes(app, threads=2)

    async def three() -> list[int]:
        return list(await asyncio.gather(get(lanes, "/a/"), get(lanes, "/b/"), get(lanes, "/c/")))

    assert asyncio.run(three()) == [200, 200, 200]
    for path in ("/a/", "/b/", "/c/"):
        assert len({ident for seen_path, ident in seen if seen_path == path}) == 1
    assert len({ident for _path, ident in seen}) == 2


def test_a_task_a_request_started_may_outlive_it_and_still_run_sync_work() -> None:
    """A shared answer's task keeps going for its other askers after its first asker's request has ended."""
    results: list[str] = []

    async def app(scope: Any, receive: Any, send: Any) -> None:
        async def later() -> None:
            await asyncio.sleep(0.05)
            results.append(await sync_to_async(lambda: threading.current_thread().name)())

        app.task = asyncio.create_task(later())  # type: ignore[attr-defined]
        await send({"type": "http.response.start", "status": 200, "headers": []})
        await send({"type": "http.response.body", "body": b""})

    lanes = ThreadLanes(app, threads=1)

    async def request_then_task() -> int:
        status = await get(lanes, "/")
        await app.task  # type: ignore[attr-defined]
        return status

    assert asyncio.run(request_then_task()) == 200
    assert len(results) == 1 and results[0].startswith("web-lane-0")


def test_the_probes_have_a_thread_of_their_own() -> None:
    seen: dict[str, int] = {}

    async def app(scope: Any, receive: Any, send: Any) -> None:
        seen[scope["path"]] = await sync_to_async(threading.get_ident)()
        await send({"type": "http.response.start", "status": 200, "headers": []})
        await send({"type": "http.response.body", "body": b""})

    lanes = ThreadLanes(app, threads=1, own_lane=lambda scope: scope["path"] == "/healthz")

    async def both() -> list[int]:
        return [await get(lanes, "/ask/"), await get(lanes, "/healthz")]

    assert asyncio.run(both()) == [200, 200]
    assert seen["/ask/"] != seen["/healthz"]


def test_the_lanes_and_the_probes_thread_fit_the_database_pool(settings: Any) -> None:
    """Each thread holds at most one pooled connection; one more thread than connections would wait on one."""
    pool = settings.DATABASES["default"]["OPTIONS"]["pool"]["max_size"]
    assert pool == settings.RAGSITE_WEB_THREADS + 1  # the lanes, and the probes' thread
