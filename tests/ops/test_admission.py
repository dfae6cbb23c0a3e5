"""AdmissionLimit: a bounded number of requests at once, a bounded queue, 429 with Retry-After beyond it."""

from __future__ import annotations

import asyncio
import contextvars
import time
from typing import Any

from ops.admission import AdmissionLimit, Message, wait_left, wait_until_at_most


class App:
    """An ASGI app whose requests wait until released, then answer 200 (or stream, once started)."""

    def __init__(self) -> None:
        self.release = asyncio.Event()
        self.entered: list[str] = []

    async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        self.entered.append(scope["path"])
        if scope["path"] == "/stream/":
            await send({"type": "http.response.start", "status": 200, "headers": []})
            await self.release.wait()
        else:
            await self.release.wait()
            await send({"type": "http.response.start", "status": 200, "headers": []})
        await send({"type": "http.response.body", "body": b"ok"})


async def request(limit: AdmissionLimit, path: str) -> tuple[int, dict[bytes, bytes]]:
    sent: list[Message] = []

    async def receive() -> Message:
        return {"type": "http.request", "body": b"", "more_body": False}

    async def send(message: Message) -> None:
        sent.append(message)

    await limit({"type": "http", "path": path}, receive, send)
    start = sent[0]
    return start["status"], dict(start["headers"])


async def until_entered(app: App, count: int) -> None:
    while len(app.entered) < count:
        await asyncio.sleep(0)


def test_a_request_beyond_the_limit_with_the_queue_full_is_refused_at_once_with_retry_after() -> None:
    async def scenario() -> tuple[int, dict[bytes, bytes], list[int], list[str]]:
        app = App()
        limit = AdmissionLimit(app, max_active=1, max_waiting=0, max_wait_s=60, retry_after_s=2)
        first = asyncio.create_task(request(limit, "/first/"))
        await until_entered(app, 1)
        status, headers = await request(limit, "/second/")
        app.release.set()
        first_status = (await first)[0]
        later = await request(limit, "/third/")
        return status, headers, [first_status, later[0]], app.entered

    status, headers, answered, entered = asyncio.run(scenario())
    assert status == 429 and headers[b"retry-after"] == b"2"
    assert answered == [200, 200]
    assert entered == ["/first/", "/third/"], "the refused request never reached the app"


def test_a_queued_request_runs_when_the_running_one_finishes() -> None:
    async def scenario() -> list[int]:
        app = App()
        limit = AdmissionLimit(app, max_active=1, max_waiting=10, max_wait_s=60, retry_after_s=1)
        first = asyncio.create_task(request(limit, "/first/"))
        second = asyncio.create_task(request(limit, "/second/"))
        await until_entered(app, 1)
        app.release.set()
        return [status for status, _headers in await asyncio.gather(first, second)]

    assert asyncio.run(scenario()) == [200, 200]


def test_a_request_that_waits_longer_than_allowed_is_refused_with_retry_after() -> None:
    async def scenario() -> tuple[int, dict[bytes, bytes]]:
        app = App()
        limit = AdmissionLimit(app, max_active=1, max_waiting=10, max_wait_s=0.01, retry_after_s=1)
        first = asyncio.create_task(request(limit, "/first/"))
        await until_entered(app, 1)
        refused = await request(limit, "/second/")
        app.release.set()
        await first
        return refused

    status, headers = asyncio.run(scenario())
    assert status == 429 and headers[b"retry-after"] == b"1"


def test_a_streaming_response_stops_counting_once_it_has_started() -> None:
    async def scenario() -> int:
        app = App()
        limit = AdmissionLimit(app, max_active=1, max_waiting=0, max_wait_s=60, retry_after_s=1)
        stream = asyncio.create_task(request(limit, "/stream/"))
        await until_entered(app, 1)
        await asyncio.sleep(0)
        other = asyncio.create_task(request(limit, "/other/"))
        await until_entered(app, 2)
        app.release.set()
        await stream
        return (await other)[0]

    assert asyncio.run(scenario()) == 200


def test_a_health_probe_is_answered_while_questions_fill_every_slot_and_the_queue() -> None:
    async def scenario() -> tuple[int, int, list[str]]:
        app = App()
        limit = AdmissionLimit(app, max_active=1, max_waiting=0, max_wait_s=60, retry_after_s=1)
        busy = asyncio.create_task(request(limit, "/ask/"))
        await until_entered(app, 1)
        refused = (await request(limit, "/ask/"))[0]
        probe = asyncio.create_task(request(limit, "/healthz"))
        await until_entered(app, 2)
        app.release.set()
        await busy
        return refused, (await probe)[0], app.entered

    refused, probe, entered = asyncio.run(scenario())
    assert refused == 429
    assert probe == 200
    assert entered == ["/ask/", "/healthz"]


def test_while_a_stage_behind_the_door_is_overloaded_its_requests_are_refused_and_others_pass() -> None:
    async def scenario() -> tuple[list[int], list[str]]:
        app = App()
        app.release.set()
        limit = AdmissionLimit(
            app,
            max_active=10,
            max_waiting=10,
            max_wait_s=60,
            retry_after_s=2,
            overloaded=lambda scope: scope["path"] == "/ask/",
        )
        statuses = [(await request(limit, path))[0] for path in ("/ask/", "/conversations/", "/healthz")]
        return statuses, app.entered

    statuses, entered = asyncio.run(scenario())
    assert statuses == [429, 200, 200]
    assert entered == ["/conversations/", "/healthz"]


def test_the_second_step_of_admitted_work_goes_ahead_of_new_requests_in_the_queue() -> None:
    async def scenario() -> list[str]:
        app = App()
        limit = AdmissionLimit(
            app,
            max_active=1,
            max_waiting=10,
            max_wait_s=60,
            retry_after_s=1,
            first=lambda scope: scope["path"].startswith("/answers/"),
        )
        running = asyncio.create_task(request(limit, "/ask/1"))
        await until_entered(app, 1)
        queued = [
            asyncio.create_task(request(limit, "/ask/2")),
            asyncio.create_task(request(limit, "/ask/3")),
        ]
        await asyncio.sleep(0)
        queued.append(asyncio.create_task(request(limit, "/answers/1/stream/")))
        await asyncio.sleep(0)
        app.release.set()
        await asyncio.gather(running, *queued)
        return app.entered

    assert asyncio.run(scenario()) == ["/ask/1", "/answers/1/stream/", "/ask/2", "/ask/3"]


def test_a_request_that_gives_up_waiting_leaves_the_queue_and_no_slot_is_lost() -> None:
    async def scenario() -> list[int]:
        app = App()
        limit = AdmissionLimit(app, max_active=1, max_waiting=10, max_wait_s=0.05, retry_after_s=1)
        running = asyncio.create_task(request(limit, "/first/"))
        await until_entered(app, 1)
        timed_out = await request(limit, "/second/")
        app.release.set()
        await running
        # Nothing leaked: the one slot is there for the next request.
        return [timed_out[0], (await request(limit, "/third/"))[0], limit.lane.free]

    assert asyncio.run(scenario()) == [429, 200, 1]


def test_requests_that_give_up_waiting_while_others_wait_leave_no_slot_lost_and_no_queue_growing() -> None:
    async def scenario() -> tuple[list[int], int, int]:
        app = App()
        limit = AdmissionLimit(app, max_active=1, max_waiting=1000, max_wait_s=0.05, retry_after_s=1)
        running = asyncio.create_task(request(limit, "/first/"))
        await until_entered(app, 1)
        # Hundreds time out behind the running request, in waves, while it holds the one slot.
        statuses = []
        for _wave in range(5):
            statuses += [s for s, _ in await asyncio.gather(*(request(limit, "/w/") for _ in range(100)))]
        queued = limit.lane.queued()
        app.release.set()
        await running
        later = [s for s, _ in await asyncio.gather(*(request(limit, "/later/") for _ in range(3)))]
        return statuses + later, queued, limit.lane.free

    statuses, queued, free = asyncio.run(scenario())
    assert statuses.count(429) == 500 and statuses[-3:] == [200, 200, 200]
    assert queued <= 100 and free == 1


def test_the_door_gives_the_work_behind_it_what_is_left_of_one_wait_budget() -> None:
    """The queues behind the door wait only for what the door's wait left (ops.admission.wait_until)."""
    seen: list[float] = []

    class Budget(App):
        async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
            if scope["path"] == "/second/":
                seen.append(wait_left(100.0))
            await super().__call__(scope, receive, send)

    async def scenario() -> None:
        app = Budget()
        limit = AdmissionLimit(app, max_active=1, max_waiting=10, max_wait_s=10, retry_after_s=1)
        first = asyncio.create_task(request(limit, "/first/"))
        await until_entered(app, 1)
        second = asyncio.create_task(request(limit, "/second/"))
        await asyncio.sleep(0.5)  # the second request waits at the door meanwhile
        app.release.set()
        await asyncio.gather(first, second)

    asyncio.run(scenario())
    # Not the queue's own 100 s, nor the door's full 10 s: what its half second at the door left.
    assert len(seen) == 1 and 8.0 < seen[0] <= 9.5


def test_a_budget_can_be_brought_forward_but_never_back() -> None:
    def scenario() -> tuple[float, float, float]:
        before = wait_left(60.0)
        wait_until_at_most(time.time() + 5)
        sooner = wait_left(60.0)
        wait_until_at_most(time.time() + 50)
        return before, sooner, wait_left(60.0)

    before, sooner, after = contextvars.Context().run(scenario)  # a request's own context: no budget yet
    assert before == 60.0 and 4.0 < sooner <= 5.0 and 3.0 < after <= 5.0
