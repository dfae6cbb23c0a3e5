"""What the web-site and WebDAV connectors share: versions from HTTP validators, content types, patterns."""

from __future__ import annotations

import hashlib
import time
from collections.abc import Iterable, Mapping
from fnmatch import fnmatchcase
from pathlib import PurePosixPath
from urllib.parse import unquote, urlsplit, urlunsplit

import httpx

USER_AGENT = "ragsite"

# The file extensions ingest can parse (ingest/parsers), for items whose name says what they are.
SUPPORTED_EXTENSIONS = frozenset(
    {".pdf", ".docx", ".xlsx", ".pptx", ".html", ".htm", ".md", ".markdown", ".txt", ".rst", ".adoc", ".csv"}
)

# Content types ingest can parse, to the extension a file of that type gets.
CONTENT_TYPE_EXTENSIONS = {
    "text/html": ".html",
    "application/xhtml+xml": ".html",
    "application/pdf": ".pdf",
    "text/markdown": ".md",
    "text/x-markdown": ".md",
    "text/plain": ".txt",
    "text/x-rst": ".rst",
    "text/csv": ".csv",
    "application/vnd.openxmlformats-officedocument.wordprocessingml.document": ".docx",
    "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet": ".xlsx",
    "application/vnd.openxmlformats-officedocument.presentationml.presentation": ".pptx",
}
TEXT_EXTENSIONS = frozenset({".html", ".md", ".txt", ".rst", ".csv", ".adoc", ".markdown", ".htm"})


class ItemTooLarge(Exception):
    pass


class ItemTooSlow(Exception):
    pass


def content_hash_version(data: bytes) -> str:
    return "sha256:" + hashlib.sha256(data).hexdigest()


def validator_version(headers: httpx.Headers, *, data: bytes | None = None) -> str:
    """The cheapest version the server gives: its ETag, else Last-Modified, else a hash of the bytes."""
    if etag := headers.get("etag"):
        return f"etag:{etag}"
    if modified := headers.get("last-modified"):
        return f"lm:{modified}"
    if data is None:
        return ""
    return content_hash_version(data)


def conditional_headers(version: str | None) -> dict[str, str]:
    """The headers that make a GET answer 304 while `version` is still current; none for a content hash."""
    if not version:
        return {}
    if version.startswith("etag:"):
        return {"If-None-Match": version.removeprefix("etag:")}
    if version.startswith("lm:"):
        return {"If-Modified-Since": version.removeprefix("lm:")}
    return {}


def media_type(headers: httpx.Headers) -> str:
    return headers.get("content-type", "").split(";")[0].strip().lower()


def looks_binary(data: bytes) -> bool:
    """Bytes that are not text: a NUL, or more than 2 % control characters, in the first 8 KiB."""
    head = data[:8192]
    if head.startswith((b"\xff\xfe", b"\xfe\xff")):
        return False
    if b"\x00" in head:
        return True
    control = sum(1 for byte in head if byte < 32 and byte not in (9, 10, 12, 13))
    return control > len(head) * 0.02


def read_body(response: httpx.Response, *, max_bytes: int, deadline: float) -> bytes:
    """A streamed response's body, refusing more than `max_bytes` and a transfer still going at `deadline`."""
    length = response.headers.get("content-length", "")
    if length.isdigit() and int(length) > max_bytes:
        raise ItemTooLarge(int(length))
    parts: list[bytes] = []
    total = 0
    for part in response.iter_bytes():
        total += len(part)
        if total > max_bytes:
            raise ItemTooLarge(total)
        if time.monotonic() > deadline:
            raise ItemTooSlow()
        parts.append(part)
    return b"".join(parts)


def size_text(size: int) -> str:
    return f"{size / 2**20:,.1f} MiB"


def matches_patterns(
    candidates: Iterable[str], *, include: tuple[str, ...], exclude: tuple[str, ...]
) -> bool:
    """Whether an item passes the source's glob patterns, tried on each of its names (URL, relative path)."""
    names = [name for name in candidates if name]
    if any(fnmatchcase(name, pattern) for pattern in exclude for name in names):
        return False
    return not include or any(fnmatchcase(name, pattern) for pattern in include for name in names)


def canonical_url(url: str) -> str:
    """A URL without its fragment, with a lower-case scheme and host and without the scheme's default port."""
    parts = urlsplit(url.strip())
    scheme = parts.scheme.lower()
    host = (parts.hostname or "").lower()
    if ":" in host:
        host = f"[{host}]"
    port = parts.port
    netloc = host if port is None or (scheme, port) in (("http", 80), ("https", 443)) else f"{host}:{port}"
    if parts.username:
        netloc = f"{parts.username}{':' + parts.password if parts.password else ''}@{netloc}"
    return urlunsplit((scheme, netloc, parts.path or "/", parts.query, ""))


def filename_for(url: str, *, extension: str) -> str:
    """A file name for an item at `url` whose extension is the one its content type calls for."""
    name = PurePosixPath(unquote(urlsplit(url).path)).name or "index"
    if PurePosixPath(name).suffix.lower() == extension or (extension == ".html" and name.endswith(".htm")):
        return name
    return f"{name}{extension}"


def int_option(options: Mapping[str, object], name: str, default: int, *, minimum: int = 1) -> int:
    value = options.get(name, default)
    if isinstance(value, bool) or not isinstance(value, int | float | str):
        raise ValueError(f"option {name} must be a whole number, not {value!r}")
    try:
        number = int(value)
    except ValueError as exc:
        raise ValueError(f"option {name} must be a whole number, not {value!r}") from exc
    if number < minimum:
        raise ValueError(f"option {name} must be at least {minimum}, not {number}")
    return number


def float_option(options: Mapping[str, object], name: str, default: float) -> float:
    value = options.get(name, default)
    if isinstance(value, bool) or not isinstance(value, int | float | str):
        raise ValueError(f"option {name} must be a number of seconds, not {value!r}")
    try:
        number = float(value)
    except ValueError as exc:
        raise ValueError(f"option {name} must be a number of seconds, not {value!r}") from exc
    if number <= 0:
        raise ValueError(f"option {name} must be more than 0, not {number}")
    return number


def capped(limit: int, engine_limit: int) -> int:
    """A source's size limit, no higher than the sync engine's (`SourceConfig.max_item_bytes`, 0: none)."""
    return min(limit, engine_limit) if engine_limit > 0 else limit


def basic_auth(credentials: Mapping[str, str]) -> httpx.BasicAuth | None:
    username = credentials.get("username", "")
    if not username:
        return None
    return httpx.BasicAuth(username, credentials.get("password", ""))
