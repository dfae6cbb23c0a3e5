import time
from collections.abc import Awaitable, Callable
from typing import Any

from asgiref.sync import iscoroutinefunction, markcoroutinefunction, sync_to_async
from django.conf import settings
from django.contrib.auth import middleware as auth
from django.contrib.messages import middleware as messages
from django.contrib.sessions import middleware as sessions
from django.http import HttpRequest, HttpResponseBase
from django.middleware import clickjacking, common, csrf, security

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


# Django's own middleware, without a hop to a thread for each hook --------------------------------------
#
# Under ASGI Django runs every MiddlewareMixin hook (process_request, process_view, process_response) in
# `sync_to_async`: about a dozen hops to a thread for each request through the list in settings, a few
# hundred microseconds of CPU each. These hooks only read headers and cookies and set a few; where one may
# reach the database or the disk (a modified session being saved, a message store kept in the session, a
# CSRF secret kept in the session, an upload parsed for its token) it still goes to the thread.


class _HooksOnTheLoop:
    """A MiddlewareMixin whose hooks run on the event loop, unless `*_in_thread` says they may do I/O."""

    get_response: Any

    def request_in_thread(self, request: HttpRequest) -> bool:
        return False

    def response_in_thread(self, request: HttpRequest, response: HttpResponseBase) -> bool:
        return False

    async def __acall__(self, request: HttpRequest) -> HttpResponseBase:
        response: HttpResponseBase | None = None
        before = getattr(self, "process_request", None)
        if before is not None:
            if self.request_in_thread(request):
                response = await sync_to_async(before, thread_sensitive=True)(request)
            else:
                response = before(request)
        response = response or await self.get_response(request)
        after = getattr(self, "process_response", None)
        if after is not None:
            if self.response_in_thread(request, response):
                response = await sync_to_async(after, thread_sensitive=True)(request, response)
            else:
                response = after(request, response)
        return response


class SecurityMiddleware(_HooksOnTheLoop, security.SecurityMiddleware):
    pass


class SessionMiddleware(_HooksOnTheLoop, sessions.SessionMiddleware):
    def response_in_thread(self, request: HttpRequest, response: HttpResponseBase) -> bool:
        session = getattr(request, "session", None)
        return session is not None and (session.modified or settings.SESSION_SAVE_EVERY_REQUEST)


class CommonMiddleware(_HooksOnTheLoop, common.CommonMiddleware):
    pass


class CsrfViewMiddleware(_HooksOnTheLoop, csrf.CsrfViewMiddleware):
    def __init__(self, get_response: Any) -> None:
        super().__init__(get_response)
        if iscoroutinefunction(get_response):
            # Django awaits a coroutine process_view as it is, and sends a plain one to a thread.
            self.process_view = self._process_view_async  # type: ignore[method-assign, assignment]

    async def _process_view_async(
        self, request: HttpRequest, callback: Any, callback_args: Any, callback_kwargs: Any
    ) -> HttpResponseBase | None:
        check = super().process_view
        if _body_may_be_large(request) or settings.CSRF_USE_SESSIONS:
            return await sync_to_async(check, thread_sensitive=True)(
                request, callback, callback_args, callback_kwargs
            )
        return check(request, callback, callback_args, callback_kwargs)

    def request_in_thread(self, request: HttpRequest) -> bool:
        return bool(settings.CSRF_USE_SESSIONS)

    def response_in_thread(self, request: HttpRequest, response: HttpResponseBase) -> bool:
        return bool(settings.CSRF_USE_SESSIONS)


class AuthenticationMiddleware(_HooksOnTheLoop, auth.AuthenticationMiddleware):
    pass


class MessageMiddleware(_HooksOnTheLoop, messages.MessageMiddleware):
    def response_in_thread(self, request: HttpRequest, response: HttpResponseBase) -> bool:
        # Messages read or added may be stored in (or cleared from) the session.
        store = getattr(request, "_messages", None)
        return store is not None and (store.used or store.added_new)


class XFrameOptionsMiddleware(_HooksOnTheLoop, clickjacking.XFrameOptionsMiddleware):
    pass


def _body_may_be_large(request: HttpRequest) -> bool:
    """A form with files: reading its token parses the uploads, which is disk work for a thread."""
    return request.content_type == "multipart/form-data"
