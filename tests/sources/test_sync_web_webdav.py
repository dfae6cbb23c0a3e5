"""Web-site and WebDAV sources through the sync engine: a real local site and WsgiDAV server, PostgreSQL, and
a real Celery worker that ingests what the sync queues through the real inference API."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from ingest.models import Document
from sources import services
from sources.models import Source, SourceItem, SyncRun
from tests.factories import SourceFactory
from tests.ingest.conftest import wait_until_done
from tests.processes import WorkerProcess
from tests.sources.dav_server import PASSWORD, USER, DavServer, dav_server, write
from tests.sources.site_server import Page, Site, html, site_server

pytestmark = pytest.mark.django_db(transaction=True)


@pytest.fixture
def site() -> Iterator[Site]:
    with site_server() as served:
        yield served


@pytest.fixture
def dav(tmp_path: Path) -> Iterator[DavServer]:
    with dav_server(tmp_path / "share") as server:
        yield server


def sync_and_ingest(source: Source, worker: WorkerProcess) -> SyncRun:
    run = services.source_sync(source_id=source.id)
    assert run is not None
    wait_until_done(
        Document.objects.filter(collection=source.collection).values_list("id", flat=True), worker=worker
    )
    return run


def counts(run: SyncRun) -> tuple[str, int, int, int, int, int]:
    return (run.status, run.seen, run.new, run.changed, run.deleted, run.failed)


def identities(source: Source) -> set[str]:
    return set(
        SourceItem.objects.filter(source=source, document__isnull=False).values_list("identity", flat=True)
    )


def test_a_web_site_is_synced_incrementally(site: Site, sources_worker: WorkerProcess) -> None:
    site.pages = {
        "/": Page(html("Handbook", links=("/leave.html", "/vpn.html", "/old.html"))),
        "/leave.html": Page(html("Leave", text="Everyone has 28 days of paid leave a year.")),
        "/vpn.html": Page(html("VPN", text="Use WireGuard to reach the intranet.")),
        "/old.html": Page(html("Old", text="The old canteen menu.")),
    }
    source = SourceFactory.create(kind="web", location=site.url + "/")

    first = sync_and_ingest(source, sources_worker)

    assert counts(first) == ("succeeded", 4, 4, 0, 0, 0)
    leave = SourceItem.objects.get(source=source, identity=f"{site.url}/leave.html")
    assert leave.url == f"{site.url}/leave.html"
    assert leave.document is not None and leave.document.title == "Leave"

    site.pages["/"] = Page(html("Handbook", links=("/leave.html", "/vpn.html", "/old.html", "/new.html")))
    site.pages["/leave.html"] = Page(html("Leave", text="Everyone has 30 days of paid leave a year."))
    site.pages["/new.html"] = Page(html("New", text="The new parking rules."))
    del site.pages["/old.html"]

    second = sync_and_ingest(source, sources_worker)

    # The home page changed too (a new link); the unchanged VPN page cost a request and nothing else.
    assert counts(second) == ("succeeded", 4, 1, 2, 1, 0)
    assert identities(source) == {f"{site.url}/{name}" for name in ("", "leave.html", "vpn.html", "new.html")}


def test_a_failing_page_keeps_its_document_and_says_why(site: Site, sources_worker: WorkerProcess) -> None:
    site.pages = {
        "/": Page(html("Handbook", links=("/leave.html",))),
        "/leave.html": Page(html("Leave", text="Everyone has 28 days of paid leave a year.")),
    }
    source = SourceFactory.create(kind="web", location=site.url + "/")
    sync_and_ingest(source, sources_worker)
    site.pages["/leave.html"] = Page(b"down", status=500)

    run = sync_and_ingest(source, sources_worker)

    assert counts(run) == ("succeeded", 2, 0, 0, 0, 1)
    assert "leave.html: HTTP 500" in run.message
    assert f"{site.url}/leave.html" in identities(source)


def test_a_site_that_stops_at_the_page_limit_says_so(site: Site, sources_worker: WorkerProcess) -> None:
    site.pages = {"/": Page(html("Big", links=tuple(f"/p{n}.html" for n in range(30))))}
    for n in range(30):
        site.pages[f"/p{n}.html"] = Page(html(f"Page {n}", text=f"Page number {n} of the big site."))
    source = SourceFactory.create(kind="web", location=site.url + "/", options={"max_pages": 5})

    run = sync_and_ingest(source, sources_worker)

    assert counts(run) == ("succeeded", 5, 5, 0, 0, 0)
    assert "max_pages=5" in run.message


def test_an_unreachable_site_fails_the_run_and_deletes_nothing(
    site: Site, sources_worker: WorkerProcess
) -> None:
    site.pages = {"/": Page(html("Handbook", text="The handbook."))}
    source = SourceFactory.create(kind="web", location=site.url + "/")
    sync_and_ingest(source, sources_worker)
    site.pages = {"/": Page(b"down", status=503)}

    run = sync_and_ingest(source, sources_worker)

    assert run.status == "failed" and "HTTP 503" in run.message
    assert identities(source) == {f"{site.url}/"}


def webdav_source(dav: DavServer, **kwargs: Any) -> Source:
    source = SourceFactory.create(kind="webdav", location=dav.url, **kwargs)
    services.source_credentials_set(source=source, credentials={"username": USER, "password": PASSWORD})
    return source


def test_a_webdav_share_is_synced_incrementally(dav: DavServer, sources_worker: WorkerProcess) -> None:
    write(dav, "guide.md", "# Guide\n\nHow to book a meeting room.\n")
    write(dav, "team/notes.txt", "The team meets on Tuesdays.\n")
    source = webdav_source(dav)

    assert counts(sync_and_ingest(source, sources_worker)) == ("succeeded", 2, 2, 0, 0, 0)

    write(dav, "team/notes.txt", "The team meets on Wednesdays from now on.\n")
    Path(dav.root / "guide.md").unlink()
    dav.requests.clear()
    second = sync_and_ingest(source, sources_worker)

    assert counts(second) == ("succeeded", 1, 0, 1, 1, 0)
    assert dav.gets() == ["/dav/team/notes.txt"]


def test_refused_webdav_credentials_fail_the_run_with_a_message(
    dav: DavServer, sources_worker: WorkerProcess
) -> None:
    write(dav, "guide.md", "# Guide\n")
    source = webdav_source(dav)
    services.source_credentials_set(source=source, credentials={"username": USER, "password": "wrong"})

    run = services.source_sync(source_id=source.id)

    assert run is not None and run.status == "failed"
    assert "refused the credentials" in run.message
