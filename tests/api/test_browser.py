"""The API tokens page and the API's docs in Debian's chromium, against the web app served by uvicorn."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING

import httpx
import pytest

from tests.processes import WebProcess, start_web
from tests.search.fake_inference import FakeInference

from .conftest import INGEST_QUEUE
from .factories import make_staff

if TYPE_CHECKING:
    from playwright.sync_api import Dialog, Page

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True)]


@pytest.fixture(scope="module")
def web(
    test_database_name: str, fake_inference_server: FakeInference, logs_dir: Path, media_dir: Path
) -> Iterator[WebProcess]:
    web = start_web(
        database_name=test_database_name,
        log_dir=logs_dir,
        inference_url=fake_inference_server.url,
        extra_env={"MEDIA_ROOT": str(media_dir), "RAGSITE_INGEST_QUEUE": INGEST_QUEUE},
    )
    yield web
    web.stop()


def test_a_token_made_on_the_page_works_at_once_and_stops_when_revoked(page: Page, web: WebProcess) -> None:
    staff = make_staff()  # may see documents
    errors: list[str] = []
    page.on("console", lambda message: errors.append(message.text) if message.type == "error" else None)
    failed: list[str] = []
    page.on("response", lambda response: failed.append(response.url) if response.status >= 400 else None)
    page.goto(f"{web.url}/admin/login/?next=/api/tokens/")
    page.fill("#id_username", staff.username)
    page.fill("#id_password", "correct horse battery staple")  # tests/factories.py
    page.click("input[type=submit]")
    page.wait_for_url(f"{web.url}/api/tokens/")

    page.fill("#id_name", "Nightly report")
    page.click(".token-form button[type=submit]")
    secret = page.locator("#new-token-secret").inner_text()
    assert secret.startswith("rs_")
    assert page.url == f"{web.url}/api/tokens/"  # htmx swapped the panel in place
    headers = {"Authorization": f"Bearer {secret}"}
    assert httpx.get(f"{web.url}/api/v1/documents", headers=headers).json() == {"documents": []}

    def accept(dialog: Dialog) -> None:
        dialog.accept()

    page.on("dialog", accept)
    page.click("table.tokens button:has-text('Revoke')")
    page.locator("table.tokens .status.revoked").wait_for()
    refused = httpx.get(f"{web.url}/api/v1/documents", headers=headers)
    assert refused.status_code == 401 and refused.json()["error"]["code"] == "token_revoked"
    page.reload()
    assert secret not in page.content()  # shown once
    # Nothing blocked by the CSP, no failed request but the browser's own look for a favicon.
    assert [url for url in failed if not url.endswith("/favicon.ico")] == []
    assert [error for error in errors if "404" not in error] == []


def test_the_api_docs_load_from_this_server_under_the_csp(page: Page, web: WebProcess) -> None:
    errors: list[str] = []
    page.on("console", lambda message: errors.append(message.text) if message.type == "error" else None)
    requested: list[str] = []
    page.on("request", lambda request: requested.append(request.url))
    page.goto(f"{web.url}/api/v1/docs")
    page.get_by_text("/api/v1/ask").first.wait_for()
    assert all(url.startswith(web.url) or url.startswith("data:") for url in requested), requested
    assert errors == []
