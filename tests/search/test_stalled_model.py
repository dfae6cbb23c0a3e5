"""A model that stalls before its first byte, on the web path (the ask page under uvicorn): the asker is told
the model is busy, which is what bench-web counts as a clean refusal, never that it "cannot be reached"."""

from __future__ import annotations

import re
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from django.test import Client

from ragsite.devstack import free_port
from search.models import Message
from tests.processes import WebProcess, start_web
from tests.search.factories import add_chunks, make_collection, make_document, make_group, make_user
from tests.search.fake_inference import FakeInference

pytestmark = pytest.mark.django_db(transaction=True)

STREAM_URL = re.compile(r'sse-connect="([^"]+)"')
# The words bench/web_load.py reads as a busy answer (its BUSY_WORDS).
BUSY_WORDS = ("busy", "try again", "retry", "ask again in")
TIMEOUT_S = 2


class StallingChat(FakeInference):
    """Embeds as the scripted stand-in does; takes every chat request and answers it nothing, not one byte,
    until the client hangs up (a model whose queue holds the request past the client's patience)."""

    stalled: int = 0

    async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        if scope["path"] != "/v1/chat/completions":
            await super().__call__(scope, receive, send)
            return
        self.stalled += 1
        while (await receive())["type"] != "http.disconnect":
            pass


@pytest.fixture(scope="module")
def stalling_model() -> Iterator[StallingChat]:
    server = StallingChat(port=free_port())
    server.start()
    yield server
    server.stop()


@pytest.fixture(scope="module")
def web(test_database_name: str, logs_dir: Path, stalling_model: StallingChat) -> Iterator[WebProcess]:
    """The web app under uvicorn, as bench-web runs it, waiting TIMEOUT_S for a model's first byte."""
    web = start_web(
        database_name=test_database_name,
        log_dir=logs_dir,
        inference_url=stalling_model.url,
        extra_env={
            "INFERENCE_TIMEOUT_S": str(TIMEOUT_S),
            "RAGSITE_ANSWER_BUSY_RETRIES": "1",
            "RAGSITE_ANSWER_MAX_RETRY_WAIT_S": "1",
        },
    )
    yield web
    web.stop()


def sse_events(text: str) -> list[tuple[str, str]]:
    events = []
    for block in text.split("\n\n"):
        lines = block.splitlines()
        name = next((line[6:].strip() for line in lines if line.startswith("event:")), "")
        data = "\n".join(line[5:].lstrip() for line in lines if line.startswith("data:"))
        if name:
            events.append((name, data))
    return events


def test_a_model_that_stalls_before_its_first_byte_is_a_busy_answer_on_the_ask_page(
    web: WebProcess, stalling_model: StallingChat
) -> None:
    group = make_group()
    document = make_document(title="Returns policy", collection=make_collection(groups=[group]))
    add_chunks(document, "Customers may return a laptop within 30 days of delivery for a full refund.")
    user = make_user(groups=[group])
    client = Client()
    client.force_login(user)
    session = client.cookies["sessionid"].value
    csrf = "a" * 32
    cookies = {"sessionid": session, "csrftoken": csrf}
    headers = {"X-CSRFToken": csrf, "HX-Request": "true"}
    stalled_before = stalling_model.stalled

    with httpx.Client(base_url=web.url, cookies=cookies, headers=headers, timeout=60) as http:
        asked = http.post("/ask/", data={"question": "Within how many days can a laptop be returned?"})
        assert asked.status_code == 200, asked.text[:2000]
        match = STREAM_URL.search(asked.text)
        assert match is not None, asked.text[:2000]
        started = time.monotonic()
        stream = http.get(match.group(1), headers={"Accept": "text/event-stream"})
        took = time.monotonic() - started
    assert stream.status_code == 200
    events = sse_events(stream.text)
    names = [name for name, _ in events]

    # The model was asked, twice (one busy retry), and each time nothing came back within the timeout.
    assert stalling_model.stalled - stalled_before == 2
    assert took >= 2 * TIMEOUT_S
    statuses = [data for name, data in events if name == "status"]
    assert any("busy" in status.lower() for status in statuses), events
    assert names[-1] == "done", names
    final = events[-1][1]
    assert any(word in final.lower() for word in BUSY_WORDS), final
    assert "cannot be reached" not in stream.text
    message = Message.objects.get(conversation__user=user)
    assert "cannot be reached" not in message.error
