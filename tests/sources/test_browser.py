"""The sources page in Debian's chromium, against the web app served by uvicorn as in production: the sync
button starts a sync whose row follows it live (htmx polling) to its counts, without a reload."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING

import pytest
from django.contrib.auth.models import Permission

from ingest.models import Document
from tests.factories import CollectionFactory, GroupFactory, SourceFactory, StaffUserFactory
from tests.ingest.conftest import wait_until_done
from tests.processes import InferenceProcess, WebProcess, WorkerProcess, start_web
from tests.sources.conftest import SOURCES_INGEST_QUEUE, SOURCES_QUEUE, Repository

if TYPE_CHECKING:
    from playwright.sync_api import Page

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True)]

PASSWORD = "correct horse battery staple"


@pytest.fixture(scope="module")
def web(
    test_database_name: str, logs_dir: Path, embedding_server: InferenceProcess, media_dir: Path
) -> Iterator[WebProcess]:
    web = start_web(
        database_name=test_database_name,
        log_dir=logs_dir,
        inference_url=embedding_server.url,
        extra_env={
            "RAGSITE_SOURCES_QUEUE": SOURCES_QUEUE,
            "RAGSITE_INGEST_QUEUE": SOURCES_INGEST_QUEUE,
            "MEDIA_ROOT": str(media_dir),
        },
    )
    yield web
    web.stop()


def _row_cell(page: Page, source_id: int, name: str) -> str:
    return page.locator(f"#source-{source_id} td.count.{name}").inner_text().strip()


def test_the_sync_button_starts_a_sync_the_row_follows_live(
    page: Page, web: WebProcess, sources_worker: WorkerProcess, repository: Repository
) -> None:
    group = GroupFactory.create(name="handbook-editors")
    user = StaffUserFactory.create()
    user.groups.add(group)
    user.user_permissions.set(
        Permission.objects.filter(
            content_type__app_label="sources", codename__in=["view_source", "change_source"]
        )
    )
    collection = CollectionFactory.create(name="Handbook")
    collection.groups.add(group)
    repository.commit("handbook", {"leave.md": "# Leave\n\n28 days.\n", "vpn.md": "# VPN\n\nWireGuard.\n"})
    source = SourceFactory.create(name="Handbook repo", collection=collection, location=str(repository.path))

    page.goto(f"{web.url}/admin/login/?next=/sources/")
    page.fill("#id_username", user.username)
    page.fill("#id_password", PASSWORD)
    page.click("input[type=submit]")
    page.wait_for_url(f"{web.url}/sources/")
    row = page.locator(f"#source-{source.id}")
    assert "Never synced" in row.inner_text()

    navigations: list[str] = []
    page.on("framenavigated", lambda frame: navigations.append(frame.url))
    row.get_by_role("button", name="Sync now").click()
    # Bounded only so that a hung run ends; the row updates itself (no reload) until the sync is done.
    row.locator(".status", has_text="Succeeded").wait_for(timeout=120_000)
    assert (_row_cell(page, source.id, "seen"), _row_cell(page, source.id, "new")) == ("2", "2")
    assert navigations == []

    repository.commit("leave goes up", {"leave.md": "# Leave\n\n30 days.\n"}, remove=("vpn.md",))
    page.locator(f"#source-{source.id}").get_by_role("button", name="Sync now").click()
    page.locator(f"#source-{source.id} td.count.changed", has_text="1").wait_for(timeout=120_000)
    page.locator(f"#source-{source.id} .status", has_text="Succeeded").wait_for(timeout=120_000)
    assert _row_cell(page, source.id, "deleted") == "1"
    assert navigations == []
    wait_until_done(
        Document.objects.filter(collection=collection).values_list("id", flat=True), worker=sources_worker
    )
