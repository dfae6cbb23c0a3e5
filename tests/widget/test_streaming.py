"""The answer stream over real HTTP (uvicorn): a visitor who leaves mid-answer is logged as cancelled, and
the model's stream is closed with it."""

from __future__ import annotations

import json
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from ingest.models import Collection, Document
from ingest.services import document_create_from_bytes, document_ingest
from tests.inference.helpers import metric
from tests.processes import InferenceProcess, WebProcess, start_web
from tests.search.factories import DocumentFactory, add_chunks
from tests.search.fake_inference import FakeInference, Reply
from widget.models import WidgetExchange

from .factories import HOST_ORIGIN, make_key

pytestmark = pytest.mark.django_db(transaction=True)

CHAT_QUEUE = 'inference_queue_depth{queue="chat"}'
CHAT_DISCONNECTED = 'inference_rejections_total{endpoint="/v1/chat/completions",reason="client_disconnected"}'
RETURNS = """# Returns policy

## Laptops

Customers may return a laptop within 30 days of delivery for a full refund. The laptop must come back
with its charger and in its original box.
"""


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


@pytest.fixture(scope="module")
def web_on_the_real_model(
    test_database_name: str, logs_dir: Path, inference_server: InferenceProcess
) -> Iterator[WebProcess]:
    """The web app under uvicorn, its model the real inference API (llama.cpp, the CPU default model)."""
    web = start_web(
        database_name=test_database_name,
        log_dir=logs_dir,
        inference_url=inference_server.url,
        extra_env={"INFERENCE_TIMEOUT_S": "600"},
    )
    yield web
    web.stop()


# Long answers asked of the model at once, ahead of the widget's.
BLOCKERS = 4
BLOCKER_PROMPT = "Write the word hello 1000 times, with spaces."


class Blockers:
    """`count` long streamed chats asked directly of the inference API, each read to its end in a thread."""

    def __init__(self, url: str, *, count: int) -> None:
        models = httpx.get(f"{url}/v1/models", timeout=10).json()["data"]
        self.model = next(item["id"] for item in models if item.get("kind") == "chat")
        self.url = url
        self.running = count
        self.errors: list[str] = []
        self._lock = threading.Lock()
        self._threads = [threading.Thread(target=self._ask, daemon=True) for _ in range(count)]
        for thread in self._threads:
            thread.start()

    def _ask(self) -> None:
        try:
            with httpx.stream(
                "POST",
                f"{self.url}/v1/chat/completions",
                json={
                    "model": self.model,
                    "messages": [{"role": "user", "content": BLOCKER_PROMPT}],
                    "max_tokens": 1500,
                    "stream": True,
                },
                timeout=600,
            ) as response:
                for _ in response.iter_lines():
                    pass
                if response.status_code != 200:
                    self.errors.append(f"HTTP {response.status_code}")
        except httpx.HTTPError as exc:
            self.errors.append(repr(exc))
        finally:
            with self._lock:
                self.running -= 1

    def queued_beyond(self, url: str) -> bool:
        """Whether the API holds more chat requests than these long answers still running, twice in a row
        (a long answer's thread may count it ended a moment before the API does)."""
        for attempt in range(2):
            with self._lock:
                running = self.running
            if metric(url, CHAT_QUEUE) <= running:
                return False
            if attempt == 0:
                time.sleep(0.3)
        return True

    def join(self) -> None:
        for thread in self._threads:
            thread.join(timeout=600)
        assert self.errors == []


def wait_until(condition: Callable[[], bool], *, timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, what
        time.sleep(0.05)


@pytest.mark.slow
def test_a_visitor_leaving_mid_answer_closes_the_model_stream_the_inference_api_sees_the_disconnect(
    web_on_the_real_model: WebProcess, use_inference: InferenceProcess, settings: Any, tmp_path: Path
) -> None:
    settings.MEDIA_ROOT = str(tmp_path / "media")
    # Queued copies of the ingest task go to a queue no worker reads; the test ingests in-process.
    settings.RAGSITE_INGEST_QUEUE = f"unread-{uuid.uuid4().hex[:8]}"
    collection = Collection.objects.create(name=f"returns-{uuid.uuid4().hex[:6]}")
    document = document_create_from_bytes(collection=collection, data=RETURNS.encode(), name="returns.md")
    document_ingest(document_id=document.id)
    document.refresh_from_db()
    assert document.status == Document.Status.READY, document.error
    key, _ = make_key(collections=[collection])
    model = use_inference.url
    disconnected_before = metric(model, CHAT_DISCONNECTED)

    # The CPU engine writes one answer at a time. Long answers asked directly first keep it busy, so the
    # widget's request is still waiting in the API's queue when the visitor leaves, however fast the
    # machine: without them, a quick model could finish the short answer before the visitor has gone. No
    # prompt makes a small model's answer long for sure (it may write a short program, or stop early), so
    # several are queued, each followed to its end: together they hold the engine for tens of seconds,
    # where the widget's request reaches the model within about one.
    blockers = Blockers(model, count=BLOCKERS)
    wait_until(
        lambda: metric(model, CHAT_QUEUE) >= BLOCKERS, timeout=60, what="the long answers never queued"
    )
    try:
        with httpx.stream(
            "POST",
            f"{web_on_the_real_model.url}/widget/v1/{key.public_id}/ask",
            json={"question": "How many days do customers have to return a laptop?"},
            headers={"Origin": HOST_ORIGIN},
            timeout=600,
        ) as response:
            assert response.status_code == 200
            lines = response.iter_lines()  # kept: dropping the iterator would close the connection
            assert next(lines) == "event: sources"
            # Leave while the answer's chat request holds a place in the API's queue.
            wait_until(lambda: blockers.queued_beyond(model), timeout=300, what="the model was never asked")
        # The visitor's connection is closed: the web app must close its own request to the model.
        wait_until(
            lambda: metric(model, CHAT_DISCONNECTED) == disconnected_before + 1,
            timeout=120,
            what="the model's request was never closed",
        )
    finally:
        blockers.join()
    assert metric(model, CHAT_DISCONNECTED) == disconnected_before + 1  # the long answers ended normally
    exchange = WidgetExchange.objects.get(key=key)
    deadline = time.monotonic() + 30
    while exchange.status == WidgetExchange.Status.STREAMING and time.monotonic() < deadline:
        time.sleep(0.2)
        exchange.refresh_from_db()
    assert exchange.status == WidgetExchange.Status.CANCELLED
