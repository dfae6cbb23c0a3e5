import hmac
import ipaddress
from collections.abc import Callable

from django.conf import settings
from django.http import HttpRequest, HttpResponse, HttpResponseBase
from django.shortcuts import render
from prometheus_client import CONTENT_TYPE_LATEST, REGISTRY, generate_latest

from .throttle import login_attempt_begin, login_attempt_end


def _client_ip(request: HttpRequest) -> str:
    return str(request.META.get("REMOTE_ADDR") or "")


def metrics(request: HttpRequest) -> HttpResponse:
    """Prometheus exposition; from loopback, or with the bearer token RAGSITE_METRICS_TOKEN."""
    token = settings.RAGSITE_METRICS_TOKEN
    if token:
        # Constant time, on bytes: hmac.compare_digest refuses str with non-ASCII characters.
        presented = request.headers.get("Authorization", "").encode()
        allowed = hmac.compare_digest(presented, f"Bearer {token}".encode())
    else:
        try:
            allowed = ipaddress.ip_address(_client_ip(request)).is_loopback
        except ValueError:
            allowed = False
    if not allowed:
        return HttpResponse("metrics are served to loopback or with the metrics token\n", status=403)
    return HttpResponse(generate_latest(REGISTRY), content_type=CONTENT_TYPE_LATEST)


def login_throttled(login_view: Callable[..., HttpResponseBase]) -> Callable[..., HttpResponseBase]:
    """Refuse a login POST with 429 while its address and user name are locked out.

    Each POST takes its attempt from the count before the password is checked (see ops/throttle.py); the
    receiver of `user_login_failed` finds it on the request and keeps it as the failure.
    """

    def view(request: HttpRequest, *args: object, **kwargs: object) -> HttpResponseBase:
        if request.method != "POST":
            return login_view(request, *args, **kwargs)
        attempt, retry_after = login_attempt_begin(
            ip=_client_ip(request), username=str(request.POST.get("username", ""))
        )
        if retry_after is not None:
            response = render(request, "ops/login_locked.html", {"retry_after": retry_after}, status=429)
            response["Retry-After"] = str(retry_after)
            return response
        request.login_attempt = attempt  # type: ignore[attr-defined]
        try:
            return login_view(request, *args, **kwargs)
        finally:
            login_attempt_end(attempt=attempt)

    return view
