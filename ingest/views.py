"""The upload page: many files at once, each document's status polled with htmx until it is done.

Who may do what is decided by `ingest.selectors` (model permissions and the collections the user reads).
"""

from __future__ import annotations

from collections.abc import Callable

from django.conf import settings
from django.contrib import messages
from django.contrib.admin.views.decorators import staff_member_required
from django.core.exceptions import PermissionDenied
from django.http import Http404, HttpRequest, HttpResponse
from django.shortcuts import redirect, render
from django.urls import reverse
from django.views.decorators.http import require_GET, require_http_methods, require_POST

from . import selectors, services
from .forms import UploadForm
from .models import Document


@staff_member_required
@require_http_methods(["GET", "POST"])
def upload(request: HttpRequest) -> HttpResponse:
    if not selectors.document_action_permitted(user=request.user, action="view"):
        raise PermissionDenied("You may not see documents.")
    collections = selectors.collection_list_for_user(user=request.user)
    upload_collections = selectors.collection_list_for_user(user=request.user, action="add")
    selected = _selected_collection_id(request)
    if request.method == "POST":
        if not selectors.document_action_permitted(user=request.user, action="add"):
            raise PermissionDenied("You may not upload documents.")
        form = UploadForm(request.POST, request.FILES, collections=upload_collections)
        if form.is_valid():
            collection = form.cleaned_data["collection"]
            for file in form.cleaned_data["documents"]:
                try:
                    services.document_create(
                        collection=collection, file=file, name=file.name or "upload", uploaded_by=request.user
                    )
                except services.DocumentRefused as exc:
                    messages.error(request, exc.message)
                else:
                    messages.success(request, f"“{file.name}” was queued.")
            return redirect(f"{reverse('ingest:upload')}?collection={collection.id}")
    else:
        initial = {"collection": selected} if selected else {}
        form = UploadForm(collections=upload_collections, initial=initial)
    documents = selectors.document_list_for_user(user=request.user, collection_id=selected)
    return render(
        request,
        "ingest/upload.html",
        {
            "form": form,
            "collections": collections,
            "upload_collections": upload_collections,
            "selected_collection": selected,
            "documents": documents,
            "max_upload_mb": f"{settings.RAGSITE_MAX_UPLOAD_BYTES / 2**20:,.0f} MB",
            "max_upload_request_mb": f"{settings.RAGSITE_MAX_UPLOAD_REQUEST_BYTES / 2**20:,.0f} MB",
            "any_active": any(document.status in services.RUNNABLE for document in documents),
        },
    )


def _selected_collection_id(request: HttpRequest) -> int | None:
    value = request.GET.get("collection", "")
    return int(value) if value.isdigit() else None


def _document_or_404(request: HttpRequest, document_id: int, action: selectors.Action = "view") -> Document:
    document = selectors.document_get_for_user(user=request.user, document_id=document_id, action=action)
    if document is None:
        raise Http404("No such document.")
    return document


def _render_row(request: HttpRequest, document_id: int) -> HttpResponse:
    document = _document_or_404(request, document_id)
    return render(request, "ingest/upload.html#document-row", {"document": document})


@staff_member_required
@require_GET
def document_row(request: HttpRequest, document_id: int) -> HttpResponse:
    """One document's row; it stops polling itself once the document is ready or failed."""
    return _render_row(request, document_id)


def _action(
    request: HttpRequest, document_id: int, act: Callable[[Document], object], done: str
) -> HttpResponse:
    document = _document_or_404(request, document_id, "change")
    try:
        act(document)
    except services.InvalidTransition as exc:
        if request.htmx:  # type: ignore[attr-defined]
            return HttpResponse(str(exc), status=409)
        messages.error(request, str(exc))
    else:
        if not request.htmx:  # type: ignore[attr-defined]
            messages.success(request, done.format(document=document))
    if request.htmx:  # type: ignore[attr-defined]
        return _render_row(request, document_id)
    return redirect(f"{reverse('ingest:upload')}?collection={document.collection_id}")


@staff_member_required
@require_POST
def document_retry(request: HttpRequest, document_id: int) -> HttpResponse:
    return _action(
        request, document_id, lambda d: services.document_retry(document=d), "“{document}” was queued again."
    )


@staff_member_required
@require_POST
def document_reindex(request: HttpRequest, document_id: int) -> HttpResponse:
    return _action(
        request,
        document_id,
        lambda d: services.document_reindex(document=d),
        "“{document}” will be re-indexed.",
    )


@staff_member_required
@require_POST
def document_delete(request: HttpRequest, document_id: int) -> HttpResponse:
    document = _document_or_404(request, document_id, "delete")
    services.document_delete(document=document, deleted_by=request.user)
    if request.htmx:  # type: ignore[attr-defined]
        return HttpResponse("")  # the row is swapped for nothing
    messages.success(request, f"“{document}” and its chunks were deleted.")
    return redirect(f"{reverse('ingest:upload')}?collection={document.collection_id}")
