"""Single-flight on the real Redis: leases, streams other processes follow, takeover, cancellation, bounds.

Each `_Hub` stands for one web process; the answers are scripted (tests/search/answer_scripts.py).
"""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncGenerator
from typing import Any

from search import single_flight
from search.answer_redis import answer_redis
from search.services import AnswerEvent
from tests.search.answer_scripts import ANSWER, run, scripted


async def follow(flight: single_flight.Flight, hub: Any) -> list[AnswerEvent]:
    """Read a flight to its end, as SharedAnswer does, then leave it."""
    index = 0
    try:
        while True:
            if index < len(flight.events):
                index += 1
                continue
            if flight.finished:
                return list(flight.events)
            await asyncio.wait_for(flight.waiter().wait(), timeout=30)
    finally:
        hub.leave(flight)


def fails() -> AsyncGenerator[AnswerEvent, None]:
    raise AssertionError("a follower must not answer while its leader is alive")


def test_another_process_follows_the_answer_through_redis_without_answering_it() -> None:
    key = uuid.uuid4().hex

    async def two_processes() -> tuple[list[AnswerEvent], list[AnswerEvent], bool, bool]:
        here, there = single_flight._Hub(), single_flight._Hub()
        joined_here = await here.join(key, scripted(*ANSWER))
        joined_there = await there.join(key, fails)
        assert joined_here is not None and joined_there is not None
        leader, follower = await asyncio.gather(follow(joined_here[0], here), follow(joined_there[0], there))
        return leader, follower, joined_here[1], joined_there[1]

    leader, follower, here_joined, there_joined = run(two_processes)

    assert (here_joined, there_joined) == (False, True)
    assert leader == follower == list(ANSWER)


def test_a_crashed_leader_is_taken_over_once_its_lease_lapses_and_nothing_is_shown_twice(
    settings: Any,
) -> None:
    settings.RAGSITE_ANSWER_LEASE_S = 0.5
    key = uuid.uuid4().hex
    hang = asyncio.Event()

    async def crash_and_take_over() -> tuple[list[AnswerEvent], bool]:
        dead, alive = single_flight._Hub(), single_flight._Hub()

        async def stops_renewing(leases: Any) -> set[str]:
            return set()

        dead._renew_leases = stops_renewing  # type: ignore[method-assign]
        # The leader gets as far as the sources and the first token, then hangs without renewing its lease.
        joined_dead = await dead.join(key, scripted(*ANSWER[:3], hang=hang))
        assert joined_dead is not None
        await asyncio.sleep(0.2)
        joined_alive = await alive.join(key, scripted(*ANSWER))
        assert joined_alive is not None
        events = await follow(joined_alive[0], alive)
        dead.leave(joined_dead[0])
        hang.set()
        return events, joined_alive[1]

    events, joined = run(crash_and_take_over)

    assert joined
    assert events == list(ANSWER)  # sources, extract and the first token once, though answered twice


def test_when_nobody_follows_an_answer_any_more_it_is_cancelled_and_its_lease_released() -> None:
    key = uuid.uuid4().hex
    closed: list[str] = []

    async def leave_early() -> Any:
        hub = single_flight._Hub()
        joined = await hub.join(key, scripted(ANSWER[0], hang=asyncio.Event(), closed=closed))
        assert joined is not None
        flight, _ = joined
        while not flight.events:
            await flight.waiter().wait()
        hub.leave(flight)
        for _ in range(40):
            if closed:
                break
            await asyncio.sleep(0.1)
        return await answer_redis().get(single_flight._lease_key(key))

    assert run(leave_early) is None
    assert closed == ["closed"]


def test_an_answer_keeps_at_most_its_bound_of_events_here_and_in_redis(settings: Any) -> None:
    settings.RAGSITE_ANSWER_MAX_EVENTS = 10
    key = uuid.uuid4().hex
    tokens = [AnswerEvent(kind="token", text=f"t{n} ") for n in range(50)]
    answer = (ANSWER[0], *tokens, ANSWER[-1])

    async def long_answer() -> tuple[list[AnswerEvent], list[AnswerEvent], int]:
        here, there = single_flight._Hub(), single_flight._Hub()
        joined_here = await here.join(key, scripted(*answer))
        joined_there = await there.join(key, fails)
        assert joined_here is not None and joined_there is not None
        leader, follower = await asyncio.gather(follow(joined_here[0], here), follow(joined_there[0], there))
        stream = single_flight._events_key(key, joined_here[0].epoch)
        return leader, follower, int(await answer_redis().xlen(stream))

    leader, follower, stream_length = run(long_answer)

    assert len(leader) == len(follower) == 11 and leader[-1] == follower[-1] == ANSWER[-1]
    assert stream_length <= 10 + 2  # the bound, the final event and the end mark


def test_a_lease_is_renewed_every_third_of_its_length_at_most_each_second(settings: Any) -> None:
    settings.RAGSITE_ANSWER_LEASE_S = 15.0
    assert single_flight._renew_interval_s() == 5.0
    settings.RAGSITE_ANSWER_LEASE_S = 1.5
    assert single_flight._renew_interval_s() == single_flight.WATCH_INTERVAL_S


def test_a_process_renews_the_leases_of_all_the_answers_it_leads_in_one_command(settings: Any) -> None:
    """Thousands of answers waiting for retrieval must not take a Redis connection each to stay alive."""
    settings.RAGSITE_ANSWER_LEASE_S = 1.5  # renewed every second
    keys = [uuid.uuid4().hex for _ in range(3)]
    hang = asyncio.Event()

    async def three_answers() -> tuple[list[list[str]], list[bool]]:
        hub = single_flight._Hub()
        calls: list[list[str]] = []
        renew = hub._renew_leases

        async def recorded(leases: Any) -> set[str]:
            calls.append(sorted(key for key, _ in leases))
            return await renew(leases)

        hub._renew_leases = recorded  # type: ignore[method-assign]
        flights = [await hub.join(key, scripted(ANSWER[0], hang=hang)) for key in keys]
        await asyncio.sleep(2.2)  # past the lease's 1.5 s: alive only if renewed
        alive = [await answer_redis().get(single_flight._lease_key(key)) is not None for key in keys]
        hang.set()
        for joined in flights:
            assert joined is not None
            hub.leave(joined[0])
        return calls, alive

    calls, alive = run(three_answers)

    assert alive == [True, True, True]
    assert calls and calls[0] == sorted(keys)
