"""Load benchmark of the ask page: 10,000 logged-in people ask at once, on loopback only.

    make bench-web [BENCH_ARGS="--clients 1000"] [BENCH_ARGS="--unique"]
    python bench/web_load.py ...     # inside `python -m ragsite.devstack exec --`

Starts the inference API (chat engine llama.cpp, the packaged CPU model) and the web app under uvicorn on
the run's throwaway PostgreSQL and Redis, ingests the answers-dev documents through the ingestion service
into a collection readable by a group, mints one logged-in session per client (session rows written in
bulk, no password logins), then opens `--clients` connections at once. Each client posts a question to
`/ask/` as htmx does and reads the answer's server-sent events to its end (or `--deadline` seconds).

The questions are a realistic mix: drawn from ../shared/eval/answers-dev/questions.jsonl and
../shared/eval/python-faq/queries.jsonl with a Zipf distribution (s = `--zipf`, 1.1), plus `--unique-share`
(30 %) asked in words nobody else uses (the same question framed with stop and filler words, which changes
its text, not its terms); `--unique` makes every question differ.

- served_sources: what retrieval gives arrived: the sources and the extractive answer, or a finished
  answer (one reused, or a refusal when nothing is evidence); `p50_sources_ms` / `p99_sources_ms` time it
  from the POST.
- generated: a model's answer arrived (its first token, or a finished model answer reused);
  `p50_ttft_ms` / `p99_ttft_ms` from the POST.
- cache_hits, single_flight_joins: the web app's own counts (ragsite_answers_total).
- refused: a clean "busy" answer: 429 with Retry-After, or a stream that ended asking to come back later.
- errors: a 5xx, another unexpected status, a reset connection or a malformed stream.
- timeouts: the answer had not ended by the deadline.

The last line printed is one JSON object.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import logging
import os
import re
import resource
import secrets
import signal
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import urlencode, urlsplit

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

EVAL = ROOT.parent / "shared" / "eval"
QUESTION_FILES = (EVAL / "answers-dev" / "questions.jsonl", EVAL / "python-faq" / "queries.jsonl")
DOCS = EVAL / "answers-dev" / "docs"
# Framings made of stop and filler words only (search/textual.py): they change a question's text, and so
# its cache key, but not the terms retrieval and the evidence gate weigh.
OPENINGS = (
    "",
    "Please tell me:",
    "Could you tell me",
    "Can you tell me",
    "I would like to know:",
    "I need to know:",
    "I want to know:",
    "Do you know",
    "Would you know",
    "Let me know:",
    "Tell us please:",
    "We would like to know:",
    "So,",
    "Now,",
)
CLOSINGS = ("", "please", "now", "then", "if you can", "if you know", "for us", "for me", "just now", "again")
STREAM_URL = re.compile(rb'sse-connect="([^"]+)"')
BUSY_WORDS = ("busy", "try again", "retry", "ask again in")


def raise_open_file_limit() -> int:
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if hard == resource.RLIM_INFINITY or soft < hard:
        resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
    return resource.getrlimit(resource.RLIMIT_NOFILE)[0]


@dataclass
class Results:
    clients: int
    served_sources: int = 0
    generated: int = 0
    answered: int = 0
    refused: int = 0
    errors: int = 0
    timeouts: int = 0
    refused_at_post: int = 0
    no_evidence: int = 0
    sources_ms: list[float] = field(default_factory=list)
    ttft_ms: list[float] = field(default_factory=list)
    done_ms: list[float] = field(default_factory=list)
    refusal_ms: list[float] = field(default_factory=list)
    post_ms: list[float] = field(default_factory=list)
    stream_open_ms: list[float] = field(default_factory=list)
    origins: dict[str, int] = field(default_factory=dict)
    refusal_reasons: dict[str, int] = field(default_factory=dict)
    error_kinds: dict[str, int] = field(default_factory=dict)
    failed: int = 0
    failure_reasons: dict[str, int] = field(default_factory=dict)
    # Where each client that timed out was waiting: "post" (the question's response), "stream_open" (the
    # stream's headers), "retrieval" (no sources yet), "answer" (sources, no extract: the model's answer),
    # "end" (served with an extract; the model's answer had not ended).
    timeout_stages: dict[str, int] = field(default_factory=dict)

    def fail(self, answer_block: str) -> None:
        """A stream that ended cleanly with a reason other than "busy" (the model timed out, say)."""
        self.failed += 1
        match = re.search(r'class="status error"[^>]*>([^<]*)', answer_block)
        reason = (match.group(1) if match else answer_block)[:120]
        self.failure_reasons[reason] = self.failure_reasons.get(reason, 0) + 1

    def error(self, kind: str) -> None:
        self.errors += 1
        self.error_kinds[kind] = self.error_kinds.get(kind, 0) + 1


def sources_rate(results: Results, embed_alone: float | None) -> dict[str, float | None]:
    """Sources delivered per second (served / the time the last arrived, all clients starting at once) and,
    with `--unique`, its ratio to the embedding service's rate alone for the same questions."""
    rate = len(results.sources_ms) / (max(results.sources_ms) / 1000) if results.sources_ms else None
    report: dict[str, float | None] = {"sources_per_s": None if rate is None else round(rate, 1)}
    if embed_alone is not None:
        report["embedding_alone_per_s"] = round(embed_alone, 1)
        report["sources_rate_ratio"] = None if rate is None else round(rate / embed_alone, 3)
    return report


def percentile(values: list[float], p: float) -> float | None:
    if not values:
        return None
    ordered = sorted(values)
    return round(ordered[min(len(ordered) - 1, int(p * len(ordered)))], 1)


class Malformed(Exception):
    """The server's answer is not the HTTP or server-sent events it should be."""


async def read_head(reader: asyncio.StreamReader) -> tuple[int, dict[str, str]]:
    head = await reader.readuntil(b"\r\n\r\n")
    lines = head.decode("latin-1").split("\r\n")
    parts = lines[0].split(" ", 2)
    if len(parts) < 2 or not parts[1].isdigit():
        raise Malformed(f"status line {lines[0]!r}")
    headers = {}
    for line in lines[1:]:
        if ":" in line:
            name, value = line.split(":", 1)
            headers[name.strip().lower()] = value.strip()
    return int(parts[1]), headers


async def body_chunks(reader: asyncio.StreamReader, headers: dict[str, str]) -> Any:
    """The body as it arrives: chunked transfer encoding, a Content-Length, or until the server closes."""
    if headers.get("transfer-encoding", "").lower() == "chunked":
        while True:
            size_line = await reader.readuntil(b"\r\n")
            size = int(size_line.split(b";")[0].strip() or b"0", 16)
            if size == 0:
                await reader.readuntil(b"\r\n")
                return
            data = await reader.readexactly(size)
            await reader.readexactly(2)
            yield data
    elif "content-length" in headers:
        length = int(headers["content-length"])
        if length:
            yield await reader.readexactly(length)
    else:
        while data := await reader.read(65536):
            yield data


async def read_body(reader: asyncio.StreamReader, headers: dict[str, str]) -> bytes:
    return b"".join([chunk async for chunk in body_chunks(reader, headers)])


def sse_events(buffer: bytearray) -> list[tuple[str, str]]:
    """Complete events at the front of `buffer` (removed from it), as (event, data)."""
    events = []
    while (end := buffer.find(b"\n\n")) >= 0:
        block = bytes(buffer[:end]).decode()
        del buffer[: end + 2]
        name, data = "message", []
        for line in block.split("\n"):
            if line.startswith("event:"):
                name = line[6:].strip()
            elif line.startswith("data:"):
                data.append(line[5:].removeprefix(" "))
        events.append((name, "\n".join(data)))
    return events


def is_busy(text: str) -> bool:
    lowered = text.lower()
    return any(word in lowered for word in BUSY_WORDS)


ORIGIN = re.compile(r'data-origin="(\w*)"')


@dataclass
class Answer:
    """What one client saw of its answer, in milliseconds from its POST."""

    sources_ms: float | None = None
    passages: bool = False
    ttft_ms: float | None = None


def served(results: Results, answer: Answer, now_ms: float) -> None:
    if answer.sources_ms is None:
        answer.sources_ms = now_ms
        results.served_sources += 1
        results.sources_ms.append(now_ms)


def generated(results: Results, answer: Answer, now_ms: float) -> None:
    if answer.ttft_ms is None:
        answer.ttft_ms = now_ms
        results.generated += 1
        results.ttft_ms.append(now_ms)


def finish(results: Results, answer: Answer, data: str, now_ms: float) -> None:
    """The final block: a recorded answer (served, perhaps generated), a busy refusal, or a failure."""
    match = ORIGIN.search(data)
    if match is None:
        if answer.passages and 'class="sources"' in data:
            # No answer, but what retrieval found stays, with the reason (a model still busy, say).
            served(results, answer, now_ms)
        if is_busy(data):
            results.refused += 1
            results.refusal_ms.append(now_ms)
            reason = re.search(r'class="status error"[^>]*>([^<]*)', data)
            text = (reason.group(1) if reason else data)[:100]
            results.refusal_reasons[text] = results.refusal_reasons.get(text, 0) + 1
        else:
            results.fail(data)
        return
    origin = match.group(1) or "unknown"
    results.origins[origin] = results.origins.get(origin, 0) + 1
    results.done_ms.append(now_ms)
    if 'class="sources"' not in data and origin == "refusal":
        results.no_evidence += 1
    served(results, answer, now_ms)
    if origin == "model":
        generated(results, answer, now_ms)


async def ask(port: int, session_key: str, question: str, results: Results, stage: list[str]) -> None:
    """One client: POST /ask/ as htmx does, then read the answer's events to its end; `stage[0]` says what
    it waits for."""
    csrf = secrets.token_hex(16)
    cookie = f"sessionid={session_key}; csrftoken={csrf}"
    body = urlencode({"question": question, "conversation": ""}).encode()
    started = time.perf_counter()
    reader, writer = await asyncio.open_connection("127.0.0.1", port, limit=1 << 20)
    try:
        writer.write(
            (
                f"POST /ask/ HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nCookie: {cookie}\r\n"
                f"X-CSRFToken: {csrf}\r\nHX-Request: true\r\n"
                "Content-Type: application/x-www-form-urlencoded\r\n"
                f"Content-Length: {len(body)}\r\n\r\n"
            ).encode()
            + body
        )
        status, headers = await read_head(reader)
        page = await read_body(reader, headers)
        results.post_ms.append((time.perf_counter() - started) * 1000)
        if status == 429 and headers.get("retry-after"):
            results.refused += 1
            results.refused_at_post += 1
            results.refusal_ms.append((time.perf_counter() - started) * 1000)
            return
        if status != 200:
            results.error(f"ask_http_{status}")
            return
        match = STREAM_URL.search(page)
        if match is None:
            if ORIGIN.search(page.decode()):
                # Answered in the POST's own response (a finished answer reused): nothing to stream.
                finish(results, Answer(), page.decode(), (time.perf_counter() - started) * 1000)
                return
            results.error("ask_without_stream")
            return
        stage[0] = "stream_open"
        writer.write(
            f"GET {match.group(1).decode()} HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nCookie: {cookie}\r\n"
            "Accept: text/event-stream\r\nHX-Request: true\r\n\r\n".encode()
        )
        status, headers = await read_head(reader)
        if status == 429 and headers.get("retry-after"):
            results.refused += 1
            results.refusal_ms.append((time.perf_counter() - started) * 1000)
            return
        if status != 200:
            results.error(f"stream_http_{status}")
            return
        results.stream_open_ms.append((time.perf_counter() - started) * 1000)
        stage[0] = "retrieval"
        answer = Answer()
        seen_sources = False
        buffer = bytearray()
        async for chunk in body_chunks(reader, headers):
            buffer += chunk
            for name, data in sse_events(buffer):
                now_ms = (time.perf_counter() - started) * 1000
                if name == "sources":
                    seen_sources = True
                    stage[0] = "answer"
                    answer.passages = 'class="sources"' in data
                elif name == "extract" and seen_sources:
                    served(results, answer, now_ms)
                    stage[0] = "end"
                elif name == "token":
                    if answer.ttft_ms is None:
                        results.answered += 1
                    generated(results, answer, now_ms)
                elif name == "done":
                    finish(results, answer, data, now_ms)
                    return
        results.error("stream_ended_early")
    finally:
        writer.close()
        with contextlib.suppress(Exception):
            await writer.wait_closed()


async def client(port: int, session_key: str, question: str, results: Results, deadline_s: float) -> None:
    stage = ["post"]
    try:
        async with asyncio.timeout(deadline_s):
            await ask(port, session_key, question, results, stage)
    except TimeoutError:
        results.timeouts += 1
        results.timeout_stages[stage[0]] = results.timeout_stages.get(stage[0], 0) + 1
    except (ConnectionError, asyncio.IncompleteReadError, asyncio.LimitOverrunError) as exc:
        results.error(type(exc).__name__)
    except (Malformed, ValueError, UnicodeDecodeError) as exc:
        results.error(f"malformed: {type(exc).__name__}")
    except OSError as exc:
        results.error(f"OSError {exc.errno}")


async def run_load(
    port: int, session_keys: list[str], questions: list[str], deadline_s: float
) -> tuple[Results, float]:
    results = Results(clients=len(session_keys))
    started = time.perf_counter()
    await asyncio.gather(
        *(
            client(port, key, question, results, deadline_s)
            for key, question in zip(session_keys, questions, strict=True)
        )
    )
    return results, time.perf_counter() - started


def question_pool() -> list[str]:
    """The questions people ask: answers-dev's and the Python FAQ's, in file order."""
    pool = []
    for path in QUESTION_FILES:
        for line in path.read_text().splitlines():
            if line.strip():
                row = json.loads(line)
                pool.append(str(row.get("q") or row.get("text")))
    return pool


def framed(question: str, opening: str, closing: str) -> str:
    text = question.rstrip("?").rstrip()
    if opening:
        text = f"{opening} {text[0].lower()}{text[1:]}"
    if closing:
        text = f"{text}, {closing}"
    return f"{text}?"


def questions_mix(*, clients: int, zipf_s: float, unique_share: float, seed: int) -> tuple[list[str], int]:
    """`clients` questions: Zipf-distributed over the pool (a random popularity order), and a share asked
    in words nobody else uses. Returns them shuffled, and how many are unique."""
    import random

    from search.answer_cache import question_normalised

    rng = random.Random(seed)
    pool = question_pool()
    rng.shuffle(pool)
    weights = [1 / rank**zipf_s for rank in range(1, len(pool) + 1)]
    unique = round(clients * unique_share)
    questions = rng.choices(pool, weights=weights, k=clients - unique)
    taken = {question_normalised(question) for question in pool}
    framings = [(opening, closing) for opening in OPENINGS for closing in CLOSINGS if opening or closing]
    if unique > len(pool) * len(framings):
        raise ValueError(f"at most {len(pool) * len(framings)} unique questions can be made")
    while len(questions) < clients:
        question = framed(rng.choice(pool), *rng.choice(framings))
        if question_normalised(question) not in taken:
            taken.add(question_normalised(question))
            questions.append(question)
    rng.shuffle(questions)
    return questions, unique


class Sampler(threading.Thread):
    """Every half second: the web server's threads and the database's connections (this one excluded)."""

    def __init__(self, pid: int, database_url: str) -> None:
        super().__init__(daemon=True)
        self.pid = pid
        self.database_url = database_url
        self.peak_threads = 0
        self.peak_db_connections = 0
        self.stopping = threading.Event()

    def run(self) -> None:
        import psycopg

        with psycopg.connect(self.database_url, autocommit=True) as conn:
            while not self.stopping.wait(0.5):
                row = conn.execute(
                    "SELECT count(*) FROM pg_stat_activity WHERE backend_type = 'client backend' "
                    "AND pid <> pg_backend_pid()"
                ).fetchone()
                self.peak_db_connections = max(self.peak_db_connections, int(row[0]) if row else 0)
                self.peak_threads = max(self.peak_threads, int(proc_status(self.pid).get("Threads", 0)))


def proc_status(pid: int) -> dict[str, str]:
    try:
        text = Path(f"/proc/{pid}/status").read_text()
    except OSError:
        return {}
    return dict(line.split(":\t", 1) for line in text.splitlines() if ":\t" in line)


def process_cpu_seconds(pid: int) -> float | None:
    """User and system CPU time the process has used so far."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except (OSError, IndexError):
        return None
    return round((int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK"), 1)


def kib_to_mb(value: str | None) -> float | None:
    return round(int(value.split()[0]) / 1024, 1) if value else None


def answers_served(url: str) -> dict[str, int]:
    """How the web app served its answers (ragsite_answers_total: cache, joined, led, unshared, ...)."""
    import httpx

    counts: dict[str, int] = {}
    for line in httpx.get(f"{url}/metrics", timeout=30).text.splitlines():
        if line.startswith("ragsite_answers_total{"):
            labels = dict(re.findall(r'(\w+)="([^"]*)"', line))
            counts[labels.get("path", "")] = int(float(line.split()[-1]))
    return counts


def inference_rejections(url: str) -> dict[str, int]:
    """The inference API's refusals by endpoint and reason (429s: queue_full, busy, ...)."""
    import httpx

    counts: dict[str, int] = {}
    for line in httpx.get(f"{url}/metrics", timeout=30).text.splitlines():
        if line.startswith("inference_rejections_total{"):
            labels = dict(re.findall(r'(\w+)="([^"]*)"', line))
            counts[f"{labels.get('endpoint')} {labels.get('reason')}"] = int(float(line.split()[-1]))
    return counts


EMBED_ALONE_CONCURRENCY = 64  # enough requests in flight for the API's dynamic batching to fill its batches
EMBED_ALONE_MAX_QUESTIONS = 2000  # a rate: 2,000 questions take 10 s or more at the rates seen here


async def embedding_alone_per_s(questions: list[str]) -> tuple[float, int]:
    """Questions per second the inference API embeds alone (the web app stopped), one question a request as
    the web app sends them, `EMBED_ALONE_CONCURRENCY` at once: the ceiling retrieval's rate is compared to.
    Also how many requests failed (each is tried again, at most twice)."""
    from ops.inference import InferenceError, aembed

    pending = list(dict.fromkeys(questions))[:EMBED_ALONE_MAX_QUESTIONS]
    embedded = failed = 0
    started = time.perf_counter()

    async def worker() -> None:
        nonlocal embedded, failed
        while pending:
            question = pending.pop()
            for _attempt in range(3):
                try:
                    await aembed([question])
                except InferenceError:
                    failed += 1
                    continue
                embedded += 1
                break

    await asyncio.gather(*(worker() for _ in range(EMBED_ALONE_CONCURRENCY)))
    return embedded / (time.perf_counter() - started), failed


def setup_data(clients: int) -> list[str]:
    """A group's collection holding the answers-dev documents, and one logged-in session per client."""
    from datetime import timedelta

    from django.conf import settings
    from django.contrib.auth import BACKEND_SESSION_KEY, HASH_SESSION_KEY, SESSION_KEY
    from django.contrib.auth.hashers import make_password
    from django.contrib.auth.models import Group, User
    from django.contrib.sessions.backends.db import SessionStore
    from django.contrib.sessions.models import Session
    from django.utils import timezone

    from bench.answers import ingest
    from ingest.models import Collection

    group, _ = Group.objects.get_or_create(name="bench-web")
    # Through the ingestion service (parse, chunk, embed, store), as bench/answers.py does.
    collection_id, _names = ingest(DOCS)
    Collection.objects.get(id=collection_id).groups.set([group])

    password = make_password(secrets.token_urlsafe(16))
    users = User.objects.bulk_create(
        [User(username=f"bench-web-{number}", password=password) for number in range(clients)],
        batch_size=2000,
    )
    User.groups.through.objects.bulk_create(
        [User.groups.through(user_id=user.pk, group_id=group.pk) for user in users], batch_size=2000
    )
    store = SessionStore()
    expire = timezone.now() + timedelta(seconds=settings.SESSION_COOKIE_AGE)
    backend = "django.contrib.auth.backends.ModelBackend"
    sessions = [
        Session(
            session_key=secrets.token_hex(16),
            session_data=store.encode(
                {
                    SESSION_KEY: str(user.pk),
                    BACKEND_SESSION_KEY: backend,
                    HASH_SESSION_KEY: user.get_session_auth_hash(),
                }
            ),
            expire_date=expire,
        )
        for user in users
    ]
    Session.objects.bulk_create(sessions, batch_size=2000)
    return [session.session_key for session in sessions]


def start_web(*, port: int, env: dict[str, str], log_path: Path, backlog: int) -> subprocess.Popen[bytes]:
    """The web app as `make run` serves it (uvicorn, ASGI), 127.0.0.1 only, with a deep accept queue."""
    command = [
        sys.executable,
        "-m",
        "uvicorn",
        "ragsite.asgi:application",
        "--host",
        "127.0.0.1",
        "--port",
        str(port),
        "--backlog",
        str(backlog),
        "--timeout-keep-alive",
        "120",
        "--loop",
        "uvloop",
        "--http",
        "httptools",
        "--no-access-log",
    ]
    with open(log_path, "wb") as log:
        return subprocess.Popen(
            command, cwd=ROOT, env=env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True
        )


def wait_for_web(url: str, process: subprocess.Popen[bytes], *, timeout_s: float = 120) -> None:
    import httpx

    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"the web app exited with {process.returncode}")
        with contextlib.suppress(httpx.TransportError):
            if httpx.get(f"{url}/healthz", timeout=5).status_code == 200:
                return
        time.sleep(0.3)
    raise TimeoutError(f"the web app is not healthy after {timeout_s:.0f}s")


def stop(process: subprocess.Popen[bytes]) -> None:
    if process.poll() is None:
        os.killpg(process.pid, signal.SIGTERM)
        try:
            process.wait(timeout=30)
        except subprocess.TimeoutExpired:
            os.killpg(process.pid, signal.SIGKILL)
            process.wait()


def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--clients", type=int, default=10_000)
    # The inference API answers or fails a queued chat within INFERENCE_CHAT_TIMEOUT_S (300 s) by default.
    parser.add_argument("--deadline", type=float, default=330.0, help="seconds each client waits at most")
    parser.add_argument(
        "--zipf", type=float, default=1.1, help="the Zipf exponent of the questions' popularity"
    )
    parser.add_argument("--unique-share", type=float, default=0.3, help="share of questions nobody else asks")
    parser.add_argument("--unique", action="store_true", help="every question differs")
    parser.add_argument("--seed", type=int, default=16)
    parser.add_argument("--backlog", type=int, default=16384)
    parser.add_argument("--log-dir", type=Path, default=None)
    args = parser.parse_args()
    if "DATABASE_URL" not in os.environ:
        parser.error(
            "run inside `python -m ragsite.devstack exec --` (or set DATABASE_URL, CELERY_BROKER_URL)"
        )
    open_files = raise_open_file_limit()
    if open_files < args.clients + 256:
        print(f"warning: RLIMIT_NOFILE is {open_files}, below the client count", file=sys.stderr)
    logs = args.log_dir or Path(tempfile.mkdtemp(prefix="bench-web-"))
    logs.mkdir(parents=True, exist_ok=True)
    os.environ["MEDIA_ROOT"] = str(logs / "media")
    os.environ["DJANGO_SETTINGS_MODULE"] = "ragsite.settings.test"

    from ragsite.devstack import free_port
    from tests.processes import start_inference

    logging.getLogger("httpx").setLevel(logging.WARNING)
    # On a two-core machine the model gets one of them (INFERENCE_CHAT_THREADS, default: every core), so that
    # the web app, PostgreSQL and the embedder keep the other.
    threads = os.environ.get("INFERENCE_CHAT_THREADS", "1")
    # And it writes with the CPU that retrieval leaves: INFERENCE_CHAT_NICE (the service defaults to 0) is 10
    # here, nice(1)'s own step for background work: the sources every asker waits for go first.
    nice = os.environ.get("INFERENCE_CHAT_NICE", "10")
    inference = start_inference(
        log_dir=logs,
        chat_engine="llamacpp",
        extra_env={
            "UVICORN_ACCESS_LOG": "false",
            "INFERENCE_CHAT_THREADS": threads,
            "INFERENCE_CHAT_NICE": nice,
        },
    )
    os.environ["INFERENCE_URL"] = inference.url
    web: subprocess.Popen[bytes] | None = None
    try:
        import django

        django.setup()
        from django.core.management import call_command
        from django.db import connections

        from search.answer_cache import question_normalised

        call_command("migrate", verbosity=0)
        questions, unique = questions_mix(
            clients=args.clients,
            zipf_s=args.zipf,
            unique_share=1.0 if args.unique else args.unique_share,
            seed=args.seed,
        )
        session_keys = setup_data(args.clients)
        connections.close_all()
        print(f"{len(session_keys)} sessions minted; starting the web app", file=sys.stderr)

        port = free_port()
        env = {
            **os.environ,
            "LOG_JSON": "false",
            "LOG_LEVEL": "WARNING",
        }
        env.pop("DJANGO_ALLOW_ASYNC_UNSAFE", None)
        web = start_web(port=port, env=env, log_path=logs / "web.log", backlog=args.backlog)
        wait_for_web(f"http://127.0.0.1:{port}", web)
        sampler = Sampler(web.pid, urlsplit(os.environ["DATABASE_URL"])._replace(path="/postgres").geturl())
        sampler.start()
        import uvloop

        results, elapsed = uvloop.run(run_load(port, session_keys, questions, args.deadline))
        sampler.stopping.set()
        sampler.join(timeout=5)
        web_status = proc_status(web.pid)
        web_cpu_s = process_cpu_seconds(web.pid)
        rejections = inference_rejections(inference.url)
        served_by = answers_served(f"http://127.0.0.1:{port}")
        stop(web)
        web = None
        print(f"load done: {results.served_sources} served, {results.errors} errors", file=sys.stderr)
        embed_alone, embed_failed = (
            asyncio.run(embedding_alone_per_s(questions)) if args.unique else (None, 0)
        )
    finally:
        if web is not None:
            stop(web)
        inference.stop()

    report = {
        "clients": results.clients,
        "mode": "unique" if args.unique else f"zipf {args.zipf} + {unique / results.clients:.0%} unique",
        "distinct_questions": len({question_normalised(question) for question in questions}),
        "served_sources": results.served_sources,
        "generated": results.generated,
        "cache_hits": served_by.get("cache", 0),
        "single_flight_joins": served_by.get("joined", 0),
        "errors": results.errors,
        "timeouts": results.timeouts,
        "timeout_stages": results.timeout_stages,
        "refused": results.refused,
        "p50_sources_ms": percentile(results.sources_ms, 0.50),
        "p99_sources_ms": percentile(results.sources_ms, 0.99),
        "p50_ttft_ms": percentile(results.ttft_ms, 0.50),
        "p99_ttft_ms": percentile(results.ttft_ms, 0.99),
        **sources_rate(results, embed_alone),
        **({"embedding_alone_failures": embed_failed} if args.unique else {}),
        "peak_rss_mb": kib_to_mb(web_status.get("VmHWM")),
        "web_cpu_s": web_cpu_s,
        "answered": results.answered,
        "answers_served": served_by,
        "origins": results.origins,
        "no_evidence": results.no_evidence,
        "p50_done_ms": percentile(results.done_ms, 0.50),
        "p50_post_ms": percentile(results.post_ms, 0.50),
        "p99_post_ms": percentile(results.post_ms, 0.99),
        "p50_stream_open_ms": percentile(results.stream_open_ms, 0.50),
        "refusal_reasons": results.refusal_reasons,
        "p99_done_ms": percentile(results.done_ms, 0.99),
        "refused_at_post": results.refused_at_post,
        "p50_refusal_ms": percentile(results.refusal_ms, 0.50),
        "mean_ttft_ms": round(statistics.fmean(results.ttft_ms), 1) if results.ttft_ms else None,
        "error_kinds": results.error_kinds,
        "failed": results.failed,
        "failure_reasons": results.failure_reasons,
        "inference_rejections": rejections,
        "inference_429s": sum(count for key, count in rejections.items() if "client_disconnected" not in key),
        "peak_db_connections": sampler.peak_db_connections,
        "peak_web_threads": sampler.peak_threads,
        "duration_s": round(elapsed, 1),
        "deadline_s": args.deadline,
        "cpus": os.cpu_count(),
        "model_threads": int(threads),
        "model_nice": int(nice),
        "load_average_1m": round(os.getloadavg()[0], 2),
        "logs": str(logs),
    }
    print(json.dumps(report))
    return 0


if __name__ == "__main__":
    sys.exit(main())
