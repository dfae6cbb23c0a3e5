"""What a connector is: the items a source holds now, each with an identity and a version.

A sync asks a connector to `scan` its source, passing the version it stored for each identity last time.
The connector yields every item the source holds now, in any order: with its content where it is new or
changed, with `content=None` where the stored version is still current (found by one cheap request or
none: a conditional GET, a PROPFIND ETag, a git blob id). Identities the scan does not yield are gone from
the source and the sync deletes their documents, but only after the scan has finished: a scan that raises
`ConnectorError` part way deletes nothing. A connector holds no Django state and imports no app, so it can
be tested against a real server on its own and a new kind (Confluence, SharePoint Graph, Google Drive) is
one class.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from typing import ClassVar, Protocol


class ConnectorError(Exception):
    """The source as a whole cannot be read (unreachable, refused credentials, a redirect loop, too large).

    Its message is shown to an admin as it is, so it says what failed and what to check.
    """


@dataclass(frozen=True)
class SourceConfig:
    """Everything a connector is told about its source; credentials arrive decrypted."""

    location: str
    credentials: Mapping[str, str] = field(default_factory=dict)
    # Glob patterns (fnmatch) over an item's identity; an empty `include` takes every item.
    include: tuple[str, ...] = ()
    exclude: tuple[str, ...] = ()
    # Per kind, e.g. {"branch": "main"} for git, {"max_pages": 500, "max_depth": 5} for a web site.
    options: Mapping[str, object] = field(default_factory=dict)
    # Set by the sync engine: an item larger than this is reported as a failed item, never read into memory
    # (0: no limit); a directory the connector may keep a cache in across syncs ("": none).
    max_item_bytes: int = 0
    cache_dir: str = ""


@dataclass(frozen=True)
class Found:
    """One item the source holds now."""

    # Stable within its source across syncs: a URL for a web site or WebDAV share, a path for git.
    identity: str
    # Changes whenever the content does: an ETag, a Last-Modified date, a content hash, a git blob id.
    version: str
    # A file name whose extension picks the parser (page.html, guide.md, manual.pdf).
    filename: str
    title: str = ""
    # Where a person opens the original, for citations; empty where there is none.
    url: str = ""
    # None: the version passed in `previous` is still current, so nothing was downloaded.
    content: bytes | None = None
    # This one item could not be read: the sync counts it as failed and keeps its document as it was.
    error: str = ""


class Connector(Protocol):
    kind: ClassVar[str]

    def __init__(self, config: SourceConfig) -> None: ...

    def scan(self, *, previous: Mapping[str, str]) -> Iterator[Found]:
        """Every item the source holds now; `previous` maps identity to the version stored last sync."""
        ...
