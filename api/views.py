"""The API tokens page: a staff member creates personal tokens (each shown once) and revokes them."""

from __future__ import annotations

from django.contrib.admin.views.decorators import staff_member_required
from django.http import Http404, HttpRequest, HttpResponse
from django.shortcuts import redirect, render
from django.views.decorators.http import require_http_methods, require_POST

from .forms import TokenCreateForm
from .selectors import api_collections_grantable_by, api_token_get_for_user, api_token_list_for_user
from .services import TokenRefused, api_token_create, api_token_revoke

TEMPLATE = "api/tokens.html"


@staff_member_required
@require_http_methods(["GET", "POST"])
def tokens(request: HttpRequest) -> HttpResponse:
    collections = api_collections_grantable_by(user=request.user)
    created = None
    if request.method == "POST":
        form = TokenCreateForm(request.POST, collections=collections)
        if form.is_valid():
            try:
                token, secret = api_token_create(
                    user=request.user,
                    name=form.cleaned_data["name"],
                    expires_at=form.expires_at(),
                    collections=form.cleaned_data["collections"],
                )
            except TokenRefused as exc:
                form.add_error(None, exc.message)
            else:
                created = {"token": token, "secret": secret}
                form = TokenCreateForm(collections=collections)
    else:
        form = TokenCreateForm(collections=collections)
    context = {"form": form, "created": created, "tokens": api_token_list_for_user(user=request.user)}
    if request.htmx:  # type: ignore[attr-defined]
        return render(request, f"{TEMPLATE}#token-panel", context)
    return render(request, TEMPLATE, context)


@staff_member_required
@require_POST
def token_revoke(request: HttpRequest, token_id: int) -> HttpResponse:
    token = api_token_get_for_user(user=request.user, token_id=token_id)
    if token is None:
        raise Http404("No such token.")
    token = api_token_revoke(token=token, user=request.user)
    if request.htmx:  # type: ignore[attr-defined]
        return render(request, f"{TEMPLATE}#token-row", {"token": token})
    return redirect("api:tokens")
