"""What the token API adds over the ask page's own path, on loopback, the answer itself held constant.

    make bench-api [BENCH_ARGS="--rounds 300"]
    python bench/api_overhead.py ...     # inside `python -m ragsite.devstack exec --`

Starts the web app under uvicorn on the run's throwaway PostgreSQL and Redis, its model the scripted
inference API of the tests (tests/search/fake_inference.py: instant, always the same reply), makes one staff
member reading one collection, a session for them and an API token. One question is asked once so that its
finished answer is cached; then each round asks it again, one request at a time, in turn by:

- page: the ask page's path as the browser takes it: POST /ask/ (htmx) and the answer's server-sent events
  (GET /answers/<id>/stream/) read to the end; `page_stream` is the second request alone.
- api_json: POST /api/v1/ask with the token, the JSON answer.
- api_sse: the same with `Accept: text/event-stream`, read to the end.

Both paths reuse the cached answer (the same shared-answer service), so the difference is each path's own
work: authentication, permission and scope checks, the audit row, the rate limit, recording. The overheads
are the differences of the medians: `api_json_overhead_ms` = api_json - page, and `api_sse_overhead_ms` =
api_sse - page_stream (the page's recording of the question is its first request's, left out there).

The last line printed is one JSON object.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import re
import secrets
import statistics
import sys
import tempfile
import time
from datetime import timedelta
from pathlib import Path
from typing import Any

import httpx

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

QUESTION = "How long can a laptop be returned?"
PASSAGE = "Customers may return a laptop within 30 days of delivery for a full refund."


def _setup() -> tuple[str, str, str]:
    """A reader of one collection holding a passage: their session key, CSRF token and API token."""
    from django.contrib.auth.models import Group, User
    from django.test import Client
    from django.utils import timezone

    from api.services import api_token_create
    from ingest.models import Collection, Document
    from tests.search.factories import add_chunks

    group = Group.objects.create(name=f"bench-{secrets.token_hex(4)}")
    user = User.objects.create_user(f"bench-{secrets.token_hex(4)}", is_staff=True)
    user.groups.add(group)
    collection = Collection.objects.create(name=f"bench-{secrets.token_hex(4)}")
    collection.groups.add(group)
    document = Document.objects.create(
        collection=collection,
        file="documents/bench.txt",
        original_name="returns.txt",
        title="Returns policy",
        sha256=secrets.token_hex(32),
        generation=1,
        status=Document.Status.READY,
    )
    add_chunks(document, PASSAGE, heading_path="Returns > Laptops")
    client = Client()
    client.force_login(user)
    _, token = api_token_create(
        user=user,
        name="bench",
        expires_at=timezone.now() + timedelta(days=1),
        rate_limit_per_minute=1_000_000,
    )
    return client.cookies["sessionid"].value, secrets.token_hex(16), token


def _page(http: httpx.Client, csrf: str) -> tuple[float, float]:
    """The page's path, whole and its stream alone, in seconds."""
    started = time.perf_counter()
    response = http.post(
        "/ask/", data={"question": QUESTION}, headers={"HX-Request": "true", "X-CSRFToken": csrf}
    )
    response.raise_for_status()
    match = re.search(r'sse-connect="(/answers/\d+/stream/)"', response.text)
    assert match, response.text[:500]
    streamed = time.perf_counter()
    with http.stream("GET", match.group(1)) as stream:
        body = "".join(stream.iter_text())
    assert "event: done" in body, body[-500:]
    ended = time.perf_counter()
    return ended - started, ended - streamed


def _api(http: httpx.Client, token: str, *, events: bool) -> float:
    headers = {"Authorization": f"Bearer {token}"}
    if events:
        headers["Accept"] = "text/event-stream"
    started = time.perf_counter()
    with http.stream("POST", "/api/v1/ask", json={"question": QUESTION}, headers=headers) as response:
        body = "".join(response.iter_text())
    assert response.status_code == 200, body[:500]
    assert ("event: done" in body) if events else ('"answer"' in body), body[-500:]
    return time.perf_counter() - started


def _ms(values: list[float]) -> float:
    return round(statistics.median(values) * 1000, 2)


def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--rounds", type=int, default=200)
    parser.add_argument("--log-dir", type=Path, default=None)
    args = parser.parse_args()
    if "DATABASE_URL" not in os.environ:
        parser.error("run inside `python -m ragsite.devstack exec --` (or set DATABASE_URL)")
    logs = args.log_dir or Path(tempfile.mkdtemp(prefix="bench-api-"))
    logs.mkdir(parents=True, exist_ok=True)
    os.environ["MEDIA_ROOT"] = str(logs / "media")
    os.environ["DJANGO_SETTINGS_MODULE"] = "ragsite.settings.test"
    logging.getLogger("httpx").setLevel(logging.WARNING)

    import django

    django.setup()
    from django.core.management import call_command
    from django.db import connection

    from ragsite.devstack import free_port
    from tests.processes import start_web
    from tests.search.fake_inference import FakeInference, Reply

    call_command("migrate", verbosity=0)
    fake = FakeInference(port=free_port())
    fake.start()
    fake.default_reply = Reply(["Within 30 days [1]."])
    session, csrf, token = _setup()
    web = start_web(
        database_name=str(connection.settings_dict["NAME"]),
        log_dir=logs,
        inference_url=fake.url,
        extra_env={"UVICORN_ACCESS_LOG": "false", "LOG_LEVEL": "WARNING"},
    )
    page: list[float] = []
    page_stream: list[float] = []
    api_json: list[float] = []
    api_sse: list[float] = []
    try:
        cookies = {"sessionid": session, "csrftoken": csrf}
        with httpx.Client(base_url=web.url, cookies=cookies, timeout=60) as http:
            _page(http, csrf)  # the answer is written once and cached; every round below reuses it
            _api(http, token, events=False)
            for _ in range(args.rounds):
                whole, stream = _page(http, csrf)
                page.append(whole)
                page_stream.append(stream)
                api_json.append(_api(http, token, events=False))
                api_sse.append(_api(http, token, events=True))
    finally:
        web.stop()
        fake.stop()
    report: dict[str, Any] = {
        "rounds": args.rounds,
        "page_p50_ms": _ms(page),
        "page_stream_p50_ms": _ms(page_stream),
        "api_json_p50_ms": _ms(api_json),
        "api_sse_p50_ms": _ms(api_sse),
        "api_json_overhead_ms": round(_ms(api_json) - _ms(page), 2),
        "api_sse_overhead_ms": round(_ms(api_sse) - _ms(page_stream), 2),
        "model_requests": len(fake.answer_requests),
    }
    print(json.dumps(report))
    return 0


if __name__ == "__main__":
    sys.exit(main())
