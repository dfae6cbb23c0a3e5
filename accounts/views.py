"""The login page (password and/or "Sign in with ..."), and the OpenID Connect start and callback views.

The start and callback views are mozilla-django-oidc's class-based views, subclassed: they find the
provider's endpoints by discovery and turn every failure into a readable page with a 4xx/503 status.
"""

from __future__ import annotations

import logging
from typing import Any

from django.conf import settings
from django.contrib import auth
from django.contrib.auth.views import LoginView
from django.http import Http404, HttpRequest, HttpResponse, HttpResponseBase
from django.shortcuts import render
from django.views.generic import View
from mozilla_django_oidc.views import OIDCAuthenticationCallbackView, OIDCAuthenticationRequestView

from .errors import LoginRefused, OidcLoginError
from .provider import oidc_enabled, provider_metadata

logger = logging.getLogger(__name__)


def _login_context() -> dict[str, Any]:
    return {
        "oidc_enabled": oidc_enabled(),
        "oidc_provider_name": settings.RAGSITE_OIDC_PROVIDER_NAME,
        "local_login": settings.RAGSITE_LOCAL_LOGIN,
    }


def login_failed_response(request: HttpRequest, error: OidcLoginError) -> HttpResponse:
    """A page saying why single sign-on failed, with a way to try again; the request's session has ended."""
    logger.warning("single sign-on failed (%s): %s", error.status, error.message)
    context = {**_login_context(), "title": error.title, "message": error.message}
    return render(request, "accounts/login_failed.html", context, status=error.status)


def login(request: HttpRequest) -> HttpResponseBase:
    """The site's login page: the password form (unless RAGSITE_LOCAL_LOGIN is off) and the SSO button."""
    if settings.RAGSITE_LOCAL_LOGIN:
        return LoginView.as_view(extra_context=_login_context())(request)
    context = {**_login_context(), "next": request.GET.get("next", "")}
    if request.method == "POST":
        context["local_login_refused"] = True
        return render(request, "registration/login.html", context, status=403)
    return render(request, "registration/login.html", context)


def admin_login(admin_view: Any) -> Any:
    """The admin's own login page, or ours when password login is off (the admin's form would only fail)."""

    def view(request: HttpRequest, *args: object, **kwargs: object) -> HttpResponseBase:
        if settings.RAGSITE_LOCAL_LOGIN:
            return admin_view(request, *args, **kwargs)
        return login(request)

    return view


class OidcStartView(OIDCAuthenticationRequestView):
    """Redirects to the provider's authorization endpoint with a fresh state, nonce and PKCE challenge."""

    def __init__(self, **kwargs: Any) -> None:
        View.__init__(self, **kwargs)
        self.OIDC_RP_CLIENT_ID = settings.OIDC_RP_CLIENT_ID

    def get(self, request: HttpRequest) -> HttpResponseBase:
        if not oidc_enabled():
            raise Http404("Single sign-on is not configured.")
        try:
            self.OIDC_OP_AUTH_ENDPOINT = provider_metadata()["authorization_endpoint"]
        except OidcLoginError as error:
            return login_failed_response(request, error)
        response: HttpResponseBase = super().get(request)
        return response


class OidcCallbackView(OIDCAuthenticationCallbackView):
    """Where the provider sends the browser back: checks state, exchanges the code, verifies the ID token."""

    def get(self, request: HttpRequest) -> HttpResponseBase:
        if not oidc_enabled():
            raise Http404("Single sign-on is not configured.")
        states = request.session.get("oidc_states") or {}
        state = request.GET.get("state", "")
        if request.GET.get("error"):
            # The answer to this browser's own sign-in or recheck ends the session (its states with it); a
            # crafted link with no state of ours signs no one out.
            if state in states:
                auth.logout(request)
            description = request.GET.get("error_description") or request.GET["error"]
            return login_failed_response(
                request,
                LoginRefused(f"The identity provider did not sign you in: {description[:300]}."),
            )
        if not request.GET.get("code") or not state:
            return login_failed_response(
                request, OidcLoginError("This sign-in link is incomplete (no code or state). Sign in again.")
            )
        if state not in states:
            # Each state is used once and only by the browser that started the sign-in.
            return login_failed_response(
                request,
                OidcLoginError(
                    "This sign-in link was used already, or was started in another browser (unknown state). "
                    "Sign in again."
                ),
            )
        try:
            response: HttpResponseBase = super().get(request)
        except OidcLoginError as error:
            auth.logout(request)
            return login_failed_response(request, error)
        return response

    def login_failure(self) -> HttpResponse:
        auth.logout(self.request)
        return login_failed_response(
            self.request, LoginRefused("Your account here is disabled. Ask an administrator to enable it.")
        )
