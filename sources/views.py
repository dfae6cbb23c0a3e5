"""The sources page: each source's last sync with its counts, polled with htmx while a sync runs."""

from __future__ import annotations

from django.contrib import messages
from django.contrib.admin.views.decorators import staff_member_required
from django.core.exceptions import PermissionDenied
from django.http import Http404, HttpRequest, HttpResponse
from django.shortcuts import redirect, render
from django.urls import reverse
from django.views.decorators.http import require_GET, require_http_methods, require_POST

from ingest.selectors import collections_readable_by

from . import selectors, services
from .forms import SourceForm


@staff_member_required
@require_http_methods(["GET", "POST"])
def source_list(request: HttpRequest) -> HttpResponse:
    if not selectors.source_action_permitted(user=request.user, action="view"):
        raise PermissionDenied("You may not see sources.")
    may_add = selectors.source_action_permitted(user=request.user, action="add")
    collections = collections_readable_by(user=request.user).order_by("name") if may_add else None
    form = None
    if collections is not None:
        form = SourceForm(request.POST or None, collections=collections)
        if request.method == "POST" and form.is_valid():
            data = form.cleaned_data
            try:
                source = services.source_create(
                    name=data["name"],
                    kind=data["kind"],
                    location=data["location"],
                    collection=data["collection"],
                    credentials=form.credentials(),
                    schedule_minutes=data["schedule_minutes"],
                    include_patterns=data["include_patterns"],
                    exclude_patterns=data["exclude_patterns"],
                    options=data["options"],
                    created_by=request.user,
                )
            except services.SourceRefused as exc:
                form.add_error(None, str(exc))
            else:
                services.source_sync_queue(source=source)
                messages.success(request, f"“{source}” was added; its first sync is queued.")
                return redirect(reverse("sources:list"))
    elif request.method == "POST":
        raise PermissionDenied("You may not add sources.")
    sources = selectors.source_list_for_user(user=request.user)
    return render(
        request,
        "sources/sources.html",
        {"sources": sources, "form": form, "any_active": selectors.source_runs_active(sources=sources)},
    )


def _render_row(request: HttpRequest, source_id: int) -> HttpResponse:
    source = selectors.source_get_for_user(user=request.user, source_id=source_id)
    if source is None:
        raise Http404("No such source.")
    return render(request, "sources/sources.html#source-row", {"source": source})


@staff_member_required
@require_GET
def source_row(request: HttpRequest, source_id: int) -> HttpResponse:
    """One source's row; it polls itself while its sync runs."""
    return _render_row(request, source_id)


@staff_member_required
@require_POST
def source_sync(request: HttpRequest, source_id: int) -> HttpResponse:
    source = selectors.source_get_for_user(user=request.user, source_id=source_id, action="change")
    if source is None:
        raise Http404("No such source.")
    try:
        services.source_sync_queue(source=source)
    except services.SourceRefused as exc:
        if request.htmx:  # type: ignore[attr-defined]
            return HttpResponse(str(exc), status=409)
        messages.error(request, str(exc))
    else:
        if request.htmx:  # type: ignore[attr-defined]
            return _render_row(request, source_id)
        messages.success(request, f"A sync of “{source}” is queued.")
    return redirect(reverse("sources:list"))
