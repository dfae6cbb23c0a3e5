"""A WebDAV folder as a source (Nextcloud, ownCloud, SharePoint, Apache mod_dav): docs/connectors.md.

Folders are listed with PROPFIND Depth: 1, one folder at a time (servers often refuse Depth: infinity), and
each file's version is its ETag (else its modification date and size), so an unchanged file costs no request
of its own: only a new or changed one is downloaded. A sub-folder that cannot be listed keeps the files the
last sync found in it (failed items saying why); the share's own folder failing fails the sync.
"""

from __future__ import annotations

import time
from collections import deque
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from pathlib import PurePosixPath
from typing import ClassVar
from urllib.parse import quote, unquote, urljoin, urlsplit, urlunsplit

import httpx
import lxml.etree

from sources.connectors.base import ConnectorError, Found, SourceConfig
from sources.connectors.http_common import (
    SUPPORTED_EXTENSIONS,
    USER_AGENT,
    ItemTooLarge,
    ItemTooSlow,
    basic_auth,
    capped,
    content_hash_version,
    float_option,
    int_option,
    matches_patterns,
    read_body,
    size_text,
)

_DAV = "{DAV:}"
_PROPFIND = b"""<?xml version="1.0" encoding="utf-8"?>
<d:propfind xmlns:d="DAV:"><d:prop>
<d:resourcetype/><d:getetag/><d:getlastmodified/><d:getcontentlength/><d:displayname/>
</d:prop></d:propfind>"""


class _ListingFailed(Exception):
    pass


@dataclass(frozen=True)
class _Entry:
    url: str
    is_folder: bool
    etag: str = ""
    modified: str = ""
    length: int | None = None

    @property
    def version(self) -> str:
        if self.etag:
            return f"etag:{self.etag}"
        if self.modified:
            return f"modified:{self.modified};size:{self.length}"
        return ""


def _normalized(url: str) -> str:
    """One spelling per file, whichever percent-encoding the server chose for its hrefs."""
    parts = urlsplit(url)
    path = quote(unquote(parts.path), safe="/:@!$&'()*+,;=-._~")
    return urlunsplit((parts.scheme.lower(), parts.netloc.lower(), path, "", ""))


class WebDavConnector:
    """The supported files of one WebDAV folder and its sub-folders."""

    kind: ClassVar[str] = "webdav"

    def __init__(self, config: SourceConfig) -> None:
        self.config = config
        self.notes: list[str] = []

    def scan(self, *, previous: Mapping[str, str]) -> Iterator[Found]:
        self.notes = []
        try:
            timeout_s = float_option(self.config.options, "timeout_s", 60.0)
            max_bytes = capped(
                int_option(self.config.options, "max_bytes", 200 * 2**20), self.config.max_item_bytes
            )
        except ValueError as exc:
            raise ConnectorError(f"The WebDAV source's settings are wrong: {exc}.") from exc
        location = self.config.location.strip()
        parts = urlsplit(location)
        if parts.scheme not in ("http", "https") or not parts.hostname:
            raise ConnectorError(
                f"The location {location!r} is not a WebDAV address: give the folder's URL, e.g. "
                "https://cloud.example.org/remote.php/dav/files/USER/Documents/."
            )
        if not location.endswith("/"):
            location += "/"
        with httpx.Client(
            timeout=httpx.Timeout(timeout_s),
            auth=basic_auth(self.config.credentials),
            headers={"User-Agent": USER_AGENT},
            follow_redirects=True,
        ) as client:
            share = _Share(
                config=self.config,
                client=client,
                previous=previous,
                root=_normalized(location),
                timeout_s=timeout_s,
                max_bytes=max_bytes,
            )
            yield from share.scan()


class _Share:
    def __init__(
        self,
        *,
        config: SourceConfig,
        client: httpx.Client,
        previous: Mapping[str, str],
        root: str,
        timeout_s: float,
        max_bytes: int,
    ) -> None:
        self.config = config
        self.client = client
        self.previous = previous
        self.root = root
        self.timeout_s = timeout_s
        self.max_bytes = max_bytes

    def relative(self, url: str) -> str:
        return unquote(urlsplit(url).path).removeprefix(unquote(urlsplit(self.root).path))

    def scan(self) -> Iterator[Found]:
        try:
            root_entries = self.list_folder(self.root)
        except _ListingFailed as exc:
            raise ConnectorError(str(exc)) from exc
        folders: deque[tuple[str, list[_Entry]]] = deque([(self.root, root_entries)])
        visited = {self.root}
        while folders:
            folder, entries = folders.popleft()
            for entry in entries:
                if entry.url in visited or not entry.url.startswith(self.root):
                    continue
                visited.add(entry.url)
                names = [entry.url, self.relative(entry.url)]
                if not matches_patterns(names, include=(), exclude=self.config.exclude):
                    continue
                if entry.is_folder:
                    try:
                        folders.append((entry.url, self.list_folder(entry.url)))
                    except _ListingFailed as exc:
                        yield from self.kept_under(entry.url, str(exc))
                    continue
                if PurePosixPath(entry.url).suffix.lower() not in SUPPORTED_EXTENSIONS:
                    continue
                if not matches_patterns(names, include=self.config.include, exclude=()):
                    continue
                if found := self.item(entry):
                    yield found

    def kept_under(self, folder: str, why: str) -> Iterator[Found]:
        """The files the last sync found in a folder that cannot be listed now: kept, as failed items."""
        for identity, version in self.previous.items():
            if identity.startswith(folder):
                yield Found(
                    identity=identity,
                    version=version,
                    filename=PurePosixPath(unquote(urlsplit(identity).path)).name,
                    url=identity,
                    error=f"{why} The file is kept until its folder can be listed again.",
                )

    def list_folder(self, folder: str) -> list[_Entry]:
        """The folder's members (files and sub-folders), from one PROPFIND Depth: 1."""
        try:
            response = self.client.request(
                "PROPFIND",
                folder,
                content=_PROPFIND,
                headers={"Depth": "1", "Content-Type": "application/xml; charset=utf-8"},
            )
        except httpx.TooManyRedirects as exc:
            raise _ListingFailed(f"The folder {folder} redirects in a loop; check the address.") from exc
        except httpx.TimeoutException as exc:
            raise _ListingFailed(
                f"The WebDAV server did not answer within {self.timeout_s:g} s for {folder}; "
                "check that it is up."
            ) from exc
        except httpx.HTTPError as exc:
            raise _ListingFailed(
                f"The WebDAV server at {folder} cannot be reached ({exc}). Check the address and that the "
                "server is up and reachable from the workers."
            ) from exc
        status = response.status_code
        if status == 401:
            raise _ListingFailed(
                f"The WebDAV server refused the credentials (HTTP 401) for {folder}: check the user name and "
                "password (Nextcloud and ownCloud want an app password when two-factor login is on)."
            )
        if status == 403:
            raise _ListingFailed(f"The WebDAV server forbids listing {folder} (HTTP 403) to this user.")
        if status == 404:
            raise _ListingFailed(f"There is no folder at {folder} (HTTP 404); check the location.")
        if status in (405, 501):
            raise _ListingFailed(
                f"{folder} does not answer WebDAV's PROPFIND (HTTP {status}): it is not a WebDAV folder. "
                "Nextcloud's is https://HOST/remote.php/dav/files/USER/FOLDER/."
            )
        if status != 207:
            raise _ListingFailed(f"The WebDAV server answered HTTP {status} when listing {folder}.")
        base = str(response.url)
        try:
            root = lxml.etree.fromstring(
                response.content, parser=lxml.etree.XMLParser(resolve_entities=False, no_network=True)
            )
        except lxml.etree.XMLSyntaxError as exc:
            raise _ListingFailed(
                f"{folder} answered PROPFIND with something other than WebDAV XML ({exc})."
            ) from exc
        return [entry for node in root.iter(f"{_DAV}response") if (entry := _entry(node, base=base))]

    def item(self, entry: _Entry) -> Found | None:
        filename = PurePosixPath(unquote(urlsplit(entry.url).path)).name
        previous = self.previous.get(entry.url)
        version = entry.version
        if version and version == previous:
            return Found(identity=entry.url, version=version, filename=filename, url=entry.url)
        if entry.length is not None and entry.length > self.max_bytes:
            return self.failed(
                entry, f"it is {size_text(entry.length)}, more than max_bytes ({size_text(self.max_bytes)})"
            )
        try:
            with self.client.stream("GET", entry.url) as response:
                if response.status_code in (404, 410):
                    return None  # deleted since the folder was listed
                if response.status_code != 200:
                    return self.failed(entry, f"HTTP {response.status_code}")
                data = read_body(
                    response, max_bytes=self.max_bytes, deadline=time.monotonic() + self.timeout_s
                )
        except httpx.TimeoutException:
            return self.failed(entry, f"no answer within {self.timeout_s:g} s")
        except ItemTooSlow:
            return self.failed(entry, f"the download took longer than {self.timeout_s:g} s")
        except ItemTooLarge as exc:
            return self.failed(entry, f"it is {size_text(exc.args[0])}, more than max_bytes")
        except httpx.HTTPError as exc:
            return self.failed(entry, f"it could not be downloaded ({exc})")
        version = version or content_hash_version(data)
        content = None if version == previous else data
        return Found(identity=entry.url, version=version, filename=filename, url=entry.url, content=content)

    def failed(self, entry: _Entry, why: str) -> Found:
        return Found(
            identity=entry.url,
            version=self.previous.get(entry.url, ""),
            filename=PurePosixPath(unquote(urlsplit(entry.url).path)).name,
            url=entry.url,
            error=f"{entry.url}: {why}.",
        )


def _entry(node: lxml.etree._Element, *, base: str) -> _Entry | None:
    href = node.findtext(f"{_DAV}href")
    if not href:
        return None
    url = _normalized(urljoin(base, href.strip()))
    for propstat in node.iter(f"{_DAV}propstat"):
        if " 200 " not in f"{propstat.findtext(f'{_DAV}status') or ''} ":
            continue
        prop = propstat.find(f"{_DAV}prop")
        if prop is None:
            continue
        is_folder = prop.find(f"{_DAV}resourcetype/{_DAV}collection") is not None
        length_text = (prop.findtext(f"{_DAV}getcontentlength") or "").strip()
        return _Entry(
            url=url if not is_folder or url.endswith("/") else url + "/",
            is_folder=is_folder,
            etag=(prop.findtext(f"{_DAV}getetag") or "").strip(),
            modified=(prop.findtext(f"{_DAV}getlastmodified") or "").strip(),
            length=int(length_text) if length_text.isdigit() else None,
        )
    return None
