"""The token-authenticated API (`/api/v1/…`, django-ninja): ask, list and upload documents; OpenAPI at
`/api/v1/openapi.json`, its browsable docs at `/api/v1/docs`.

Every refusal is `{"error": {"code", "message"}}` with a 4xx status (503 when a service it needs is down).
"""

from __future__ import annotations

import json
import uuid
from collections.abc import AsyncGenerator, AsyncIterator
from contextlib import aclosing
from typing import Any

from django.http import Http404, HttpRequest, HttpResponse, StreamingHttpResponse
from ninja import File, Form, NinjaAPI, Query, Status
from ninja.errors import HttpError, ValidationError
from ninja.files import UploadedFile
from ninja.security import HttpBearer

from ingest.models import Document
from ingest.services import DocumentDuplicate, DocumentRefused, document_create
from ops.db import db_sync_to_async
from search.rendering import passage_url
from search.services import AnswerEvent, SourceRef
from search.shared_answers import question_turned_away_async, turned_away_text

from .schemas import AskIn, AskOut, DocumentOut, DocumentsOut, ErrorOut
from .selectors import (
    ApiRefused,
    AuthorizedToken,
    api_collection_ids_for_request,
    api_document_list,
    api_upload_collection,
)
from .services import api_answer_stream, api_rate_limit_hit, api_token_authenticate

REFUSALS: dict[int, type[ErrorOut]] = dict.fromkeys((400, 401, 403, 429, 503), ErrorOut)


class ApiTokenAuth(HttpBearer):
    """`Authorization: Bearer rs_…`: the token is checked, its use audited and counted against its limit."""

    is_async = True

    async def __call__(self, request: HttpRequest) -> AuthorizedToken:
        header = request.headers.get("Authorization", "")
        scheme, _, raw = header.partition(" ")
        if not header.strip():
            raise ApiRefused(
                "This API needs a token: send `Authorization: Bearer rs_…` (made on the API tokens page).",
                status=401,
                code="token_missing",
            )
        if scheme.lower() != "bearer":
            raise ApiRefused(
                "The Authorization header must be `Bearer` followed by the API token.",
                status=401,
                code="token_malformed",
            )
        authorized = await db_sync_to_async(api_token_authenticate)(
            raw=raw.strip(),
            method=request.method or "",
            path=request.path,
            request_id=str(getattr(request, "request_id", "")),
        )
        await api_rate_limit_hit(token=authorized.token)
        return authorized

    def authenticate(self, request: HttpRequest, token: str) -> Any:
        raise NotImplementedError  # __call__ does it all, asynchronously


api = NinjaAPI(
    title="ragsite API",
    version="1",
    description="Ask questions of your documents, list and upload them, with a personal API token.",
    urls_namespace="api-v1",
    auth=ApiTokenAuth(),
)


def _error(request: HttpRequest, *, status: int, code: str, message: str, **extra: Any) -> HttpResponse:
    return api.create_response(request, {"error": {"code": code, "message": message, **extra}}, status=status)


@api.exception_handler(ApiRefused)
def _refused(request: HttpRequest, exc: ApiRefused) -> HttpResponse:
    response = _error(request, status=exc.status, code=exc.code, message=exc.message)
    if exc.retry_after is not None:
        response["Retry-After"] = str(int(exc.retry_after))
    if exc.status == 401:
        response["WWW-Authenticate"] = f'Bearer error="invalid_token", error_description="{exc.code}"'
    return response


@api.exception_handler(ValidationError)
def _invalid(request: HttpRequest, exc: ValidationError) -> HttpResponse:
    problems = [
        f"{'.'.join(str(part) for part in error.get('loc', ()) if part not in ('body', 'payload'))}: "
        f"{error.get('msg', 'invalid')}"
        for error in exc.errors
    ]
    return _error(
        request, status=400, code="invalid_request", message="; ".join(problems) or "Invalid request."
    )


@api.exception_handler(HttpError)
def _http_error(request: HttpRequest, exc: HttpError) -> HttpResponse:
    return _error(request, status=exc.status_code, code="bad_request", message=str(exc))


@api.exception_handler(Http404)
def _not_found(request: HttpRequest, exc: Http404) -> HttpResponse:
    return _error(request, status=404, code="not_found", message="There is no such API address.")


def _source(request: HttpRequest, source: SourceRef) -> dict[str, Any]:
    return {
        "number": source.number,
        "document_id": source.document_id,
        "chunk_id": source.chunk_id,
        "title": source.document_title,
        "heading": source.heading_path,
        "page": source.page,
        "excerpt": source.excerpt,
        "cited": source.cited,
        "passage_url": request.build_absolute_uri(passage_url(source.chunk_id)),
    }


def _wants_events(request: HttpRequest) -> bool:
    return "text/event-stream" in request.headers.get("Accept", "").lower()


@api.post(
    "/ask",
    response={200: AskOut, **REFUSALS},
    summary="Ask a question",
    description="Answered as the ask page answers it (permissions, checks, shared and cached answers). "
    "JSON by default; server-sent events (sources, extract, token, busy, error, done) with "
    "`Accept: text/event-stream`.",
)
async def ask(request: HttpRequest, payload: AskIn) -> Any:
    authorized: AuthorizedToken = request.auth  # type: ignore[attr-defined]
    question = payload.question.strip()
    if not question:
        raise ApiRefused("Type a question first.", status=400, code="question_missing")
    collection_ids = api_collection_ids_for_request(authorized=authorized, requested=payload.collections)
    # Retrieval could not take it in time: said now, not after a wait (search.shared_answers).
    retry_after = await question_turned_away_async(
        collection_ids=collection_ids, question=question, follow_up=False
    )
    if retry_after is not None:
        raise ApiRefused(turned_away_text(retry_after), status=429, code="busy", retry_after=retry_after)
    request_id = str(getattr(request, "request_id", "") or uuid.uuid4().hex)
    events = api_answer_stream(collection_ids=collection_ids, question=question, request_id=request_id)
    if _wants_events(request):
        response = StreamingHttpResponse(
            _server_sent_events(request, events, collection_ids), content_type="text/event-stream"
        )
        response["Cache-Control"] = "no-cache"
        response["X-Accel-Buffering"] = "no"
        return response
    return Status(200, await _answer(request, events, collection_ids))


async def _answer(
    request: HttpRequest,
    events: AsyncGenerator[tuple[AnswerEvent, dict[str, Any]], None],
    collection_ids: tuple[int, ...],
) -> dict[str, Any]:
    previous = ""
    async with aclosing(events):
        async for event, details in events:
            if event.kind == "error":
                busy = previous == "busy"
                raise ApiRefused(
                    event.text,
                    status=503,
                    code="model_busy" if busy else "answer_failed",
                    retry_after=10 if busy else None,
                )
            if event.kind == "done":
                return {
                    "answer": event.text,
                    "refused": event.refused,
                    "collections": list(collection_ids),
                    "sources": [_source(request, source) for source in event.sources],
                    **details,
                }
            previous = event.kind
    raise ApiRefused("The answer ended without a result. Please ask again.", status=503, code="answer_failed")


def _sse(kind: str, data: dict[str, Any]) -> bytes:
    return f"event: {kind}\ndata: {json.dumps(data, ensure_ascii=False)}\n\n".encode()


async def _server_sent_events(
    request: HttpRequest,
    events: AsyncGenerator[tuple[AnswerEvent, dict[str, Any]], None],
    collection_ids: tuple[int, ...],
) -> AsyncIterator[bytes]:
    # Closing the response closes the answer, and with it the request to the model.
    async with aclosing(events):
        async for event, details in events:
            sources = [_source(request, source) for source in event.sources]
            if event.kind == "sources":
                yield _sse("sources", {"question": event.text, "sources": sources})
            elif event.kind == "extract":
                yield _sse("extract", {"text": event.text, "sources": sources})
            elif event.kind == "token":
                yield _sse("token", {"text": event.text})
            elif event.kind == "busy":
                yield _sse("busy", {"message": event.text, "retry_after": event.retry_after})
            elif event.kind == "error":
                yield _sse("error", {"message": event.text})
            else:
                done = {"answer": event.text, "refused": event.refused, "collections": list(collection_ids)}
                yield _sse("done", {**done, "sources": sources, **details})


def _document(document: Document) -> dict[str, Any]:
    return {
        "id": document.id,
        "title": str(document),
        "original_name": document.original_name,
        "collection": {"id": document.collection.id, "name": document.collection.name},
        "status": document.status,
        "error": document.error,
        "size": document.size,
        "created_at": document.created_at,
    }


@api.get("/documents", response={200: DocumentsOut, **REFUSALS}, summary="List documents")
async def documents_list(
    request: HttpRequest,
    collection: int | None = Query(None, ge=1, le=2**31 - 1, description="Only this collection's documents."),
    limit: int = Query(100, ge=1, le=500),
) -> Any:
    authorized: AuthorizedToken = request.auth  # type: ignore[attr-defined]
    documents = await db_sync_to_async(api_document_list)(
        authorized=authorized, collection_id=collection, limit=limit
    )
    return Status(200, {"documents": [_document(document) for document in documents]})


@api.post(
    "/documents",
    response={201: DocumentOut, 409: ErrorOut, **REFUSALS},
    summary="Upload a document",
    description="Stored and queued for ingestion, with the upload page's limits; the list shows its status.",
)
async def documents_upload(
    request: HttpRequest,
    collection: Form[int],
    file: File[UploadedFile],
) -> Any:
    authorized: AuthorizedToken = request.auth  # type: ignore[attr-defined]
    document = await db_sync_to_async(_upload)(authorized=authorized, collection_id=collection, file=file)
    return Status(201, _document(document))


def _upload(*, authorized: AuthorizedToken, collection_id: int, file: UploadedFile) -> Document:
    target = api_upload_collection(authorized=authorized, collection_id=collection_id)
    name = (file.name or "upload").strip() or "upload"
    try:
        return document_create(collection=target, file=file, name=name, uploaded_by=authorized.user)
    except DocumentDuplicate as exc:
        raise ApiRefused(exc.message, status=409, code="duplicate") from exc
    except DocumentRefused as exc:
        raise ApiRefused(exc.message, status=400, code="document_refused") from exc
