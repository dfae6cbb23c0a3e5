"""Bearer keys for the API (`INFERENCE_API_KEYS`, like vLLM's and TEI's `--api-key`), and who sees /metrics.

With keys, every endpoint but `/healthz` and `/readyz` (the probes) needs `Authorization: Bearer <one of
them>`. Without keys the service answers only connections that arrive on a loopback address: it refuses to
start on another one (`config.Settings`), and a plain `uvicorn --host 0.0.0.0` still serves only loopback.
`/metrics` follows the web app's rule: loopback, or anyone with `INFERENCE_METRICS_TOKEN` when it is set.
Pure ASGI and the standard library, so that it runs before any work is done for a request.
"""

from __future__ import annotations

import hmac
import ipaddress
import json
from collections.abc import Awaitable, Callable, Sequence
from typing import Any

Scope = dict[str, Any]
Receive = Callable[[], Awaitable[Any]]
Send = Callable[[Any], Awaitable[None]]
ASGIApp = Callable[[Any, Any, Any], Awaitable[None]]

OPEN_PATHS = frozenset({"/healthz", "/readyz"})
METRICS_PATH = "/metrics"


def is_loopback(host: str | None) -> bool:
    """Whether `host` (an address or `localhost`) is a loopback address."""
    if host is None:
        return False
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False


def bearer_token_matches(authorization: bytes | None, secrets: Sequence[bytes]) -> bool:
    """Whether `authorization` is `Bearer <one of secrets>`; every secret is compared, in constant time."""
    if not authorization or not secrets:
        return False
    scheme, _, token = authorization.partition(b" ")
    if scheme.lower() != b"bearer":
        return False
    token = token.strip()
    matched = False
    for secret in secrets:
        matched |= hmac.compare_digest(token, secret)
    return matched


def _header(scope: Scope, name: bytes) -> bytes | None:
    for key, value in scope.get("headers") or ():
        if key.lower() == name:
            return bytes(value)
    return None


def _arrived_on_loopback(scope: Scope) -> bool:
    """The connection came in on a loopback address (or a Unix socket, which has none)."""
    server = scope.get("server")
    if server is None or server[1] is None:
        return True
    return is_loopback(str(server[0]))


def _error(status: int, message: str, code: str, headers: dict[bytes, bytes] | None = None) -> ASGIApp:
    body = json.dumps(
        {"error": {"message": message, "type": "invalid_request_error", "param": None, "code": code}}
    ).encode()

    async def answer(scope: Scope, receive: Receive, send: Send) -> None:
        await send(
            {
                "type": "http.response.start",
                "status": status,
                "headers": [
                    (b"content-type", b"application/json"),
                    (b"content-length", str(len(body)).encode()),
                    *(headers or {}).items(),
                ],
            }
        )
        await send({"type": "http.response.body", "body": body})

    return answer


class ApiKeyMiddleware:
    """401 for a request without a valid key (403 for /metrics out of reach), before any work is done."""

    def __init__(self, app: ASGIApp, *, api_keys: Sequence[str], metrics_token: str) -> None:
        self.app = app
        self.api_keys = tuple(key.encode() for key in api_keys)
        self.metrics_token = metrics_token.encode()

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or scope["path"] in OPEN_PATHS:
            await self.app(scope, receive, send)
            return
        authorization = _header(scope, b"authorization")
        refusal: ASGIApp | None = None
        if scope["path"] == METRICS_PATH:
            if self.metrics_token:
                allowed = bearer_token_matches(authorization, [self.metrics_token])
            else:
                client = scope.get("client")
                allowed = is_loopback(str(client[0]) if client else None)
            if not allowed:
                refusal = _error(
                    403, "Metrics are served to loopback or with INFERENCE_METRICS_TOKEN.", "forbidden"
                )
        elif self.api_keys:
            if not bearer_token_matches(authorization, self.api_keys):
                refusal = _error(
                    401,
                    "Missing or invalid API key: send Authorization: Bearer <one of INFERENCE_API_KEYS>.",
                    "invalid_api_key",
                    {b"www-authenticate": b"Bearer"},
                )
        elif not _arrived_on_loopback(scope):
            refusal = _error(
                401,
                "This service has no INFERENCE_API_KEYS, so it answers only over loopback.",
                "invalid_api_key",
                {b"www-authenticate": b"Bearer"},
            )
        await (refusal or self.app)(scope, receive, send)
