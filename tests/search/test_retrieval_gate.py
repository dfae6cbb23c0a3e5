"""Retrieval's bounded queue: a bounded number of questions in retrieval at once, a bounded wait, and a turn
that ends at the extract."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncGenerator
from typing import Any

import pytest

from ops.admission import wait_until
from search import retrieval_gate
from search.model_queue import model_queue, model_turn
from search.retrieval_gate import (
    THROUGHPUT_MIN,
    _RetrievalGate,
    retrieval_bounded,
    retrieval_overloaded,
    retrieval_wait_beyond_budget,
)
from search.services import AnswerEvent
from tests.search.answer_scripts import ANSWER, kinds, run, scripted


def test_retrieval_runs_a_bounded_number_at_once_and_past_its_queue_asks_people_to_come_back(
    settings: Any,
) -> None:
    settings.RAGSITE_RETRIEVAL_MAX_ACTIVE = 1
    settings.RAGSITE_RETRIEVAL_MAX_WAITING = 1
    settings.RAGSITE_RETRIEVAL_MAX_WAIT_S = 0.5

    async def crowd() -> tuple[list[list[AnswerEvent]], bool]:
        hang = asyncio.Event()
        first = retrieval_bounded(scripted(ANSWER[0], hang=hang)())
        assert (await anext(first)).kind == "sources"  # holds the one slot: no event after "sources" yet

        async def first_event() -> AnswerEvent:
            return await anext(retrieval_bounded(scripted(*ANSWER)()))

        second = asyncio.create_task(first_event())
        await asyncio.sleep(0.05)
        overloaded = retrieval_overloaded()
        third = [event async for event in retrieval_bounded(scripted(*ANSWER)())]
        waited = [await second]
        hang.set()
        await first.aclose()
        # The slot is free again once an answer passes "sources": the next one goes straight through.
        fourth = [event async for event in retrieval_bounded(scripted(*ANSWER)())]
        return [third, waited, fourth], overloaded

    (third, waited, fourth), overloaded = run(crowd)

    assert overloaded
    assert kinds(third) == ["error"] and third[0].retry_after and "ask again" in third[0].text
    assert kinds(waited) == ["error"]  # waited its 0.5 s behind the first, then was told to come back
    assert fourth == list(ANSWER)


def test_an_answer_waiting_for_the_model_gives_its_place_in_retrieval_back(settings: Any) -> None:
    settings.RAGSITE_RETRIEVAL_MAX_ACTIVE = 1
    settings.RAGSITE_RETRIEVAL_MAX_WAIT_S = 5

    async def waits_for_the_model() -> AsyncGenerator[AnswerEvent, None]:
        yield ANSWER[0]  # sources, and no extract: straight on to the model
        async with model_turn(slots=1) as turn:
            yield AnswerEvent(kind="done", text="written" if turn else "busy")

    async def scenario() -> tuple[list[AnswerEvent], list[AnswerEvent]]:
        async with model_turn(slots=1) as held:  # the model is writing another answer
            assert held
            first = asyncio.create_task(collect(retrieval_bounded(waits_for_the_model())))
            async with asyncio.timeout(30):
                while not model_queue().waiting:
                    await asyncio.sleep(0.01)
            second = await collect(retrieval_bounded(scripted(*ANSWER)()))
        return await first, second

    first, second = run(scenario)
    assert kinds(second) == kinds(list(ANSWER)) and first[-1].text == "written"


async def collect(events: AsyncGenerator[AnswerEvent, None]) -> list[AnswerEvent]:
    return [event async for event in events]


def test_retrieval_waits_only_for_what_is_left_of_the_questions_budget(settings: Any) -> None:
    """A question whose turn at the door used its budget is told to come back instead of waiting again, but
    goes through when a slot is free (no wait, nothing to refuse)."""
    settings.RAGSITE_RETRIEVAL_MAX_ACTIVE = 1
    settings.RAGSITE_RETRIEVAL_MAX_WAIT_S = 60

    async def scenario() -> tuple[list[AnswerEvent], list[AnswerEvent], list[AnswerEvent], float]:
        spent_budget = wait_until.set(time.time() - 1)  # the door's wait took the whole budget
        alone = [event async for event in retrieval_bounded(scripted(*ANSWER)())]
        hang = asyncio.Event()
        first = retrieval_bounded(scripted(ANSWER[0], hang=hang)())
        await anext(first)  # holds the one slot
        spent = [event async for event in retrieval_bounded(scripted(*ANSWER)())]

        async def some_left() -> tuple[list[AnswerEvent], float]:
            wait_until.set(time.time() + 0.3)
            started = time.monotonic()
            events = [event async for event in retrieval_bounded(scripted(*ANSWER)())]
            return events, time.monotonic() - started

        left, waited = await asyncio.create_task(some_left())
        hang.set()
        await first.aclose()
        wait_until.reset(spent_budget)  # async_to_sync carries context changes back to the test
        return alone, spent, left, waited

    alone, spent, left, waited = run(scenario)
    assert alone == list(ANSWER)
    assert kinds(spent) == ["error"] and spent[0].retry_after
    # It waited the 0.3 s its budget had left, not retrieval's own 60 s.
    assert kinds(left) == ["error"] and waited < 30


def test_a_new_questions_wait_is_those_ahead_over_the_rate_retrieval_finishes_them() -> None:
    gate = _RetrievalGate(max_active=2, max_waiting=100, max_wait_s=120)
    now = 1000.0
    gate.running, gate.waiting = 2, 59
    gate.finished.extend(now - 20 + 2 * n for n in range(THROUGHPUT_MIN - 1))
    assert gate.expected_wait_s(now) == 0  # too few finished to tell a rate
    gate.finished.append(now - 2)
    assert gate.expected_wait_s(now) == pytest.approx(120)  # 10 in the last 20 s: 60 to go at 0.5 a second
    assert gate.expected_wait_s(now + 20) == pytest.approx(240)  # nothing finished since: half the rate
    gate.running = 1
    assert gate.expected_wait_s(now) == 0  # a slot is free


def test_how_far_past_its_budget_a_new_question_would_wait(monkeypatch: Any) -> None:
    gate = _RetrievalGate(max_active=1, max_waiting=100, max_wait_s=120)
    gate.running, gate.waiting = 1, 99
    now = time.monotonic()
    gate.finished.extend(now - 10 + n for n in range(10))  # one a second: 100 s to wait
    monkeypatch.setattr(retrieval_gate, "_latest", gate)
    assert retrieval_wait_beyond_budget() == 0  # within retrieval's own 120 s
    token = wait_until.set(time.time() + 30)  # the request has 30 s of its budget left
    try:
        assert retrieval_wait_beyond_budget() == pytest.approx(70, abs=1)
    finally:
        wait_until.reset(token)


def test_a_gate_whose_loop_has_ended_turns_nobody_away(monkeypatch: Any) -> None:
    loop = asyncio.new_event_loop()
    gate = _RetrievalGate(max_active=1, max_waiting=100, max_wait_s=120, loop=loop)
    gate.running, gate.waiting = 1, 999
    gate.finished.extend(time.monotonic() - 100 + n for n in range(10))
    monkeypatch.setattr(retrieval_gate, "_latest", gate)
    assert retrieval_wait_beyond_budget() > 0
    loop.close()
    assert retrieval_wait_beyond_budget() == 0
