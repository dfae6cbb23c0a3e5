"""The widget in Debian's chromium, embedded by a page of another origin, against the real web app."""

from __future__ import annotations

import json
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pytest
from django.db import connections

from ragsite.devstack import free_port, wait_for_port
from tests.browser import screenshot
from tests.processes import ROOT, WebProcess
from tests.search.factories import DocumentFactory, add_chunks
from tests.search.fake_inference import FakeInference, Reply
from widget.models import WidgetExchange
from widget.selectors import widget_snippet
from widget.tokens import token_mint

from .factories import make_key

if TYPE_CHECKING:
    from playwright.sync_api import Page

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True)]

LAPTOPS = "Customers may return a laptop within 30 days of delivery for a full refund."
INTERNAL = "Internal only: laptop refunds above 2000 EUR need the finance director's approval."
HOST_PAGE = """<!doctype html>
<html><head><meta charset="utf-8"><title>Helpdesk</title>
<style>
  body {{ font: 18px Georgia, serif; color: rgb(10, 20, 30); }}
  h1 {{ color: rgb(200, 0, 0); letter-spacing: 2px; }}
  button {{ background: rgb(0, 128, 0); padding: 3px; }}
  div, section, p, textarea {{ border: 4px dashed rgb(255, 0, 255); }}
</style></head>
<body><h1 id="title">Ticket #4711</h1><button id="reply">Reply</button>
{snippet}
</body></html>
"""


@dataclass
class HostSite:
    """A helpdesk's pages on an origin of their own: python's http.server on another loopback port."""

    process: subprocess.Popen[bytes]
    port: int

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def stop(self) -> None:
        self.process.terminate()
        self.process.wait(timeout=30)


def host_site(directory: Path, *, snippet: str, port: int) -> HostSite:
    directory.mkdir()
    (directory / "ticket.html").write_text(HOST_PAGE.format(snippet=snippet))
    (directory / "bare.html").write_text(HOST_PAGE.format(snippet=""))
    command = [
        sys.executable,
        "-m",
        "http.server",
        "--bind",
        "127.0.0.1",
        "--directory",
        str(directory),
        str(port),
    ]
    log = directory.with_suffix(".log")
    with open(log, "wb") as out:
        process = subprocess.Popen(command, cwd=ROOT, stdout=out, stderr=subprocess.STDOUT)
    try:
        wait_for_port(port, timeout=60, process=process)
    except (RuntimeError, TimeoutError):
        raise RuntimeError(log.read_text()) from None
    return HostSite(process, port)


@pytest.fixture(autouse=True)
def close_playwright_side_connections(browser: Any) -> Iterator[None]:
    yield
    # The test's ORM calls inside Playwright's loop opened a connection of their own: give it back.
    connections.close_all()


@pytest.fixture
def two_collections() -> tuple[Any, Any]:
    public = DocumentFactory.create(title="Returns policy")
    add_chunks(public, LAPTOPS, heading_path="Returns > Laptops", page=2)
    internal = DocumentFactory.create(title="Finance handbook")
    add_chunks(internal, INTERNAL, heading_path="Refunds > Approval")
    return public.collection, internal.collection


@dataclass
class Embedded:
    allowed: HostSite
    refused: HostSite
    snippet: str
    key: Any


@pytest.fixture
def embedded(web: WebProcess, two_collections: tuple[Any, Any], tmp_path: Path) -> Iterator[Embedded]:
    """The same snippet on two helpdesk origins; the key allows the first and reads collection A only."""
    allowed_port, refused_port = free_port(), free_port()
    key, _ = make_key(collections=[two_collections[0]], origins=[f"http://127.0.0.1:{allowed_port}"])
    snippet = widget_snippet(key=key, base_url=web.url)
    allowed = host_site(tmp_path / "allowed", snippet=snippet, port=allowed_port)
    refused = host_site(tmp_path / "refused", snippet=snippet, port=refused_port)
    yield Embedded(allowed=allowed, refused=refused, snippet=snippet, key=key)
    allowed.stop()
    refused.stop()


def ask(page: Page, question: str) -> None:
    page.get_by_role("button", name="Ask ragsite").click()
    box = page.get_by_label("Your question")
    box.fill(question)
    box.press("Enter")


RECORD_ANSWER_TEXTS = """() => {
  const root = document.querySelector("ragsite-widget").shadowRoot;
  const seen = [];
  new MutationObserver(() => {
    const all = root.querySelectorAll(".a");
    const answer = all[all.length - 1];
    if (answer && seen[seen.length - 1] !== answer.textContent) seen.push(answer.textContent);
  }).observe(root, {subtree: true, childList: true, characterData: true});
  return seen;
}"""


def test_a_page_of_another_origin_gets_a_streamed_answer_with_sources_from_the_keys_collection_only(
    embedded: Embedded, fake_inference: FakeInference, page: Page
) -> None:
    from playwright.sync_api import expect

    fake_inference.default_reply = Reply(
        ["Laptops can be returned ", "within 30 days ", "of delivery [1]."], 0.3
    )
    page.goto(f"{embedded.allowed.url}/ticket.html")
    page.evaluate(f"() => {{ window.__answers = ({RECORD_ANSWER_TEXTS})(); }}")

    ask(page, "How do laptop refunds work?")

    panel = page.get_by_role("dialog", name="Ask ragsite")
    expect(panel.get_by_text("Laptops can be returned within 30 days of delivery [1].")).to_be_visible()
    expect(panel.get_by_role("button", name="Ask", exact=True)).to_be_enabled()  # the stream is done
    # Streamed: the answer grew in steps on screen, not in one piece at the end.
    answers = page.evaluate("() => window.__answers")
    assert "Laptops can be returned " in answers and answers[-1].endswith("[1].")
    source = panel.get_by_text("[1] Returns policy — Returns > Laptops — p. 2")
    expect(source).to_be_visible()
    expect(panel.get_by_text(LAPTOPS)).to_be_hidden()
    source.click()
    expect(panel.get_by_text(LAPTOPS)).to_be_visible()
    screenshot(page, "widget-answer-with-sources")
    # Collection B's passage matches the question too, but the key reads collection A only.
    assert "finance director" not in panel.inner_text()
    assert "finance director" not in json.dumps(fake_inference.answer_requests)
    exchange = WidgetExchange.objects.get(key=embedded.key)
    assert exchange.status == WidgetExchange.Status.ANSWERED
    assert exchange.origin == embedded.allowed.url


def test_the_same_snippet_on_a_disallowed_origin_is_refused_in_words(embedded: Embedded, page: Page) -> None:
    from playwright.sync_api import expect

    page.goto(f"{embedded.refused.url}/ticket.html")
    page.get_by_role("button", name="Ask ragsite").click()

    alert = page.get_by_role("alert")
    expect(alert).to_contain_text(f"This widget is not allowed on {embedded.refused.url}")
    expect(page.get_by_label("Your question")).to_be_disabled()
    assert not WidgetExchange.objects.filter(key=embedded.key).exists()


def test_busy_429_is_shown_and_retried_after_retry_after(
    embedded: Embedded, fake_inference: FakeInference, page: Page
) -> None:
    from playwright.sync_api import expect

    fake_inference.default_reply = Reply(["Within 30 days [1]."])
    refusals: list[str] = []

    def busy_once(route: Any) -> None:
        # The server's own limit would make the test wait a minute; the widget's reaction is the subject.
        if route.request.method == "POST" and not refusals:
            refusals.append(route.request.url)
            route.fulfill(
                status=429,
                headers={
                    "Retry-After": "1",
                    "Access-Control-Allow-Origin": embedded.allowed.url,
                    "Access-Control-Expose-Headers": "Retry-After",
                    "Content-Type": "application/json",
                },
                body=json.dumps({"error": {"code": "rate_limited", "message": "Too many questions."}}),
            )
        else:
            route.continue_()

    page.route("**/widget/v1/*/ask", busy_once)
    page.goto(f"{embedded.allowed.url}/ticket.html")
    ask(page, "How long for laptop refunds?")

    expect(page.get_by_role("status")).to_have_text("Busy, retrying in 1 s (attempt 1 of 3)…")
    expect(page.get_by_text("Within 30 days [1].")).to_be_visible()
    assert len(refusals) == 1


def test_the_script_adds_one_global_and_leaves_the_host_pages_styles_alone(
    embedded: Embedded, page: Page
) -> None:
    page.goto(f"{embedded.allowed.url}/bare.html")
    globals_before = set(page.evaluate("() => Object.keys(window)"))
    style_script = """() => [...document.querySelectorAll("body, h1, button")].map(element => {
      const style = getComputedStyle(element);
      return [style.font, style.color, style.background, style.padding, style.border, style.letterSpacing];
    })"""
    styles_before = page.evaluate(style_script)

    # The admin's snippet, inserted as the page's own HTML would run it.
    page.evaluate(
        """snippet => new Promise(resolve => {
          const fragment = document.createRange().createContextualFragment(snippet);
          fragment.querySelector("script").addEventListener("load", resolve);
          document.body.appendChild(fragment);
        })""",
        embedded.snippet,
    )
    page.get_by_role("button", name="Ask ragsite").click()
    page.get_by_label("Your question").fill("Anything?")

    assert set(page.evaluate("() => Object.keys(window)")) - globals_before == {"RagsiteWidget"}
    assert page.evaluate(style_script) == styles_before
    # Nor do the host's styles reach in: the page's dashed magenta borders stop at the shadow root.
    panel_border = page.evaluate(
        """() => getComputedStyle(
              document.querySelector("ragsite-widget").shadowRoot.querySelector("section")
            ).borderTopStyle"""
    )
    assert panel_border == "solid"


def test_the_widget_works_from_the_keyboard_alone(
    embedded: Embedded, fake_inference: FakeInference, page: Page
) -> None:
    from playwright.sync_api import expect

    fake_inference.default_reply = Reply(["Within 30 days [1]."])
    page.goto(f"{embedded.allowed.url}/ticket.html")
    launcher = page.get_by_role("button", name="Ask ragsite")
    launcher.focus()
    page.keyboard.press("Enter")

    expect(launcher).to_have_attribute("aria-expanded", "true")
    expect(page.get_by_label("Your question")).to_be_focused()
    page.keyboard.type("How long for laptop refunds?")
    page.keyboard.press("Enter")
    expect(page.get_by_text("Within 30 days [1].")).to_be_visible()
    summary = page.get_by_text("[1] Returns policy — Returns > Laptops — p. 2")
    summary.focus()
    page.keyboard.press("Enter")
    expect(page.get_by_text(LAPTOPS)).to_be_visible()
    page.keyboard.press("Escape")

    expect(page.get_by_role("dialog")).to_be_hidden()
    expect(launcher).to_be_focused()
    expect(launcher).to_have_attribute("aria-expanded", "false")


def test_a_key_requiring_tokens_answers_with_the_host_backends_token_and_refuses_a_copied_snippet(
    web: WebProcess,
    two_collections: tuple[Any, Any],
    fake_inference: FakeInference,
    page: Page,
    tmp_path: Path,
) -> None:
    from playwright.sync_api import expect

    port = free_port()
    key, secret = make_key(
        collections=[two_collections[0]], origins=[f"http://127.0.0.1:{port}"], requires_visitor_token=True
    )
    snippet = widget_snippet(key=key, base_url=web.url)
    with_token_url = snippet.replace("/your-backend/ragsite-widget-token", "/token.txt")
    site = host_site(tmp_path / "tokens", snippet=with_token_url, port=port)
    # The host backend's token endpoint, as a file: what it would answer to a signed-in agent.
    (tmp_path / "tokens" / "token.txt").write_text(
        token_mint(secret=secret, public_id=key.public_id, visitor_id="agent.7@example.com")
    )
    (tmp_path / "tokens" / "copied.html").write_text(
        HOST_PAGE.format(snippet=snippet.replace(' data-token-url="/your-backend/ragsite-widget-token"', ""))
    )
    fake_inference.default_reply = Reply(["Within 30 days [1]."])
    try:
        page.goto(f"{site.url}/ticket.html")
        ask(page, "How long for laptop refunds?")
        expect(page.get_by_text("Within 30 days [1].")).to_be_visible()
        assert WidgetExchange.objects.get(key=key).visitor == "agent.7@example.com"

        page.goto(f"{site.url}/copied.html")
        ask(page, "How long for laptop refunds?")
        expect(page.get_by_role("alert")).to_contain_text("needs a visitor token")
        assert WidgetExchange.objects.filter(key=key).count() == 1
    finally:
        site.stop()
