"""A real git smart-HTTP server for the tests: `git http-backend` behind HTTP basic authentication, on
loopback, serving the repositories under one directory."""

from __future__ import annotations

import base64
import subprocess
import threading
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from pathlib import Path
from socketserver import ThreadingMixIn
from typing import Any
from wsgiref.simple_server import WSGIRequestHandler, WSGIServer, make_server

BACKEND = "/usr/lib/git-core/git-http-backend"


class _ThreadingServer(ThreadingMixIn, WSGIServer):
    daemon_threads = True


class _QuietHandler(WSGIRequestHandler):
    def log_message(self, format: str, *args: Any) -> None:
        pass


def _app(root: Path, username: str, password: str) -> Any:
    expected = "Basic " + base64.b64encode(f"{username}:{password}".encode()).decode()

    def app(environ: dict[str, Any], start_response: Any) -> Iterable[bytes]:
        if environ.get("HTTP_AUTHORIZATION") != expected:
            start_response("401 Unauthorized", [("WWW-Authenticate", 'Basic realm="git"')])
            return [b"authentication required\n"]
        length = int(environ.get("CONTENT_LENGTH") or 0)
        body = environ["wsgi.input"].read(length) if length else b""
        cgi_env = {
            "GIT_PROJECT_ROOT": str(root),
            "GIT_HTTP_EXPORT_ALL": "1",
            "REMOTE_USER": username,
            "PATH": "/usr/bin:/bin",
            **{
                key: str(environ.get(key, ""))
                for key in ("REQUEST_METHOD", "PATH_INFO", "QUERY_STRING", "CONTENT_TYPE", "CONTENT_LENGTH")
            },
            "GIT_PROTOCOL": str(environ.get("HTTP_GIT_PROTOCOL", "")),
        }
        result = subprocess.run(
            [BACKEND], input=body, env=cgi_env, capture_output=True, timeout=60, check=False
        )
        head, _, payload = result.stdout.partition(b"\r\n\r\n")
        status, headers = "200 OK", []
        for line in head.decode("latin-1").split("\r\n"):
            name, _, value = line.partition(":")
            if name.lower() == "status":
                status = value.strip()
            elif name:
                headers.append((name, value.strip()))
        start_response(status, headers)
        return [payload]

    return app


@contextmanager
def git_http_server(root: Path, *, username: str, password: str) -> Iterator[str]:
    """Serve the repositories under `root`; yields the base URL (http://127.0.0.1:PORT)."""
    server = make_server(
        "127.0.0.1",
        0,
        _app(root, username, password),
        server_class=_ThreadingServer,
        handler_class=_QuietHandler,
    )
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_port}"
    finally:
        server.shutdown()
        server.server_close()
