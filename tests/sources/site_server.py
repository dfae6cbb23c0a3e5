"""A real HTTP server on 127.0.0.1 serving a small web site the test changes between scans.

Each path maps to a `Page`; a path that is not there answers 404. Pages with `etag=True` send an ETag and
answer 304 to a matching If-None-Match, as real servers do for static files. Every request is recorded
(method, path, request headers, status) and the most requests ever in flight at once is kept.
"""

from __future__ import annotations

import hashlib
import socket
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer


@dataclass
class Page:
    body: bytes = b""
    content_type: str = "text/html; charset=utf-8"
    status: int = 200
    headers: dict[str, str] = field(default_factory=dict)
    etag: bool = False
    # Held this long (or until the server stops) before answering: a slow page.
    delay_s: float = 0.0


@dataclass
class Request:
    method: str
    path: str
    headers: dict[str, str]
    status: int


def html(title: str, *, links: tuple[str, ...] = (), text: str = "") -> bytes:
    anchors = "".join(f'<li><a href="{link}">{link}</a></li>' for link in links)
    body = f"<p>{text or 'The page about ' + title + '.'}</p><ul>{anchors}</ul>"
    return f"<!doctype html><html><head><title>{title}</title></head><body>{body}</body></html>".encode()


class Site:
    def __init__(self) -> None:
        self.pages: dict[str, Page] = {}
        # Pages made on demand for paths no entry has (a generated 10,000-page site).
        self.generator: Callable[[str], Page | None] | None = None
        self.requests: list[Request] = []
        self.lock = threading.Lock()
        self.in_flight = 0
        self.most_in_flight = 0
        self.stopping = threading.Event()
        self.url = ""

    def page(self, path: str) -> Page | None:
        if path in self.pages:
            return self.pages[path]
        return self.generator(path) if self.generator else None

    def requested(self, path: str) -> list[Request]:
        with self.lock:
            return [request for request in self.requests if request.path == path]

    def gets(self) -> list[Request]:
        with self.lock:
            return [request for request in self.requests if request.method == "GET"]


def _handler(site: Site) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def log_message(self, format: str, *args: object) -> None:
            pass

        def setup(self) -> None:
            super().setup()
            # Headers and body go out in two writes: without this, delayed ACKs hold each kept-alive
            # response ~40 ms (nginx and Apache set it too).
            self.request.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)

        def do_GET(self) -> None:
            with site.lock:
                site.in_flight += 1
                site.most_in_flight = max(site.most_in_flight, site.in_flight)
            try:
                self.answer()
            finally:
                with site.lock:
                    site.in_flight -= 1

        def answer(self) -> None:
            page = site.page(self.path)
            if page is None:
                page = Page(body=b"<html><body>Not found</body></html>", status=404)
            if page.delay_s:
                site.stopping.wait(page.delay_s)
            status = page.status
            headers = {"Content-Type": page.content_type, **page.headers}
            if page.etag:
                etag = '"' + hashlib.sha256(page.body).hexdigest()[:16] + '"'
                headers["ETag"] = etag
                if self.headers.get("If-None-Match") == etag:
                    status = 304
            body = b"" if status == 304 else page.body
            with site.lock:
                site.requests.append(Request("GET", self.path, dict(self.headers.items()), status))
            self.send_response(status)
            for name, value in headers.items():
                self.send_header(name, value)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

    return Handler


@contextmanager
def site_server() -> Iterator[Site]:
    site = Site()
    server = ThreadingHTTPServer(("127.0.0.1", 0), _handler(site))
    server.daemon_threads = True
    site.url = f"http://127.0.0.1:{server.server_address[1]}"
    thread = threading.Thread(target=server.serve_forever, name="site-server", daemon=True)
    thread.start()
    try:
        yield site
    finally:
        site.stopping.set()
        server.shutdown()
        server.server_close()
