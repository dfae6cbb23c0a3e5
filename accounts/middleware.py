"""Ends the sessions of people the identity provider no longer signs in, after RAGSITE_OIDC_SESSION_RECHECK_S.

mozilla-django-oidc's SessionRefresh: once the interval since a user's last check has passed, their next page
load goes to the provider with prompt=none. A user still signed in there (and still enabled) comes straight
back, groups mapped afresh; anyone else gets an error back and the callback ends their session. htmx
requests are sent the same way with HX-Redirect; event streams and other fetches are left to finish.
"""

from __future__ import annotations

import time
from typing import Any
from urllib.parse import urlsplit

from django.contrib.auth import BACKEND_SESSION_KEY
from django.http import HttpRequest, HttpResponse, HttpResponseBase
from django.urls import reverse
from django.utils.functional import cached_property
from django.utils.http import url_has_allowed_host_and_scheme
from mozilla_django_oidc.middleware import SessionRefresh
from mozilla_django_oidc.utils import import_from_settings

from .errors import OidcLoginError
from .provider import oidc_enabled, provider_metadata
from .views import login_failed_response

OIDC_BACKEND = "accounts.backends.OidcBackend"


class OidcSessionRefresh(SessionRefresh):
    @staticmethod
    def get_settings(attr: str, *args: Any) -> Any:
        if attr == "OIDC_OP_AUTHORIZATION_ENDPOINT":
            return ""  # found by discovery when a session is rechecked, never at start-up
        return import_from_settings(attr, *args)

    @cached_property
    def exempt_urls(self) -> set[str]:
        names = ["oidc_authentication_init", "oidc_authentication_callback", "login", "logout"]
        return {reverse(name) for name in names}

    def may_refresh(self, request: HttpRequest) -> bool:
        """Whether the request could need a recheck, from settings and headers alone (no session load)."""
        htmx = request.headers.get("HX-Request") == "true"
        page = request.method == "GET" and "text/html" in request.headers.get("Accept", "")
        return (htmx or page) and oidc_enabled() and request.path not in self.exempt_urls

    def is_refreshable_url(self, request: HttpRequest) -> bool:
        return (
            self.may_refresh(request)
            and request.session.get(BACKEND_SESSION_KEY) == OIDC_BACKEND
            and request.user.is_authenticated
        )

    async def __acall__(self, request: HttpRequest) -> HttpResponseBase:
        # Without SSO, and for event streams and other fetches, no hop to a thread for the session.
        if not self.may_refresh(request):
            response: HttpResponseBase = await self.get_response(request)
            return response
        return await super().__acall__(request)

    def process_request(self, request: HttpRequest) -> HttpResponseBase | None:
        if not self.is_refreshable_url(request):
            return None
        if request.session.get("oidc_id_token_expiration", 0) > time.time():
            return None
        try:
            self.OIDC_OP_AUTHORIZATION_ENDPOINT = provider_metadata()["authorization_endpoint"]
        except OidcLoginError as error:
            return login_failed_response(request, error)
        response: HttpResponseBase | None = super().process_request(request)
        if response is None or request.headers.get("HX-Request") != "true":
            return response
        # htmx follows HX-Redirect with a full page load; afterwards, back to the page the request came from.
        request.session["oidc_login_next"] = _htmx_page(request)
        redirect = HttpResponse(status=200)
        redirect["HX-Redirect"] = response["Location"]
        return redirect


def _htmx_page(request: HttpRequest) -> str:
    current = request.headers.get("HX-Current-URL", "")
    if current and url_has_allowed_host_and_scheme(current, allowed_hosts={request.get_host()}):
        parts = urlsplit(current)
        return parts.path + (f"?{parts.query}" if parts.query else "")
    return "/"
