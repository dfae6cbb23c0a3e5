"""A web site as a source: the pages under a start URL, or the pages a sitemap lists (docs/connectors.md).

Crawl mode follows same-site links from the start page, breadth first, to `max_depth` links and `max_pages`
requests, obeying robots.txt for the user agent "ragsite". An HTML page's links are needed every sync to find
the rest of the site, so a crawled HTML page is always fetched whole and its version is a hash of its bytes
(unchanged: no re-ingest); other files (PDF, Markdown, text) keep the server's ETag or Last-Modified and are
asked for with a conditional GET, a 304 costing one cheap request. Sitemap mode (the location is a
sitemap.xml) needs no links, so every page gets the conditional GET.

A page that fails (5xx, timeout, refused) is a failed item and keeps its document; since pages behind it may
then not have been reached, nor those beyond `max_pages`, every page the last sync had that this one did not
reach is kept as well (a failed item saying why) until a complete crawl shows it gone. 404 and 410 mean gone.
"""

from __future__ import annotations

import gzip
import io
import threading
import time
from collections import deque
from collections.abc import Iterator, Mapping
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import ClassVar
from urllib.parse import urljoin, urlsplit
from urllib.robotparser import RobotFileParser

import httpx
import lxml.etree
import lxml.html

from sources.connectors.base import ConnectorError, Found, SourceConfig
from sources.connectors.http_common import (
    CONTENT_TYPE_EXTENSIONS,
    SUPPORTED_EXTENSIONS,
    TEXT_EXTENSIONS,
    USER_AGENT,
    ItemTooLarge,
    ItemTooSlow,
    basic_auth,
    canonical_url,
    capped,
    conditional_headers,
    content_hash_version,
    filename_for,
    float_option,
    int_option,
    looks_binary,
    matches_patterns,
    media_type,
    read_body,
    size_text,
    validator_version,
)

MAX_REDIRECTS = 10
MAX_SITEMAPS = 50
MAX_CRAWL_DELAY_S = 30.0
_REDIRECTS = frozenset({301, 302, 303, 307, 308})
_SITEMAP_NS = "{http://www.sitemaps.org/schemas/sitemap/0.9}"


@dataclass(frozen=True)
class _Options:
    max_pages: int
    max_depth: int
    concurrency: int
    timeout_s: float
    max_bytes: int

    @classmethod
    def of(cls, config: SourceConfig) -> _Options:
        options = config.options
        try:
            return cls(
                max_pages=int_option(options, "max_pages", 1000),
                max_depth=int_option(options, "max_depth", 10, minimum=0),
                concurrency=min(int_option(options, "concurrency", 4), 16),
                timeout_s=float_option(options, "timeout_s", 30.0),
                max_bytes=capped(int_option(options, "max_bytes", 50 * 2**20), config.max_item_bytes),
            )
        except ValueError as exc:
            raise ConnectorError(f"The web site's settings are wrong: {exc}.") from exc


@dataclass
class _Fetched:
    """What one URL gave: an item to yield (or none: gone, off the site, not a document) and its links."""

    url: str
    depth: int
    identity: str = ""
    found: Found | None = None
    links: list[str] = field(default_factory=list)
    # Set where the page could not be read: its links (if any) were not seen either.
    failure: str = ""
    is_sitemap: bool = False
    body: bytes = b""


class WebSiteConnector:
    """The pages of one web site under a start URL, or those its sitemap lists."""

    kind: ClassVar[str] = "web"

    def __init__(self, config: SourceConfig) -> None:
        self.config = config
        # What a person should know about the last scan that is no item's failure (a page limit reached).
        self.notes: list[str] = []

    def scan(self, *, previous: Mapping[str, str]) -> Iterator[Found]:
        self.notes = []
        options = _Options.of(self.config)
        start = canonical_url(self.config.location)
        parts = urlsplit(start)
        if parts.scheme not in ("http", "https") or not parts.hostname:
            raise ConnectorError(
                f"The location {self.config.location!r} is not a web address: give the start page or "
                "sitemap.xml as http:// or https:// followed by the site's name."
            )
        timeout = httpx.Timeout(options.timeout_s)
        limits = httpx.Limits(
            max_connections=options.concurrency, max_keepalive_connections=options.concurrency
        )
        with httpx.Client(
            timeout=timeout,
            limits=limits,
            auth=basic_auth(self.config.credentials),
            headers={"User-Agent": USER_AGENT},
            follow_redirects=False,
        ) as client:
            crawl = _Crawl(
                config=self.config,
                options=options,
                client=client,
                previous=previous,
                start=start,
                notes=self.notes,
            )
            yield from crawl.run()


def _scope_of(url: str) -> str:
    """The path prefix a start URL covers: itself as a folder, or the folder of a file name."""
    path = urlsplit(url).path or "/"
    if path.endswith("/"):
        return path
    last = path.rsplit("/", 1)[-1]
    if "." in last:
        return path[: len(path) - len(last)]
    return path + "/"


class _Crawl:
    def __init__(
        self,
        *,
        config: SourceConfig,
        options: _Options,
        client: httpx.Client,
        previous: Mapping[str, str],
        start: str,
        notes: list[str],
    ) -> None:
        self.config = config
        self.options = options
        self.client = client
        self.previous = previous
        self.start = start
        self.notes = notes
        parts = urlsplit(start)
        self.origin = (parts.scheme, parts.netloc)
        self.scope = _scope_of(start)
        self.robots = RobotFileParser()
        self.sitemap_mode = False
        self.delay_s = 0.0
        self._delay_lock = threading.Lock()
        self._next_request_at = 0.0
        self.yielded: set[str] = set()
        # Every URL this crawl fetched or saw redirected, found or gone: not "unreached" whatever it gave.
        self.reached: set[str] = set()
        self.hashes: set[str] = set()
        # Why this crawl may have missed pages that exist (failures, the page limit), for the pages kept.
        self.incomplete: list[str] = []

    # --- what belongs to the site -------------------------------------------------------------------

    def in_site(self, url: str) -> bool:
        parts = urlsplit(url)
        if (parts.scheme, parts.netloc) != self.origin:
            return False
        path = parts.path or "/"
        return path.startswith(self.scope) or path + "/" == self.scope or url == self.start

    def relative(self, url: str) -> str:
        return urlsplit(url).path.removeprefix(self.scope)

    def allowed(self, url: str) -> bool:
        return self.robots.can_fetch(USER_AGENT, url)

    def excluded(self, url: str) -> bool:
        return not matches_patterns([url, self.relative(url)], include=(), exclude=self.config.exclude)

    def included(self, url: str) -> bool:
        return matches_patterns([url, self.relative(url)], include=self.config.include, exclude=())

    def followable(self, url: str) -> bool:
        return self.in_site(url) and self.allowed(url) and not self.excluded(url)

    # --- the crawl ----------------------------------------------------------------------------------

    def run(self) -> Iterator[Found]:
        self.read_robots()
        if not self.allowed(self.start):
            raise ConnectorError(
                f"The site's robots.txt does not allow the user agent '{USER_AGENT}' to read {self.start}. "
                "Ask the site's owner to allow it, or choose a start page it allows."
            )
        first = self.fetch(self.start, 0)
        if first.failure:
            raise ConnectorError(f"The start page {self.start} could not be read: {first.failure}")
        if first.is_sitemap:
            self.sitemap_mode = True
            urls = self.sitemap_urls(first)
            frontier = deque((url, 0) for url in urls if self.followable(url))
            seen = {url for url, _ in frontier}
        else:
            if first.found is None:
                raise ConnectorError(
                    f"The start page {self.start} is not a page of the site (it is gone, leaves the site or "
                    "is not a document). Check the location."
                )
            yield from self.take(first)
            seen = {self.start, first.identity}
            frontier = deque()
            self.queue_links(first, frontier, seen)
        yield from self.crawl(frontier, seen)
        yield from self.kept_unreached()

    def crawl(self, frontier: deque[tuple[str, int]], seen: set[str]) -> Iterator[Found]:
        """Breadth first, `concurrency` requests at a time, results taken in order (so a limit is stable)."""
        fetched = 0 if self.sitemap_mode else 1  # the start page
        window = self.options.concurrency * 2
        in_flight: deque[Future[_Fetched]] = deque()
        with ThreadPoolExecutor(max_workers=self.options.concurrency, thread_name_prefix="web-crawl") as pool:
            try:
                while frontier or in_flight:
                    while frontier and len(in_flight) < window and fetched < self.options.max_pages:
                        url, depth = frontier.popleft()
                        in_flight.append(pool.submit(self.fetch, url, depth))
                        fetched += 1
                    if not in_flight:
                        break
                    result = in_flight.popleft().result()
                    yield from self.take(result)
                    self.queue_links(result, frontier, seen)
            finally:
                for future in in_flight:
                    future.cancel()
        if frontier:
            note = (
                f"Stopped at max_pages={self.options.max_pages}: the site has more pages (at least "
                f"{len(frontier)} more links were not followed). Raise max_pages or narrow the start URL."
            )
            self.notes.append(note)
            self.incomplete.append(f"the crawl stopped at max_pages={self.options.max_pages}")

    def queue_links(self, result: _Fetched, frontier: deque[tuple[str, int]], seen: set[str]) -> None:
        if result.identity:
            seen.add(result.identity)
        if self.sitemap_mode or result.depth >= self.options.max_depth:
            return
        for link in result.links:
            if link not in seen and self.followable(link):
                seen.add(link)
                frontier.append((link, result.depth + 1))

    def take(self, result: _Fetched) -> Iterator[Found]:
        self.reached.update((result.url, result.identity))
        if result.failure and not self.sitemap_mode:  # a failed page hides its links (a sitemap lists all)
            self.incomplete.append(f"{result.identity or result.url} failed ({result.failure})")
        found = result.found
        if found is None or found.identity in self.yielded or not self.included(found.identity):
            return
        if found.version.startswith("sha256:"):
            # The same bytes at a second address ("/" and "/index.html") are one page, not a duplicate upload.
            if found.version in self.hashes:
                return
            self.hashes.add(found.version)
        self.yielded.add(found.identity)
        yield found

    def kept_unreached(self) -> Iterator[Found]:
        """Pages the last sync had that this one did not reach, kept where the crawl may have missed them."""
        if not self.incomplete:
            return
        why = self.incomplete[0] + (
            f" and {len(self.incomplete) - 1} more" if len(self.incomplete) > 1 else ""
        )
        for identity, version in self.previous.items():
            if identity in self.yielded or identity in self.reached:
                continue
            if not self.followable(identity) or not self.included(identity):
                continue
            self.yielded.add(identity)
            yield Found(
                identity=identity,
                version=version,
                filename=filename_for(identity, extension=".html"),
                url=identity,
                error=f"Not reached this sync because {why}; the page is kept until a sync reaches it.",
            )

    # --- robots.txt and sitemaps --------------------------------------------------------------------

    def read_robots(self) -> None:
        scheme, netloc = self.origin
        url = f"{scheme}://{netloc}/robots.txt"
        try:
            response = self.client.get(url, follow_redirects=True)
        except httpx.TimeoutException as exc:
            raise ConnectorError(
                f"The site {scheme}://{netloc} did not answer within {self.options.timeout_s:g} s. "
                "Check that it is up and reachable from the workers."
            ) from exc
        except httpx.TransportError as exc:
            raise ConnectorError(
                f"The site {scheme}://{netloc} cannot be reached ({exc}). "
                "Check the address and that the site is up and reachable from the workers."
            ) from exc
        if response.status_code >= 500:
            # RFC 9309: an unreachable robots.txt means nothing may be crawled; a sync that then deleted every
            # page would be wrong, so the sync fails and keeps them.
            raise ConnectorError(
                f"The site's robots.txt answered HTTP {response.status_code}, so what may be crawled is "
                "unknown; the sync will try again at its next run."
            )
        if response.status_code >= 400:
            self.robots.parse([])  # RFC 9309: no robots.txt (4xx), everything is allowed
        else:
            self.robots.parse(response.text.splitlines())
        delay = self.robots.crawl_delay(USER_AGENT)
        if delay:
            self.delay_s = min(float(delay), MAX_CRAWL_DELAY_S)

    def sitemap_urls(self, first: _Fetched) -> list[str]:
        """Every page URL a sitemap (or a sitemap index and the sitemaps it names) lists, in order."""
        urls: list[str] = []
        pending = deque([first])
        read = 1
        while pending:
            sitemap = pending.popleft()
            for kind, url in _sitemap_entries(sitemap.body):
                if kind == "page":
                    urls.append(canonical_url(urljoin(sitemap.url, url)))
                    continue
                child = canonical_url(urljoin(sitemap.url, url))
                if read >= MAX_SITEMAPS or not self.followable(child):
                    continue
                read += 1
                fetched = self.fetch(child, 0, sitemap_expected=True)
                if fetched.failure or not fetched.is_sitemap:
                    raise ConnectorError(
                        f"The sitemap {child} listed in {sitemap.url} could not be read: "
                        f"{fetched.failure or 'it is not a sitemap'}. Nothing was changed."
                    )
                pending.append(fetched)
        return list(dict.fromkeys(urls))

    # --- one URL ------------------------------------------------------------------------------------

    def wait_politely(self) -> None:
        if not self.delay_s:
            return
        with self._delay_lock:
            now = time.monotonic()
            wait_s = max(0.0, self._next_request_at - now)
            self._next_request_at = max(now, self._next_request_at) + self.delay_s
        time.sleep(wait_s)

    def fetch(self, url: str, depth: int, *, sitemap_expected: bool = False) -> _Fetched:
        """GET `url`, following redirects within the site; never raises for one page's trouble."""
        chain = [url]
        current = url
        while True:
            self.wait_politely()
            version = self.previous.get(current)
            try:
                with self.client.stream("GET", current, headers=conditional_headers(version)) as response:
                    status = response.status_code
                    if status in _REDIRECTS and "location" in response.headers:
                        target = canonical_url(urljoin(current, response.headers["location"]))
                        if target in chain or len(chain) > MAX_REDIRECTS:
                            failure = "it redirects in a loop (" + " → ".join([*chain, target]) + ")"
                            return _Fetched(
                                url, depth, identity=url, found=self.failed(url, failure), failure=failure
                            )
                        if not self.followable(target):  # it leaves the site: not one of its pages
                            return _Fetched(url, depth, identity=target)
                        chain.append(target)
                        current = target
                        continue
                    return self.answer(
                        url, depth, current, response, version, sitemap_expected=sitemap_expected
                    )
            except httpx.TimeoutException:
                failure = f"no answer within {self.options.timeout_s:g} s"
            except ItemTooSlow:
                failure = f"the page was still arriving after {self.options.timeout_s:g} s"
            except ItemTooLarge as exc:
                limit = size_text(self.options.max_bytes)
                failure = f"it is {size_text(exc.args[0])}, more than max_bytes ({limit})"
            except httpx.HTTPError as exc:
                failure = f"it could not be read ({exc})"
            except (httpx.InvalidURL, ValueError) as exc:  # a redirect to a malformed address (a bad port)
                failure = f"its address is malformed ({exc})"
            return _Fetched(
                url, depth, identity=current, found=self.failed(current, failure), failure=failure
            )

    def failed(self, identity: str, failure: str) -> Found:
        return Found(
            identity=identity,
            version=self.previous.get(identity, ""),
            filename=filename_for(identity, extension=".html"),
            url=identity,
            error=f"{identity}: {failure}.",
        )

    def answer(
        self,
        url: str,
        depth: int,
        final: str,
        response: httpx.Response,
        version: str | None,
        *,
        sitemap_expected: bool,
    ) -> _Fetched:
        status = response.status_code
        if status == 304 and version:
            filename = filename_for(final, extension=_extension_of(final) or ".html")
            found = Found(identity=final, version=version, filename=filename, url=final)
            return _Fetched(url, depth, identity=final, found=found)
        if status in (404, 410):
            return _Fetched(url, depth, identity=final)
        if status >= 300:
            failure = f"HTTP {status}" + (
                " (the server refused access: check the source's credentials)" if status in (401, 403) else ""
            )
            return _Fetched(url, depth, identity=final, found=self.failed(final, failure), failure=failure)
        kind = media_type(response.headers)
        extension = CONTENT_TYPE_EXTENSIONS.get(kind)
        if kind in ("", "application/octet-stream") and _extension_of(final) in SUPPORTED_EXTENSIONS:
            extension = _extension_of(final)
        xml = kind in ("application/xml", "text/xml") or final.endswith((".xml", ".xml.gz"))
        if extension is None and not xml:
            return _Fetched(url, depth, identity=final)  # an image, a stylesheet, an archive: not a document
        deadline = time.monotonic() + self.options.timeout_s
        body = read_body(response, max_bytes=self.options.max_bytes, deadline=deadline)
        if (xml or sitemap_expected or url == self.start) and _is_sitemap(body):
            return _Fetched(
                url, depth, identity=final, is_sitemap=True, body=_gunzip(body, self.options.max_bytes)
            )
        if extension is None:
            return _Fetched(url, depth, identity=final)
        if extension in TEXT_EXTENSIONS and looks_binary(body):
            failure = f"it is served as {kind or 'text'} but its bytes are binary, not text"
            return _Fetched(url, depth, identity=final, found=self.failed(final, failure), failure=failure)
        links: list[str] = []
        title = ""
        indexable = "noindex" not in _robots_header(response.headers)
        if extension == ".html":
            page = _read_html(body, base=final)
            title, links = page.title, page.links
            indexable = indexable and page.indexable
            if not page.follow or "nofollow" in _robots_header(response.headers):
                links = []
            new_version = (
                validator_version(response.headers, data=body)
                if self.sitemap_mode
                else content_hash_version(body)
            )
        else:
            new_version = validator_version(response.headers, data=body)
        if not indexable:
            return _Fetched(url, depth, identity=final, links=links)
        unchanged = self.previous.get(final) == new_version
        found = Found(
            identity=final,
            version=new_version,
            filename=filename_for(final, extension=extension),
            title=title,
            url=final,
            content=None if unchanged else body,
        )
        return _Fetched(url, depth, identity=final, found=found, links=links)


def _extension_of(url: str) -> str:
    last = urlsplit(url).path.rsplit("/", 1)[-1]
    return "." + last.rsplit(".", 1)[-1].lower() if "." in last else ""


def _robots_header(headers: httpx.Headers) -> str:
    return ",".join(headers.get_list("x-robots-tag")).lower()


@dataclass
class _Page:
    title: str = ""
    links: list[str] = field(default_factory=list)
    indexable: bool = True
    follow: bool = True


def _read_html(body: bytes, *, base: str) -> _Page:
    """An HTML page's title, its links (absolute, canonical) and what its robots meta tag allows."""
    try:
        document = lxml.html.document_fromstring(body)
    except (lxml.etree.ParserError, ValueError):
        return _Page()
    page = _Page()
    titles = document.xpath("//title/text()")
    page.title = " ".join(str(titles[0]).split()) if titles else ""
    for meta in document.xpath("//meta[@name and @content]"):
        if str(meta.get("name", "")).lower() in ("robots", USER_AGENT):
            content = str(meta.get("content", "")).lower()
            page.indexable = page.indexable and "noindex" not in content and "none" not in content
            page.follow = page.follow and "nofollow" not in content and "none" not in content
    bases = document.xpath("//base/@href")
    base_url = urljoin(base, str(bases[0])) if bases else base
    for anchor in document.xpath("//a[@href] | //area[@href]"):
        if "nofollow" in str(anchor.get("rel", "")).lower():
            continue
        href = str(anchor.get("href", "")).strip()
        if not href or href.startswith(("#", "mailto:", "javascript:", "tel:", "data:")):
            continue
        try:
            page.links.append(canonical_url(urljoin(base_url, href)))
        except ValueError:
            continue  # a malformed link (a bad port, say) is no page of the site
    page.links = list(dict.fromkeys(page.links))
    return page


def _gunzip(body: bytes, max_bytes: int) -> bytes:
    if not body.startswith(b"\x1f\x8b"):
        return body
    with gzip.GzipFile(fileobj=io.BytesIO(body)) as unpacked:
        data = unpacked.read(max_bytes + 1)
    if len(data) > max_bytes:
        raise ConnectorError(f"The sitemap unpacks to more than max_bytes ({size_text(max_bytes)}).")
    return data


def _sitemap_root(body: bytes) -> lxml.etree._Element | None:
    try:
        data = _gunzip(body, 200 * 2**20)
        parser = lxml.etree.XMLParser(resolve_entities=False, no_network=True, huge_tree=False)
        return lxml.etree.fromstring(data, parser=parser)
    except (lxml.etree.XMLSyntaxError, OSError, EOFError):
        return None


def _is_sitemap(body: bytes) -> bool:
    if not body.lstrip().startswith((b"<?xml", b"<urlset", b"<sitemapindex", b"\x1f\x8b")):
        return False
    root = _sitemap_root(body)
    return root is not None and lxml.etree.QName(root).localname in ("urlset", "sitemapindex")


def _sitemap_entries(body: bytes) -> Iterator[tuple[str, str]]:
    """("page", url) for a urlset's pages, ("sitemap", url) for a sitemap index's sitemaps."""
    root = _sitemap_root(body)
    if root is None:
        return
    kind = "sitemap" if lxml.etree.QName(root).localname == "sitemapindex" else "page"
    for location in root.iter(f"{_SITEMAP_NS}loc", "loc"):
        if location.text and location.text.strip():
            yield kind, location.text.strip()
