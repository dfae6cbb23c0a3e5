"""Retrieval's bounded queue: a bounded number of questions in retrieval at once, a bounded wait, and a turn
that ends at the extract."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncGenerator
from typing import Any

from search.model_queue import model_queue, model_turn
from search.retrieval_gate import retrieval_bounded, retrieval_overloaded
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
