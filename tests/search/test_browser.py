"""The ask page in Debian's chromium, against the web app served by uvicorn as in production."""

from __future__ import annotations

import os
import re
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pytest

from tests.browser import screenshot
from tests.processes import (
    InferenceProcess,
    WebProcess,
    WorkerProcess,
    start_inference,
    start_web,
    start_worker,
)
from tests.search.factories import (
    PASSWORD,
    add_chunks,
    make_collection,
    make_document,
    make_group,
    make_user,
)
from tests.search.fake_inference import FakeInference, Reply

if TYPE_CHECKING:
    from playwright.sync_api import Dialog, FilePayload, Page

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True)]

QUEUE = f"ingest-browser-{uuid.uuid4().hex[:8]}"
# Records, at each streamed token, how much answer text the page shows: proof that it grows token by token.
RECORD_STREAMING = """
window.__streamed = [];
document.addEventListener("htmx:sseMessage", function (event) {
  if (event.detail && event.detail.type === "token") {
    var shown = document.querySelector(".answer-text.streaming");
    window.__streamed.push(shown ? shown.textContent.length : -1);
  }
});
"""
RETURNS_POLICY = """# Returns policy

## Zephyr laptops

A Zephyr laptop may be returned within 45 days of delivery for a full refund, provided it is in its
original packaging. The customer pays no shipping for a laptop return.

## Phones

Phones may be returned within 14 days of delivery. A phone with a cracked screen cannot be returned.

## Gift cards

Gift cards cannot be exchanged for cash and are never refunded.
"""


@pytest.fixture(scope="module")
def media_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("browser-media")


def _app_env(media_dir: Path) -> dict[str, str]:
    return {
        "DJANGO_SETTINGS_MODULE": "tests.search.browser_settings",
        "RAGSITE_INGEST_QUEUE": QUEUE,
        "MEDIA_ROOT": str(media_dir),
    }


@pytest.fixture(scope="module")
def inference_server(logs_dir: Path) -> Iterator[InferenceProcess]:
    """The real inference API with its chat engine (RAGSITE_TEST_CHAT_ENGINE, default llamacpp).

    One llama.cpp thread: threads that spin-wait for each other collapse on an oversubscribed CPU (a
    test machine running other suites), where a single thread only slows down. The deadline is generous
    for the same reason; the test checks what the page does, not how fast the model is.
    """
    server = start_inference(
        log_dir=logs_dir,
        chat_engine=os.environ.get("RAGSITE_TEST_CHAT_ENGINE", "llamacpp"),
        chat_model=os.environ.get("RAGSITE_TEST_CHAT_MODEL", ""),
        extra_env={"INFERENCE_CHAT_THREADS": "1", "INFERENCE_CHAT_TIMEOUT_S": "900"},
    )
    yield server
    server.stop()


@pytest.fixture(scope="module")
def ingest_worker(
    test_database_name: str, logs_dir: Path, inference_server: InferenceProcess, media_dir: Path
) -> Iterator[WorkerProcess]:
    worker = start_worker(
        database_name=test_database_name,
        log_dir=logs_dir,
        queues=QUEUE,
        extra_env={**_app_env(media_dir), "INFERENCE_URL": inference_server.url},
    )
    yield worker
    worker.stop()


@pytest.fixture(scope="module")
def web(
    test_database_name: str,
    logs_dir: Path,
    inference_server: InferenceProcess,
    ingest_worker: WorkerProcess,
    media_dir: Path,
) -> Iterator[WebProcess]:
    """The web app with the real inference API (its chat engine per RAGSITE_TEST_CHAT_ENGINE)."""
    web = start_web(
        database_name=test_database_name,
        log_dir=logs_dir,
        inference_url=inference_server.url,
        extra_env=_app_env(media_dir),
    )
    yield web
    web.stop()


@pytest.fixture(scope="module")
def web_scripted_model(
    test_database_name: str, logs_dir: Path, fake_inference_server: FakeInference, media_dir: Path
) -> Iterator[WebProcess]:
    """The web app with a scripted model, for tests about what the page does with what a model says."""
    web = start_web(
        database_name=test_database_name,
        log_dir=logs_dir,
        inference_url=fake_inference_server.url,
        extra_env=_app_env(media_dir),
    )
    yield web
    web.stop()


def log_in(page: Page, web: WebProcess, username: str, *, next_path: str = "/") -> None:
    page.goto(f"{web.url}/admin/login/?next={next_path}")
    page.fill("#id_username", username)
    page.fill("#id_password", PASSWORD)
    page.click("input[type=submit]")
    page.wait_for_url(f"{web.url}{next_path}")


def ask(page: Page, question: str) -> Any:
    """Ask on the open ask page; returns the new turn once its final answer replaced the stream."""
    before = page.locator("#turns .turn").count()
    page.fill("#ask-form textarea", question)
    page.click("#ask-form button[type=submit]")
    turn = page.locator("#turns .turn").nth(before)
    # Bounded only so that a hung run ends; a small CPU model may take minutes on a busy machine.
    turn.locator(".answer-text.rendered, .status.error").wait_for(timeout=600_000)
    return turn


def assert_inert(page: Page) -> None:
    """Nothing a document, question or model wrote became markup that runs."""
    assert page.evaluate("window.__xss") is None
    assert page.locator("[onerror]").count() == 0
    assert page.locator("script:not([src])").count() == 0
    assert page.locator("main img").count() == 0


@pytest.mark.slow
def test_staff_member_uploads_a_document_asks_and_follows_a_citation(page: Page, web: WebProcess) -> None:
    from django.contrib.auth.models import Permission

    staff = make_group(name="staff")
    ada = make_user(username="ada", is_staff=True, groups=[staff])
    ada.user_permissions.set(Permission.objects.filter(codename__in=["view_document", "add_document"]))
    collection = make_collection(name="Policies", groups=[staff])

    log_in(page, web, "ada", next_path="/ingest/")
    page.select_option("#id_collection", str(collection.id))
    upload: FilePayload = {
        "name": "returns-policy.md",
        "mimeType": "text/markdown",
        "buffer": RETURNS_POLICY.encode(),
    }
    page.set_input_files("#id_documents", files=[upload])
    page.click("#upload-form button[type=submit]")
    page.locator("tr.document.status-ready").wait_for(timeout=300_000)

    page.add_init_script(RECORD_STREAMING)
    page.goto(f"{web.url}/")
    turn = ask(page, "Within how many days can a Zephyr laptop be returned?")
    screenshot(page, "ask-answer")

    streamed = page.evaluate("window.__streamed")
    assert len(streamed) >= 2, "the answer arrived in one piece, not token by token"
    assert streamed == sorted(streamed) and streamed[0] < streamed[-1]
    assert turn.locator(".answer-text.rendered").inner_text().strip()
    sources = turn.locator(".sources li")
    assert sources.count() >= 1
    assert "Zephyr laptops" in turn.locator(".sources").inner_text()

    # The model's own [n] when it wrote one; the numbered source under the answer otherwise.
    citations = turn.locator(".answer-text a.cite")
    citation = citations.first if citations.count() else turn.locator(".sources a.source-link").first
    citation.click()
    page.wait_for_url(re.compile(r"/passages/\d+/#passage$"))
    mark = page.locator("mark#passage")
    assert "45 days" in mark.inner_text()
    assert "Zephyr laptops" in page.locator(".passage-where").inner_text()
    screenshot(page, "ask-passage")


PAYLOAD_SCRIPT = "<script>window.__xss = 1</script>"
PAYLOAD_IMG = '<img src=x onerror="window.__xss = 2">'


def test_script_payloads_in_a_document_a_question_and_an_answer_render_as_inert_text(
    page: Page, web_scripted_model: WebProcess, fake_inference_server: FakeInference
) -> None:
    fake_inference_server.reset()
    fake_inference_server.default_reply = Reply(
        ["The refund note says ", f"{PAYLOAD_SCRIPT} then ", f"{PAYLOAD_IMG} end of refund note [1]."],
        pause_s=0.05,
    )
    staff = make_group(name="staff")
    make_user(username="eve", is_staff=True, groups=[staff])
    document = make_document(title=f"Refunds {PAYLOAD_IMG}", collection__groups=[staff])
    add_chunks(
        document,
        f"Refund note: {PAYLOAD_SCRIPT} then {PAYLOAD_IMG} end of refund note.",
        heading_path=f"Refunds {PAYLOAD_SCRIPT}",
        page=1,
    )
    dialogs: list[str] = []

    def record_dialog(dialog: Dialog) -> None:
        dialogs.append(dialog.message)
        dialog.dismiss()

    page.on("dialog", record_dialog)

    log_in(page, web_scripted_model, "eve")
    turn = ask(page, f"What does the refund note {PAYLOAD_IMG} {PAYLOAD_SCRIPT} say?")

    assert_inert(page)
    assert PAYLOAD_SCRIPT in turn.locator(".question").inner_text()
    assert PAYLOAD_IMG in turn.locator(".sources").inner_text()
    answer = turn.locator(".answer-text.rendered")
    assert "The refund note says" in answer.inner_text()
    # The model's sentence cites passage 1; the passage's own sentence, quoted beside it, may cite it too.
    cites = answer.locator("a.cite")
    assert cites.count() >= 1
    assert {cites.nth(index).get_attribute("href") for index in range(cites.count())} == {
        f"/passages/{document.chunks.get().id}/#passage"
    }
    screenshot(page, "xss-answer")

    cites.first.click()
    page.wait_for_url(re.compile(r"/passages/\d+/#passage$"))
    assert_inert(page)
    assert PAYLOAD_SCRIPT in page.locator("mark#passage").inner_text()
    assert PAYLOAD_IMG in page.locator("h1").inner_text()
    screenshot(page, "xss-passage")
    assert dialogs == []


# Records, at the first streamed token, the extractive answer the page already shows.
RECORD_EXTRACT = """
window.__extractAtFirstToken = null;
document.addEventListener("htmx:sseMessage", function (event) {
  if (event.detail && event.detail.type === "token" && window.__extractAtFirstToken === null) {
    var extract = document.querySelector(".extract-slot .extract");
    var link = extract && extract.querySelector("a.highlight-link");
    window.__extractAtFirstToken = extract ? {text: extract.innerText, href: link && link.href} : "";
  }
});
"""


def test_the_extractive_answer_shows_before_the_first_token_and_a_refusal_shows_no_sources(
    page: Page, web_scripted_model: WebProcess, fake_inference_server: FakeInference
) -> None:
    fake_inference_server.reset()
    fake_inference_server.default_reply = Reply(
        ["A Zephyr laptop ", "can be returned within 45 days."], pause_s=0.5
    )
    staff = make_group(name="staff")
    make_user(username="zoe", is_staff=True, groups=[staff])
    document = make_document(title="Returns policy", collection__groups=[staff])
    add_chunks(
        document,
        "A Zephyr laptop may be returned within 45 days of delivery for a full refund. Phones may be "
        "returned within 14 days.",
        heading_path="Zephyr laptops",
    )

    page.add_init_script(RECORD_EXTRACT)
    log_in(page, web_scripted_model, "zoe")
    turn = ask(page, "Within how many days can a Zephyr laptop be returned?")

    seen = page.evaluate("window.__extractAtFirstToken")
    assert seen, "no extractive answer was shown before the model's first token"
    assert "45 days" in seen["text"] and seen["href"]
    assert "45 days" in turn.locator(".answer-text.rendered").inner_text()
    assert turn.locator(".sources li").count() == 1
    screenshot(page, "ask-extract-answer")

    page.goto(seen["href"])
    quoted = page.locator("mark.quoted")
    assert "within 45 days of delivery" in quoted.inner_text()
    assert "Phones" not in quoted.inner_text() and "Phones" in page.locator("#passage").inner_text()
    screenshot(page, "ask-extract-passage")

    page.goto(f"{web_scripted_model.url}/")
    refused = ask(page, "What is the capital of Australia?")
    assert "could not find anything" in refused.locator(".answer-text.rendered").inner_text()
    assert refused.locator(".sources").count() == 0
    screenshot(page, "ask-refusal")
