import time
from collections.abc import Awaitable, Callable

from asgiref.sync import iscoroutinefunction, markcoroutinefunction
from django.http import HttpRequest, HttpResponseBase

from .context import request_id_set
from .metrics import HTTP_LATENCY, HTTP_REQUESTS
from .security import content_security_policy

Handler = Callable[[HttpRequest], HttpResponseBase | Awaitable[HttpResponseBase]]


class RequestContextMiddleware:
    """Request id in, request id out; per-route metrics; security headers Django lacks (CSP)."""

    sync_capable = True
    async_capable = True

    def __init__(self, get_response: Handler) -> None:
        self.get_response = get_response
        self.is_async = iscoroutinefunction(get_response)
        if self.is_async:
            markcoroutinefunction(self)

    def __call__(self, request: HttpRequest) -> HttpResponseBase | Awaitable[HttpResponseBase]:
        if self.is_async:
            return self._acall(request)
        started = self._before(request)
        response = self.get_response(request)
        assert isinstance(response, HttpResponseBase)
        return self._after(request, response, started)

    async def _acall(self, request: HttpRequest) -> HttpResponseBase:
        started = self._before(request)
        response = await self.get_response(request)  # type: ignore[misc]
        return self._after(request, response, started)

    def _before(self, request: HttpRequest) -> float:
        request.request_id = request_id_set(request.headers.get("X-Request-ID"))  # type: ignore[attr-defined]
        return time.perf_counter()

    def _after(self, request: HttpRequest, response: HttpResponseBase, started: float) -> HttpResponseBase:
        match = getattr(request, "resolver_match", None)
        route = match.route if match is not None else "unmatched"
        HTTP_LATENCY.labels(request.method, route).observe(time.perf_counter() - started)
        HTTP_REQUESTS.labels(request.method, route, str(response.status_code)).inc()
        response["X-Request-ID"] = request.request_id  # type: ignore[attr-defined]
        if "Content-Security-Policy" not in response:
            response["Content-Security-Policy"] = content_security_policy()
        return response
