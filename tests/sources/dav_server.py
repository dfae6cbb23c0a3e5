"""A real WebDAV server (WsgiDAV on cheroot) on 127.0.0.1 over a folder, with basic authentication.

Every authenticated request is recorded as the server saw it, and a folder can be made to fail its PROPFIND.
"""

from __future__ import annotations

import os
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from cheroot import wsgi
from wsgidav.wsgidav_app import WsgiDAVApp

USER = "alice"
PASSWORD = "s3cret"

WsgiApp = Callable[[dict[str, Any], Callable[..., Any]], Any]


@dataclass
class DavServer:
    url: str
    root: Path
    # (method, path) of every request that carried credentials, as the server saw it.
    requests: list[tuple[str, str]] = field(default_factory=list)
    # Paths whose PROPFIND answers 500 (a folder the server cannot list).
    broken_folders: set[str] = field(default_factory=set)

    def gets(self) -> list[str]:
        return [path for method, path in self.requests if method == "GET"]


def _recording(app: WsgiApp, server: DavServer) -> WsgiApp:
    def middleware(environ: dict[str, Any], start_response: Callable[..., Any]) -> Any:
        path = environ.get("PATH_INFO", "")
        if environ.get("HTTP_AUTHORIZATION"):
            server.requests.append((environ["REQUEST_METHOD"], path))
        if environ["REQUEST_METHOD"] == "PROPFIND" and path in server.broken_folders:
            start_response("500 Internal Server Error", [("Content-Type", "text/plain")])
            return [b"broken"]
        return app(environ, start_response)

    return middleware


@contextmanager
def dav_server(root: Path) -> Iterator[DavServer]:
    root.mkdir(parents=True, exist_ok=True)
    app = WsgiDAVApp(
        {
            "host": "127.0.0.1",
            "port": 0,
            "provider_mapping": {"/dav": str(root)},
            "simple_dc": {"user_mapping": {"*": {USER: {"password": PASSWORD}}}},
            "http_authenticator": {"accept_basic": True, "accept_digest": False, "default_to_digest": False},
            "verbose": 0,
            "logging": {"enable": False},
            "dir_browser": {"enable": False},
        }
    )
    server = DavServer(url="", root=root)
    httpd = wsgi.Server(("127.0.0.1", 0), _recording(app, server), numthreads=4)
    httpd.prepare()
    server.url = f"http://127.0.0.1:{httpd.bind_addr[1]}/dav/"
    thread = threading.Thread(target=httpd.serve, name="webdav", daemon=True)
    thread.start()
    try:
        yield server
    finally:
        httpd.stop()


def write(server: DavServer, relative: str, text: str) -> None:
    path = server.root / relative
    path.parent.mkdir(parents=True, exist_ok=True)
    existed = path.exists()
    path.write_text(text)
    if existed:  # a later modification time, whatever the file system's clock granularity
        stat = path.stat()
        os.utime(path, (stat.st_atime + 10, stat.st_mtime + 10))
