import os
from typing import Any

from django.contrib.staticfiles.handlers import ASGIStaticFilesHandler
from django.core.asgi import get_asgi_application

from ops.admission import PROBE_PATHS, AdmissionLimit
from ops.thread_lanes import ThreadLanes
from ragsite.request_body import RequestBodyLimit

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "ragsite.settings.dev")

# uvicorn serves the whole site, static files included: the pages' JavaScript (htmx, installed from npm
# at set-up into static/vendor/) comes from this server, never from a CDN. Overload is answered 429 with
# Retry-After in front of Django, before a thread or a database connection is spent on it; and only once
# its body is in (within a deadline and a size), so that slow bodies hold no slot. Behind the door, requests
# share a fixed set of threads for their synchronous work rather than holding one each (ops.thread_lanes).
django_application = get_asgi_application()


def _question_while_retrieval_is_full(scope: dict[str, Any]) -> bool:
    """A new question (the ask form's POST, a widget's or the API's) while retrieval's queue is full."""
    from search.retrieval_gate import retrieval_overloaded

    path = scope["path"]
    asking = scope.get("method") == "POST" and (
        path in ("/ask/", "/api/v1/ask") or path.startswith("/widget/")
    )
    return asking and retrieval_overloaded()


def _answer_of_an_admitted_question(scope: dict[str, Any]) -> bool:
    """An answer's stream: its question is in, so it goes ahead of new questions at the door."""
    return scope.get("method") == "GET" and str(scope["path"]).startswith("/answers/")


application = RequestBodyLimit.from_settings(
    AdmissionLimit.from_settings(
        ThreadLanes.from_settings(
            ASGIStaticFilesHandler(django_application), own_lane=lambda scope: scope["path"] in PROBE_PATHS
        ),
        overloaded=_question_while_retrieval_is_full,
        first=_answer_of_an_admitted_question,
    )
)
