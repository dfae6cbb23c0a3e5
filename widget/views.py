"""The widget API (`/widget/v1/…`): a cross-origin API authenticated by key, origin and visitor token."""

from __future__ import annotations

import json
import uuid
from collections.abc import AsyncGenerator, AsyncIterator
from contextlib import aclosing
from typing import Any

from django.conf import settings
from django.contrib.staticfiles import finders
from django.http import FileResponse, Http404, HttpRequest, HttpResponse, JsonResponse, StreamingHttpResponse
from django.views.decorators.csrf import csrf_exempt
from django.views.decorators.http import require_GET, require_http_methods

from search.services import AnswerEvent
from search.shared_answers import question_turned_away_async, turned_away_text

from .selectors import WidgetRefused, widget_key_check_origin, widget_request_authorize
from .services import widget_answer_stream, widget_rate_limit_hit

MAX_BODY_BYTES = 64 * 1024
MAX_HISTORY_TURNS = 6
MAX_TOKEN_CHARS = 1024


def _max_question_chars() -> int:
    return int(getattr(settings, "WIDGET_MAX_QUESTION_CHARS", 2000))


def _cors(response: HttpResponse | StreamingHttpResponse, origin: str) -> None:
    """Let `origin` read this response (no cookies are ever involved, so no credentials)."""
    response["Access-Control-Allow-Origin"] = origin
    response["Access-Control-Expose-Headers"] = "Retry-After, X-Request-ID"
    response["Vary"] = "Origin"


def _refusal(refused: WidgetRefused, origin: str) -> JsonResponse:
    """A refusal is readable by the asking page, allowed or not, so the widget can say why in words.

    It carries only the reason; answers and configuration are readable by allowed origins only.
    """
    response = JsonResponse(
        {"error": {"code": refused.code, "message": refused.message}}, status=refused.status
    )
    if refused.retry_after is not None:
        response["Retry-After"] = str(int(refused.retry_after))
    if origin:
        _cors(response, origin)
    return response


def _origin(request: HttpRequest) -> str:
    return request.headers.get("Origin", "").strip().lower()


@require_GET
def widget_script(request: HttpRequest) -> FileResponse:
    """widget.js at a fixed address that the snippet names, loadable from any site."""
    path = finders.find("widget.js") or str(settings.STATIC_ROOT / "widget.js")
    try:
        response = FileResponse(open(path, "rb"), content_type="text/javascript; charset=utf-8")  # noqa: SIM115
    except FileNotFoundError as exc:
        raise Http404("widget.js is missing: run collectstatic") from exc
    response["Cache-Control"] = "public, max-age=300"
    response["Cross-Origin-Resource-Policy"] = "cross-origin"
    return response


@require_GET
async def widget_config(request: HttpRequest, public_id: str) -> HttpResponse:
    """What the widget needs before the first question; a refused origin learns why at once."""
    origin = _origin(request)
    try:
        key = await widget_key_check_origin(public_id=public_id, origin=origin)
    except WidgetRefused as refused:
        return _refusal(refused, origin)
    response = JsonResponse(
        {
            "name": key.name,
            "requires_visitor_token": key.requires_visitor_token,
            "max_question_chars": _max_question_chars(),
        }
    )
    _cors(response, origin)
    return response


@csrf_exempt
@require_http_methods(["POST", "OPTIONS"])
async def widget_ask(request: HttpRequest, public_id: str) -> HttpResponse | StreamingHttpResponse:
    """Stream an answer from the key's collections as server-sent events; the preflight shares the URL."""
    origin = _origin(request)
    if request.method == "OPTIONS":
        return await _preflight(public_id=public_id, origin=origin)
    try:
        body = _parse_body(request)
        widget = await widget_request_authorize(
            public_id=public_id,
            origin=origin,
            token=body["token"],
            client_ip=request.META.get("REMOTE_ADDR", ""),
        )
        question = _question(body)
        await widget_rate_limit_hit(widget=widget)
        # Retrieval could not take it in time: said now, not after a wait (search.shared_answers).
        retry_after = await question_turned_away_async(
            collection_ids=widget.collection_ids, question=question, follow_up=bool(body["history"])
        )
        if retry_after is not None:
            raise WidgetRefused(
                turned_away_text(retry_after), status=429, code="busy", retry_after=retry_after
            )
    except WidgetRefused as refused:
        return _refusal(refused, origin)
    request_id = str(getattr(request, "request_id", "") or uuid.uuid4().hex)
    events = widget_answer_stream(
        widget=widget, question=question, history=body["history"], request_id=request_id
    )
    response = StreamingHttpResponse(_server_sent_events(events), content_type="text/event-stream")
    response["Cache-Control"] = "no-cache"
    response["X-Accel-Buffering"] = "no"
    _cors(response, origin)
    return response


async def _preflight(*, public_id: str, origin: str) -> HttpResponse:
    try:
        await widget_key_check_origin(public_id=public_id, origin=origin)
    except WidgetRefused as refused:
        # No CORS headers: the browser refuses the question without sending it.
        return JsonResponse(
            {"error": {"code": refused.code, "message": refused.message}}, status=refused.status
        )
    response = HttpResponse(status=204)
    _cors(response, origin)
    response["Access-Control-Allow-Methods"] = "POST, OPTIONS"
    response["Access-Control-Allow-Headers"] = "Content-Type"
    response["Access-Control-Max-Age"] = "600"
    return response


def _bad_request(message: str, *, code: str = "bad_request", status: int = 400) -> WidgetRefused:
    return WidgetRefused(message, status=status, code=code)


def _parse_body(request: HttpRequest) -> dict[str, Any]:
    """The question, token and history from a JSON body, refusing a body too large before reading it."""
    try:
        declared = int(request.META.get("CONTENT_LENGTH") or 0)
    except ValueError:
        declared = 0
    if declared > MAX_BODY_BYTES:
        raise _bad_request(
            f"The request is too large ({declared:,} bytes; the limit is {MAX_BODY_BYTES:,}).",
            code="request_too_large",
            status=413,
        )
    raw = request.read(MAX_BODY_BYTES + 1)
    if len(raw) > MAX_BODY_BYTES:
        raise _bad_request(
            f"The request is too large (the limit is {MAX_BODY_BYTES:,} bytes).",
            code="request_too_large",
            status=413,
        )
    try:
        data = json.loads(raw or b"{}")
    except (ValueError, UnicodeDecodeError) as exc:
        raise _bad_request("The request body is not JSON.") from exc
    if not isinstance(data, dict):
        raise _bad_request("The request body must be a JSON object.")
    token = data.get("token") or ""
    if not isinstance(token, str) or len(token) > MAX_TOKEN_CHARS:
        raise WidgetRefused("The visitor token is malformed.", status=401, code="token_malformed")
    return {"question": data.get("question"), "token": token, "history": _history(data.get("history"))}


def _history(value: Any) -> tuple[tuple[str, str], ...]:
    if value in (None, ""):
        return ()
    if not isinstance(value, list) or not all(
        isinstance(turn, list) and len(turn) == 2 and all(isinstance(part, str) for part in turn)
        for turn in value
    ):
        raise _bad_request("`history` must be a list of [question, answer] pairs of strings.")
    return tuple((question, answer) for question, answer in value[-MAX_HISTORY_TURNS:])


def _question(body: dict[str, Any]) -> str:
    question = body["question"]
    if not isinstance(question, str) or not question.strip():
        raise _bad_request("Type a question first.", code="question_missing")
    question = question.strip()
    limit = _max_question_chars()
    if len(question) > limit:
        raise _bad_request(
            f"The question is {len(question):,} characters long; the limit is {limit:,}. "
            "Shorten it and ask again.",
            code="question_too_long",
            status=413,
        )
    return question


def _sse(kind: str, data: dict[str, Any]) -> bytes:
    return f"event: {kind}\ndata: {json.dumps(data, ensure_ascii=False)}\n\n".encode()


async def _server_sent_events(
    events: AsyncGenerator[tuple[AnswerEvent, list[dict[str, Any]], dict[str, Any]], None],
) -> AsyncIterator[bytes]:
    # Closing the response closes the answer, and with it the request to the model.
    async with aclosing(events):
        async for event, sources, details in events:
            if event.kind == "sources":
                yield _sse("sources", {"sources": sources})
            elif event.kind == "extract":
                yield _sse("extract", {"text": event.text, "sources": sources})
            elif event.kind == "token":
                yield _sse("token", {"text": event.text})
            elif event.kind == "busy":
                yield _sse("busy", {"message": event.text, "retry_after": event.retry_after})
            elif event.kind == "error":
                yield _sse("error", {"message": event.text})
            else:
                yield _sse(
                    "done", {"answer": event.text, "sources": sources, "refused": event.refused, **details}
                )
