"""The widget end to end on the real parts: documents ingested through the real pipeline with MiniLM, the
answer written by the real llama.cpp model, shown on another origin's page in Debian's chromium."""

from __future__ import annotations

import os
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pytest
from django.db import connections

from ingest.models import Collection, Document
from ingest.services import document_create_from_bytes, document_ingest
from ops import inference
from ragsite.devstack import free_port
from tests.browser import screenshot
from tests.processes import InferenceProcess, WebProcess, start_inference, start_web
from widget.models import WidgetExchange
from widget.selectors import widget_snippet

from .factories import make_key
from .test_browser import RECORD_ANSWER_TEXTS, ask, host_site

if TYPE_CHECKING:
    from playwright.sync_api import Page

pytestmark = [pytest.mark.browser, pytest.mark.slow, pytest.mark.django_db(transaction=True)]

RETURNS = """# Returns policy

## Laptops

Customers may return a laptop within 30 days of delivery for a full refund. The laptop must come back
with its charger and in its original box.
"""
FINANCE = """# Finance handbook

## Refund approval

Internal only: laptop refunds above 2000 EUR need the finance director's approval before they are paid.
"""


@pytest.fixture(scope="module")
def real_inference(logs_dir: Path) -> Iterator[InferenceProcess]:
    """The real inference API and chat engine; one llama.cpp thread, a long deadline for a busy CPU."""
    server = start_inference(
        log_dir=logs_dir,
        chat_engine=os.environ.get("RAGSITE_TEST_CHAT_ENGINE", "llamacpp"),
        chat_model=os.environ.get("RAGSITE_TEST_CHAT_MODEL", ""),
        extra_env={"INFERENCE_CHAT_THREADS": "1", "INFERENCE_CHAT_TIMEOUT_S": "900"},
    )
    yield server
    server.stop()


@pytest.fixture(scope="module")
def real_web(
    test_database_name: str, logs_dir: Path, real_inference: InferenceProcess
) -> Iterator[WebProcess]:
    web = start_web(
        database_name=test_database_name,
        log_dir=logs_dir,
        inference_url=real_inference.url,
        extra_env={"INFERENCE_TIMEOUT_S": "900"},
    )
    yield web
    web.stop()


def _ingested(name: str, text: str) -> Collection:
    """A collection holding one document that went through the real parse, chunk and embed pipeline."""
    collection = Collection.objects.create(name=f"{name}-{uuid.uuid4().hex[:6]}")
    document = document_create_from_bytes(collection=collection, data=text.encode(), name=f"{name}.md")
    document_ingest(document_id=document.id)
    document.refresh_from_db()
    assert document.status == Document.Status.READY, document.error
    return collection


@pytest.fixture(autouse=True)
def close_playwright_side_connections(browser: Any) -> Iterator[None]:
    yield
    connections.close_all()


def test_a_real_model_answers_through_the_widget_on_another_origin_from_the_keys_collection_only(
    real_web: WebProcess, real_inference: InferenceProcess, page: Page, settings: Any, tmp_path: Path
) -> None:
    from playwright.sync_api import expect

    settings.MEDIA_ROOT = str(tmp_path / "media")
    # Queued copies of the ingest task go to a queue no worker reads; the test ingests in-process.
    settings.RAGSITE_INGEST_QUEUE = f"unread-{uuid.uuid4().hex[:8]}"
    settings.INFERENCE_URL = real_inference.url
    inference.clients_reset()
    returns = _ingested("returns", RETURNS)
    _ingested("finance", FINANCE)
    port = free_port()
    key, _ = make_key(collections=[returns], origins=[f"http://127.0.0.1:{port}"])
    site = host_site(tmp_path / "site", snippet=widget_snippet(key=key, base_url=real_web.url), port=port)
    try:
        page.goto(f"{site.url}/ticket.html")
        page.evaluate(f"() => {{ window.__answers = ({RECORD_ANSWER_TEXTS})(); }}")
        question = "How many days do customers have to return a laptop?"
        ask(page, question)
        panel = page.get_by_role("dialog", name="Ask ragsite")
        # The widget asks only once its config has arrived, and the first config of a cold web process can
        # take longer than typing the question: until then the Ask button is still enabled. Wait for the
        # question to be in the log (the exchange has begun), then for the button to come back (it ended).
        expect(panel.locator(".q", has_text=question)).to_be_visible(timeout=60_000)
        send = panel.get_by_role("button", name="Ask", exact=True)
        expect(send).to_be_enabled(timeout=900_000)
        answers = page.evaluate("() => window.__answers")
        assert len(answers) >= 2 and answers[-1].strip(), f"no streamed answer: {answers}"
        expect(panel.get_by_text("Returns policy", exact=False).first).to_be_visible()
        screenshot(page, "widget-real-model")
        assert "finance director" not in panel.inner_text()
        assert "Finance handbook" not in panel.inner_text()
        exchange = WidgetExchange.objects.get(key=key)  # the first exchange, and the only one
        assert exchange.status == WidgetExchange.Status.ANSWERED, exchange.answer
        assert exchange.answer.strip()
        assert all("finance director" not in str(source) for source in exchange.sources)
    finally:
        site.stop()
        inference.clients_reset()
