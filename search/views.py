from __future__ import annotations

import logging
from collections.abc import AsyncIterator, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from django.contrib.auth.decorators import login_required
from django.http import HttpRequest, HttpResponse, StreamingHttpResponse
from django.middleware.csrf import get_token
from django.shortcuts import redirect, render
from django.template.loader import render_to_string
from django.urls import reverse
from django.utils.html import escape
from django.views.decorators.http import require_GET, require_POST
from django_htmx.middleware import HtmxDetails

from ops.admission import wait_until, wait_until_at_most
from ops.db import db_sync_to_async
from search import services
from search.conversations import (
    conversation_get_for_user,
    conversation_list_for_user,
    conversation_messages,
    message_get_for_user,
    message_history,
    passage_in_document_for_user,
    readable_chunk_ids,
)
from search.forms import AskForm, FeedbackForm
from search.models import Conversation, Feedback, Message
from search.rendering import answer_html, passage_url
from search.selectors import collection_ids_readable_by
from search.services import AnswerEvent, SourceRef
from search.shared_answers import (
    answer_stream_shared,
    message_answer_reused,
    message_record_shared_answer,
    model_busy_retry_after,
    question_turned_away,
    shared_answer_key,
    turned_away_text,
)

logger = logging.getLogger(__name__)


class HtmxHttpRequest(HttpRequest):
    htmx: HtmxDetails


TEMPLATE = "search/ask.html"
INTERRUPTED = "The answer was interrupted before it finished. Please ask again."
WRITING = "Writing the answer…"


def _turn(
    message: Message,
    *,
    readable: set[int],
    feedback: Feedback | None = None,
    feedback_form: FeedbackForm | None = None,
) -> dict[str, Any]:
    """What the template shows of one question and its answer.

    Stored sources are shown only where the viewer may still read them (`readable`, from
    `readable_chunk_ids`): access taken away since the answer was written takes its passages away too.
    The passages the answer cites come first, the others are "also retrieved".
    """
    sources = [SourceRef.from_dict(data) for data in message.sources]
    sources = [source for source in sources if source.chunk_id in readable]
    urls = {source.number: passage_url(source.chunk_id) for source in sources}
    any_cited = any(source.cited for source in sources)
    return {
        "message": message,
        "sources": [(source, urls[source.number]) for source in sources if source.cited or not any_cited],
        "other_sources": [
            (source, urls[source.number]) for source in sources if any_cited and not source.cited
        ],
        "answer_html": answer_html(message.answer, passage_urls=urls) if message.answer else "",
        "feedback": feedback,
        "feedback_form": feedback_form
        or FeedbackForm(initial={"rating": feedback.rating} if feedback else None),
    }


def _readable(*, user: Any, messages: list[Message]) -> set[int]:
    cited = [source["chunk_id"] for message in messages for source in message.sources]
    return readable_chunk_ids(user=user, chunk_ids=cited)


def _ask_page(
    request: HttpRequest, *, conversation: Conversation | None, form: AskForm | None = None
) -> HttpResponse:
    messages = conversation_messages(conversation=conversation) if conversation else []
    readable = _readable(user=request.user, messages=messages)
    return render(
        request,
        TEMPLATE,
        {
            "conversation": conversation,
            "conversations": conversation_list_for_user(user=request.user),
            "turns": [
                _turn(message, readable=readable, feedback=getattr(message, "feedback", None))
                for message in messages
            ],
            "form": form or AskForm(initial={"conversation": conversation.id if conversation else None}),
        },
    )


@login_required
@require_GET
def home(request: HttpRequest) -> HttpResponse:
    return _ask_page(request, conversation=None)


@login_required
@require_GET
def conversation_detail(request: HttpRequest, conversation_id: int) -> HttpResponse:
    conversation = conversation_get_for_user(user=request.user, conversation_id=conversation_id)
    return _ask_page(request, conversation=conversation)


@login_required
@require_POST
def ask(request: HtmxHttpRequest) -> HttpResponse:
    form = AskForm(request.POST)
    conversation = None
    if form.is_valid() and form.cleaned_data["conversation"]:
        conversation = conversation_get_for_user(
            user=request.user, conversation_id=form.cleaned_data["conversation"]
        )
    if not form.is_valid():
        if request.htmx:
            response = render(request, f"{TEMPLATE}#ask-form", {"form": form, "oob": False})
            response["HX-Retarget"] = "#ask-form"
            response["HX-Reswap"] = "outerHTML"
            return response
        return _ask_page(request, conversation=conversation, form=form)
    collection_ids = collection_ids_readable_by(user=request.user)
    question = form.cleaned_data["question"]
    retry_after = question_turned_away(
        collection_ids=collection_ids, question=question, follow_up=conversation is not None
    )
    if retry_after is not None:
        # As the door says it (static/js/ask.js asks again after Retry-After): nothing recorded, no stream.
        return HttpResponse(
            f"{turned_away_text(retry_after)}\n",
            status=429,
            content_type="text/plain; charset=utf-8",
            headers={"Retry-After": str(retry_after)},
        )
    # The answer's stream is a request of its own: it inherits what is left of this one's wait budget.
    until = wait_until.get()
    message = services.conversation_ask(
        user=request.user,
        question=form.cleaned_data["question"],
        conversation=conversation,
        wait_until=None if until is None else datetime.fromtimestamp(until, tz=UTC),
    )
    # A question answered before is answered here and now, from the cache: no stream to open for it.
    reused = message_answer_reused(
        message=message,
        collection_ids=collection_ids,
        history=message_history(message=message) if conversation is not None else (),
    )
    if not request.htmx:
        return redirect("search:conversation", conversation_id=message.conversation_id)
    readable = _readable(user=request.user, messages=[message]) if reused else set()
    response = render(
        request,
        f"{TEMPLATE}#ask-response",
        {
            "turn": _turn(message, readable=readable),
            "form": AskForm(initial={"conversation": message.conversation_id}),
            "conversation": message.conversation,
            "conversations": conversation_list_for_user(user=request.user),
            "oob": True,
        },
    )
    if conversation is None:
        response["HX-Push-Url"] = reverse(
            "search:conversation", kwargs={"conversation_id": message.conversation_id}
        )
    return response


@login_required
@require_GET
async def answer_stream(request: HttpRequest, message_id: int) -> StreamingHttpResponse:
    """The answer to a recorded question as server-sent events, streamed by the event loop, not a thread."""
    user = await request.auser()
    # Same thread as auser(): the connection both used goes back to the pool before the stream starts.
    message = await db_sync_to_async(message_get_for_user)(user=user, message_id=message_id)
    events = _answer_events(user=user, message=message, csrf_token=get_token(request))
    return StreamingHttpResponse(
        events,
        content_type="text/event-stream",
        headers={"Cache-Control": "no-cache", "X-Accel-Buffering": "no"},
    )


def _sse(event: str, data: str) -> str:
    lines = data.splitlines() or [""]
    return f"event: {event}\n" + "".join(f"data: {line}\n" for line in lines) + "\n"


def _status(text: str, *, busy: bool = False) -> str:
    return _sse("status", render_to_string(f"{TEMPLATE}#status", {"text": text, "busy": busy}))


def _answer_block(message: Message, *, csrf_token: str, readable: set[int]) -> str:
    return render_to_string(
        f"{TEMPLATE}#answer", {"turn": _turn(message, readable=readable), "csrf_token": csrf_token}
    )


async def _final_block(message: Message, *, user: Any, csrf_token: str) -> str:
    """The recorded outcome, its sources filtered by what `user` may read now."""
    readable = await db_sync_to_async(_readable)(user=user, messages=[message])
    return _answer_block(message, csrf_token=csrf_token, readable=readable)


def _extract_block(text: str, sources: Sequence[SourceRef]) -> str:
    urls = {source.number: passage_url(source.chunk_id) for source in sources}
    highlights = [
        (source, f"{passage_url(source.chunk_id, highlight=(source.highlight_start, source.highlight_end))}")
        for source in sources
        if source.highlight_start is not None and source.highlight_end is not None
    ]
    return render_to_string(
        f"{TEMPLATE}#extract",
        {"extract_html": answer_html(text, passage_urls=urls), "highlights": highlights},
    )


@dataclass(frozen=True)
class _AnswerStart:
    """What answering needs to know: readable collections, the history, the key its answer is shared under."""

    collection_ids: list[int]
    history: list[tuple[str, str]]
    key: str | None


def _answer_start(*, user: Any, message: Message) -> _AnswerStart | None:
    """Claim the turn and read what answering it needs, in one trip to a thread; None when not claimed."""
    if not services.message_claim(message=message):
        return None
    collection_ids, history = collection_ids_readable_by(user=user), message_history(message=message)
    key = shared_answer_key(collection_ids=collection_ids, question=message.question, history=history)
    return _AnswerStart(collection_ids=collection_ids, history=history, key=key)


def _record_shared_answer(*, user: Any, message: Message, **answer: Any) -> set[int]:
    """Record the answer (`message_record_shared_answer`), and which of its passages `user` may read."""
    message_record_shared_answer(message=message, **answer)
    return _readable(user=user, messages=[message])


async def _answer_events(*, user: Any, message: Message, csrf_token: str) -> AsyncIterator[str]:
    """Run the answer service for `message`, relay its events as htmx SSE swaps, and record the outcome.

    Every path ends with one "done" event carrying the final, server-rendered and sanitised answer (or the
    reason there is none), which replaces what was streamed and closes the browser's EventSource.
    """
    start = await db_sync_to_async(_answer_start)(user=user, message=message)
    if start is None:
        # A reconnect after the answer ended, or a second tab: show the outcome, never answer twice.
        current = await db_sync_to_async(message_get_for_user)(user=user, message_id=message.id)
        if current.status == Message.Status.STREAMING:
            current.error = "This question is being answered in another window."
        yield _sse("done", await _final_block(current, user=user, csrf_token=csrf_token))
        return
    # Retrieval's and the model's queues wait only for what is left of the question's budget, the door's
    # wait for the question included: a question admitted late is told to come back, not kept past it.
    wait_until_at_most(None if message.wait_until is None else message.wait_until.timestamp())
    standalone = message.question
    sources: tuple[SourceRef, ...] = ()
    finished = busy = False
    last_busy: AnswerEvent | None = None
    shared = answer_stream_shared(
        collection_ids=start.collection_ids,
        question=message.question,
        history=start.history,
        request_id=message.request_id,
        key=start.key,
    )
    try:
        async for event in shared:
            if event.kind == "sources":
                standalone, sources = event.text or standalone, event.sources
                urls = [(source, passage_url(source.chunk_id)) for source in sources]
                yield _sse("sources", render_to_string(f"{TEMPLATE}#sources", {"sources": urls}))
                yield _status(WRITING)
            elif event.kind == "extract":
                yield _sse("extract", _extract_block(event.text, event.sources))
            elif event.kind == "token":
                if busy:
                    busy = False
                    yield _status(WRITING)
                yield _sse("token", f"<span>{escape(event.text)}</span>")
            elif event.kind == "busy":
                busy, last_busy = True, event
                yield _status(event.text, busy=True)
            elif event.kind == "error":
                await db_sync_to_async(services.message_record_failure)(
                    message=message, error=event.text, standalone_question=standalone, sources=sources
                )
                finished = True
                yield _sse("done", await _final_block(message, user=user, csrf_token=csrf_token))
            elif event.kind == "done":
                readable = await db_sync_to_async(_record_shared_answer)(
                    user=user,
                    message=message,
                    standalone_question=standalone,
                    answer=event.text,
                    sources=event.sources,
                    origin=event.origin,
                    reused_at=shared.reused_at,
                    busy_retry_after=model_busy_retry_after(event, last_busy=last_busy),
                )
                finished = True
                yield _sse("done", _answer_block(message, csrf_token=csrf_token, readable=readable))
    except Exception:
        logger.exception("answering message %s failed", message.id)
        await db_sync_to_async(services.message_record_failure)(
            message=message, error="Something went wrong while answering. Please ask again."
        )
        finished = True
        yield _sse("done", await _final_block(message, user=user, csrf_token=csrf_token))
    finally:
        # Leave the shared answer now, not when the garbage collector finds it: others may still follow it.
        await shared.aclose()
        if not finished:
            # The browser went away mid-answer: leave a state the page can show, not a turn stuck streaming.
            try:
                await db_sync_to_async(services.message_record_failure)(
                    message=message, error=INTERRUPTED, standalone_question=standalone, sources=sources
                )
            except Exception:
                logger.exception("recording the interruption of message %s failed", message.id)


@login_required
@require_POST
def feedback(request: HtmxHttpRequest, message_id: int) -> HttpResponse:
    message = message_get_for_user(user=request.user, message_id=message_id)
    form = FeedbackForm(request.POST)
    recorded = None
    if form.is_valid() and message.status == Message.Status.ANSWERED:
        recorded = services.feedback_record(
            user=request.user,
            message=message,
            rating=form.cleaned_data["rating"],
            comment=form.cleaned_data["comment"],
        )
        form = FeedbackForm(initial={"rating": recorded.rating, "comment": recorded.comment})
    if not request.htmx:
        return redirect("search:conversation", conversation_id=message.conversation_id)
    turn = _turn(
        message,
        readable=_readable(user=request.user, messages=[message]),
        feedback=recorded,
        feedback_form=form,
    )
    return render(request, f"{TEMPLATE}#feedback", {"turn": turn})


@login_required
@require_GET
def passage(request: HttpRequest, chunk_id: int) -> HttpResponse:
    """A cited passage, highlighted in its document, for those who may read its collection (404 otherwise)."""
    view = passage_in_document_for_user(user=request.user, chunk_id=chunk_id)
    return render(request, "search/passage.html", {"view": view, "marked": _marked(request, view.chunk.text)})


def _marked(request: HttpRequest, text: str) -> tuple[str, str, str] | None:
    """The cited passage split around the sentence an extractive answer quoted (`?hl=start-end`)."""
    start, _, end = request.GET.get("hl", "").partition("-")
    if not (start.isascii() and start.isdigit() and end.isascii() and end.isdigit()):
        return None
    first, last = int(start), int(end)
    if not 0 <= first < last <= len(text):
        return None
    return text[:first], text[first:last], text[last:]
