"""The answer stream over real HTTP (uvicorn): a visitor who leaves mid-answer is logged as cancelled."""

from __future__ import annotations

import json
import time

import httpx
import pytest

from tests.processes import WebProcess
from tests.search.factories import DocumentFactory, add_chunks
from tests.search.fake_inference import FakeInference, Reply
from widget.models import WidgetExchange

from .factories import HOST_ORIGIN, make_key

pytestmark = pytest.mark.django_db(transaction=True)


def test_a_visitor_leaving_mid_answer_cancels_it_and_the_log_says_so(
    web: WebProcess, fake_inference: FakeInference
) -> None:
    document = DocumentFactory.create(title="Returns policy")
    add_chunks(document, "Customers may return a laptop within 30 days of delivery.")
    key, _ = make_key(collections=[document.collection])
    fake_inference.default_reply = Reply(["Laptops ", "can ", "be ", "returned ", "within ", "30 days."], 2.0)

    with httpx.stream(
        "POST",
        f"{web.url}/widget/v1/{key.public_id}/ask",
        json={"question": "Can a laptop be returned?"},
        headers={"Origin": HOST_ORIGIN},
        timeout=30,
    ) as response:
        assert response.status_code == 200
        lines = response.iter_lines()
        assert next(lines) == "event: sources"
        assert json.loads(next(lines).removeprefix("data: "))["sources"][0]["title"] == "Returns policy"
    # The connection is closed: the server notices, stops answering and logs what was sent.

    deadline = time.monotonic() + 30
    exchange = WidgetExchange.objects.get(key=key)
    while exchange.status == WidgetExchange.Status.STREAMING and time.monotonic() < deadline:
        time.sleep(0.2)
        exchange.refresh_from_db()
    assert exchange.status == WidgetExchange.Status.CANCELLED
    assert exchange.finished_at is not None
