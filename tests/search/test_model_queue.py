"""The web process's queue for the model (search/model_queue.py): the most asked answer goes first."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from typing import Any

import pytest

from ingest.models import Document
from ops.admission import wait_until
from search.model_queue import ModelQueue, model_queue, model_turn
from search.services import AnswerEvent
from search.shared_answers import SharedAnswer, answer_stream_shared
from tests.search.answer_scripts import LAPTOPS, run
from tests.search.factories import add_chunks, make_document
from tests.search.fake_inference import FakeInference, Reply


async def until(condition: Callable[[], bool]) -> None:
    async with asyncio.timeout(30):
        while not condition():
            await asyncio.sleep(0.01)


def test_when_the_model_is_full_the_answer_most_people_wait_for_goes_next() -> None:
    async def scenario() -> list[str]:
        queue = ModelQueue(max_waiting=10)
        gone: list[str] = []
        askers = {"one": 1, "five": 5, "two": 2, "five later": 5}

        async def answer(name: str) -> None:
            assert await queue.acquire(askers=lambda: askers[name], slots=1, wait_s=30)
            gone.append(name)

        assert await queue.acquire(askers=lambda: 1, slots=1, wait_s=30)
        waiting = []
        for name in askers:
            waiting.append(asyncio.create_task(answer(name)))
            await until(lambda: len(queue.waiting) == len(waiting))
        askers["one"] = 3  # more people joined it while it waited

        def gone_at_least(count: int) -> Callable[[], bool]:
            return lambda: len(gone) >= count

        for count in range(1, len(askers) + 1):
            queue.release()
            await until(gone_at_least(count))
        return gone

    assert run(scenario) == ["five", "five later", "one", "two"]


def test_the_queue_is_bounded_and_a_wait_that_runs_out_leaves_it() -> None:
    async def scenario() -> tuple[bool, bool, int, bool]:
        queue = ModelQueue(max_waiting=1)
        assert await queue.acquire(askers=lambda: 1, slots=1, wait_s=30)
        waiter = asyncio.create_task(queue.acquire(askers=lambda: 1, slots=1, wait_s=0.05))
        await until(lambda: len(queue.waiting) == 1)
        full = await queue.acquire(askers=lambda: 9, slots=1, wait_s=30)
        ran_out = await waiter
        queue.release()
        again = await queue.acquire(askers=lambda: 1, slots=1, wait_s=30)
        return full, ran_out, len(queue.waiting), again

    assert run(scenario) == (False, False, 0, True)


def test_a_cancelled_wait_leaves_the_queue_and_a_place_it_was_given_goes_on() -> None:
    async def scenario() -> tuple[int, int, list[str]]:
        queue = ModelQueue(max_waiting=10)
        assert await queue.acquire(askers=lambda: 1, slots=1, wait_s=30)
        cancelled = asyncio.create_task(queue.acquire(askers=lambda: 9, slots=1, wait_s=30))
        gone: list[str] = []

        async def patient() -> None:
            assert await queue.acquire(askers=lambda: 1, slots=1, wait_s=30)
            gone.append("patient")

        waiting = asyncio.create_task(patient())
        await until(lambda: len(queue.waiting) == 2)
        cancelled.cancel()
        await asyncio.gather(cancelled, return_exceptions=True)
        left = len(queue.waiting)
        queue.release()
        await waiting
        return left, queue.active, gone

    assert run(scenario) == (1, 1, ["patient"])


def test_without_a_stated_capacity_nothing_waits() -> None:
    async def scenario() -> int:
        queue = ModelQueue(max_waiting=1)
        for _ in range(50):
            assert await queue.acquire(askers=lambda: 1, slots=None, wait_s=0)
        return queue.active

    assert run(scenario) == 50


@pytest.mark.django_db
def test_the_answer_asked_by_more_people_reaches_the_model_before_one_asked_earlier(
    fake_inference: FakeInference, settings: Any
) -> None:
    document: Document = make_document(title="Returns policy")
    add_chunks(document, LAPTOPS, heading_path="Returns > Laptops")
    fake_inference.chat_max_active = 1
    fake_inference.default_reply = Reply(["Within 30 days [1]."])
    asked_once, asked_thrice = "How long can I return a laptop?", "For how long may a laptop be returned?"

    async def read(shared: SharedAnswer) -> list[AnswerEvent]:
        return [event async for event in shared]

    def ask(question: str) -> asyncio.Task[list[AnswerEvent]]:
        shared = answer_stream_shared(
            collection_ids=[document.collection_id], question=question, request_id="t"
        )
        return asyncio.create_task(read(shared))

    async def scenario() -> list[list[AnswerEvent]]:
        queue = model_queue()
        async with model_turn(slots=1) as held:  # the model is writing another answer
            assert held
            answers = [ask(asked_once)]
            await until(lambda: len(queue.waiting) == 1)
            answers += [ask(asked_thrice) for _ in range(3)]
            await until(lambda: len(queue.waiting) == 2 and max(w.askers() for w in queue.waiting) == 3)
        return list(await asyncio.gather(*answers))

    answers = run(scenario)

    prompts = [request["messages"][-1]["content"] for request in fake_inference.answer_requests]
    assert len(prompts) == 2
    assert asked_thrice in prompts[0] and asked_once in prompts[1]
    assert all(events[-1].origin == "model" for events in answers)


def test_an_answer_whose_wait_budget_is_spent_does_not_queue_for_the_model(settings: Any) -> None:
    """The model's queue waits only for what is left of the question's budget (ops.admission.wait_until)."""
    settings.RAGSITE_MODEL_QUEUE_WAIT_S = 60

    async def scenario() -> tuple[bool, bool, int]:
        async with model_turn(slots=1) as held:  # the model is writing another answer
            spent_budget = wait_until.set(time.time() - 1)
            async with model_turn(slots=1) as late:
                waiting = len(model_queue().waiting)
            wait_until.reset(spent_budget)  # async_to_sync carries context changes back to the test
        return held, late, waiting

    assert run(scenario) == (True, False, 0)


def test_a_wait_cancelled_just_before_its_turn_came_passes_the_place_on_without_an_error() -> None:
    """A waiter whose task was cancelled (its asker left, its time ran out) stays in the queue until it wakes;
    a release in between must pass it over, not hand the place to a cancelled turn (InvalidStateError) nor
    leave the waiter to remove itself twice (ValueError), as 10,000 unique askers once made happen."""

    async def scenario() -> tuple[bool, int, int]:
        queue = ModelQueue(max_waiting=10)
        assert await queue.acquire(askers=lambda: 1, slots=1, wait_s=30)
        leaving = asyncio.create_task(queue.acquire(askers=lambda: 5, slots=1, wait_s=30))
        staying = asyncio.create_task(queue.acquire(askers=lambda: 1, slots=1, wait_s=30))
        await until(lambda: len(queue.waiting) == 2)
        leaving.cancel()  # its turn is cancelled now; it leaves the queue only when it next runs
        queue.release()  # the writer ends before that: the place must go to the other waiter
        with pytest.raises(asyncio.CancelledError):
            await leaving
        got = await staying
        return got, queue.active, len(queue.waiting)

    assert run(scenario) == (True, 1, 0)
