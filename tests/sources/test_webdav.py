"""The WebDAV connector against a real WsgiDAV server on 127.0.0.1 over a folder the test changes."""

from __future__ import annotations

import socket
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

import pytest

from sources.connectors.base import ConnectorError, Found, SourceConfig
from sources.connectors.webdav import WebDavConnector
from tests.sources.dav_server import PASSWORD, USER, DavServer, dav_server, write


@pytest.fixture
def dav(tmp_path: Path) -> Iterator[DavServer]:
    with dav_server(tmp_path / "share") as server:
        yield server


def scan(server: DavServer, previous: Mapping[str, str] | None = None, **config: Any) -> dict[str, Found]:
    credentials = config.pop("credentials", {"username": USER, "password": PASSWORD})
    connector = WebDavConnector(SourceConfig(location=server.url, credentials=credentials, **config))
    found: dict[str, Found] = {}
    for item in connector.scan(previous=previous or {}):
        assert item.identity not in found
        found[item.identity] = item
    return found


def versions(found: Mapping[str, Found]) -> dict[str, str]:
    return {identity: item.version for identity, item in found.items() if not item.error}


def share(server: DavServer) -> None:
    write(server, "guide.md", "# Guide\n\nHow to use it.\n")
    write(server, "notes.txt", "Some notes.\n")
    write(server, "team/handbook.html", "<html><body><h1>Handbook</h1></body></html>")
    write(server, "team/deep/Ünïcode name.md", "# Deep\n")
    write(server, "team/photo.jpg", "not a document")


def test_first_scan_finds_every_supported_file_in_every_folder(dav: DavServer) -> None:
    share(dav)
    found = scan(dav)
    assert {item.identity.removeprefix(dav.url) for item in found.values()} == {
        "guide.md",
        "notes.txt",
        "team/handbook.html",
        "team/deep/%C3%9Cn%C3%AFcode%20name.md",
    }
    deep = found[dav.url + "team/deep/%C3%9Cn%C3%AFcode%20name.md"]
    assert deep.filename == "Ünïcode name.md" and deep.content == b"# Deep\n"
    assert all(item.version.startswith("etag:") and not item.error for item in found.values())
    # Depth: 1 listings, one per folder, never Depth: infinity.
    assert sorted(path for method, path in dav.requests if method == "PROPFIND") == [
        "/dav/",
        "/dav/team/",
        "/dav/team/deep/",
    ]


def test_an_unchanged_file_is_not_downloaded_and_an_edit_changes_one_version(dav: DavServer) -> None:
    share(dav)
    first = versions(scan(dav))
    write(dav, "notes.txt", "Some notes, edited and longer.\n")
    dav.requests.clear()

    second = scan(dav, previous=first)

    changed = {identity for identity, item in second.items() if item.content is not None}
    assert changed == {dav.url + "notes.txt"}
    assert second[dav.url + "notes.txt"].version != first[dav.url + "notes.txt"]
    assert second[dav.url + "notes.txt"].content == b"Some notes, edited and longer.\n"
    assert dav.gets() == ["/dav/notes.txt"]
    assert {
        identity: version for identity, version in versions(second).items() if "notes" not in identity
    } == {identity: version for identity, version in first.items() if "notes" not in identity}


def test_a_deleted_file_is_no_longer_found(dav: DavServer) -> None:
    share(dav)
    first = versions(scan(dav))
    (dav.root / "team" / "handbook.html").unlink()
    second = scan(dav, previous=first)
    assert set(second) == set(first) - {dav.url + "team/handbook.html"}


def test_patterns_choose_the_files_and_prune_folders(dav: DavServer) -> None:
    share(dav)
    found = scan(dav, include=("*.md",), exclude=("team/deep/*",))
    assert set(found) == {dav.url + "guide.md"}
    assert "/dav/team/deep/" not in [path for _, path in dav.requests]


def test_a_file_above_the_size_limit_is_a_failed_item_and_not_downloaded(dav: DavServer) -> None:
    share(dav)
    write(dav, "big.txt", "x" * 5000)
    found = scan(dav, options={"max_bytes": 1000})
    assert "more than max_bytes" in found[dav.url + "big.txt"].error
    assert "/dav/big.txt" not in dav.gets()


def test_a_folder_that_cannot_be_listed_keeps_its_files_as_failed_items(dav: DavServer) -> None:
    share(dav)
    first = versions(scan(dav))
    dav.broken_folders.add("/dav/team/")
    second = scan(dav, previous=first)
    kept = {identity for identity, item in second.items() if item.error}
    assert kept == {dav.url + "team/handbook.html", dav.url + "team/deep/%C3%9Cn%C3%AFcode%20name.md"}
    assert all("HTTP 500" in second[identity].error for identity in kept)
    assert all(second[identity].version == first[identity] for identity in kept)


def test_wrong_credentials_fail_the_scan(dav: DavServer) -> None:
    share(dav)
    with pytest.raises(ConnectorError, match="refused the credentials"):
        scan(dav, credentials={"username": USER, "password": "wrong"})
    with pytest.raises(ConnectorError, match="refused the credentials"):
        scan(dav, credentials={})


def test_a_missing_folder_fails_the_scan(dav: DavServer) -> None:
    connector = WebDavConnector(
        SourceConfig(location=dav.url + "nowhere/", credentials={"username": USER, "password": PASSWORD})
    )
    with pytest.raises(ConnectorError, match="no folder at"):
        list(connector.scan(previous={}))


def test_a_server_that_cannot_be_reached_fails_the_scan() -> None:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    connector = WebDavConnector(SourceConfig(location=f"http://127.0.0.1:{port}/dav/"))
    with pytest.raises(ConnectorError, match="cannot be reached"):
        list(connector.scan(previous={}))


def test_a_plain_web_server_is_not_taken_for_a_webdav_folder() -> None:
    from tests.sources.site_server import site_server

    with site_server() as site:
        connector = WebDavConnector(SourceConfig(location=site.url + "/"))
        with pytest.raises(ConnectorError, match="not a WebDAV folder"):
            list(connector.scan(previous={}))
