"""Load benchmark of the inference API's chat: many concurrent streaming chats; prints one JSON object last.

    make bench-chat-load                  # llama.cpp on CPU; vLLM where nvidia-smi sees a GPU
    .venv-inference/bin/python bench/chat_load.py --engine llamacpp --clients 8
    .venv-vllm/bin/python bench/chat_load.py --engine vllm --clients 512 --rounds 2

It starts the service itself on 127.0.0.1 (a free port) from the engine's venv (.venv-inference for
llamacpp, .venv-vllm for vllm), with INFERENCE_CHAT_ENGINE set and every other INFERENCE_* setting from the
environment (INFERENCE_CHAT_MODEL, INFERENCE_CHAT_MAX_SEQS, ...), and waits for /readyz; `--url` measures a
running service instead. Then `--clients` clients each send `--rounds` streaming chat completions, one after
another, all clients at once. Each request is one of the questions below with its three passages, in the
prompt the answer service itself builds (search.prompting.answer_prompt).

Counted: `completed` (200, streamed to its finish reason), `refusals` (429, not retried), `errors` (any other
status, a broken stream, an error event such as the deadline, a timeout). `tokens_per_s` is the completion
tokens of the completed requests (their `usage`) per second, from the first request sent to the last answer
ended. TTFT is from sending a request to its first content chunk, over the completed ones. `ready_s` is how
long the service took to start; `chat_capacity` is its chat admission, running plus waiting (/metrics).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import math
import os
import signal
import socket
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from search.prompting import PromptPassage, answer_prompt  # noqa: E402

VENVS = {"llamacpp": ".venv-inference", "vllm": ".venv-vllm"}
CAPACITY = 'inference_queue_capacity{queue="chat"}'
# The web app's default RAGSITE_CHAT_CONTEXT_TOKENS: the budget its prompts are cut to.
CONTEXT_TOKENS = 4096
# Questions with three passages each (one holds the answer), sent in the answer service's own prompt.
CASES: tuple[tuple[str, tuple[str, ...]], ...] = (
    (
        "How many days does the Orion backup service keep copies?",
        (
            "The Orion backup service runs every night at 02:00 UTC and keeps copies for 30 days.",
            "Orion's web console is available at port 8443 on the admin network.",
            "Invoices are archived by the finance team at the end of each quarter.",
        ),
    ),
    (
        "In which room do new employees get their laptop?",
        (
            "The cafeteria on floor 2 serves lunch from 11:30 to 14:00.",
            "New employees receive their laptop from the IT desk in room B-114.",
            "Parking permits are renewed every January.",
        ),
    ),
    (
        "After how many days do Kestrel API keys expire?",
        (
            "The Kestrel API rate limit is 600 requests per minute per key.",
            "Kestrel API keys expire after 90 days unless renewed.",
            "Kestrel returns errors as JSON objects with a code field.",
        ),
    ),
    (
        "Who is the lead engineer of Project Falcon?",
        (
            "Project Falcon was started in 2019 by the logistics group.",
            "Falcon's lead engineer is Marta Okafor, who joined in 2021.",
            "The Falcon dashboard refreshes every five minutes.",
        ),
    ),
    (
        "How quickly must urgent support tickets be answered?",
        (
            "Support tickets marked urgent must be answered within 4 hours.",
            "Normal tickets must be answered within 2 business days.",
            "Ticket statistics are published on the first Monday of each month.",
        ),
    ),
    (
        "How many desks does the Porto office have?",
        (
            "The Lisbon office moved to Avenida da Liberdade 110 in March 2024.",
            "The Porto office has 45 desks.",
            "Both offices close on 13 June for a public holiday.",
        ),
    ),
    (
        "After how many failed login attempts is an account locked?",
        (
            "To reset a password, open Settings, choose Security and click 'Reset password'.",
            "Two-factor authentication uses the Authy or Google Authenticator apps.",
            "Accounts are locked after 5 failed login attempts.",
        ),
    ),
    (
        "Which PostgreSQL version does the production database run?",
        (
            "The staging database is refreshed from production every Sunday.",
            "The production database runs PostgreSQL 16 on three nodes.",
            "Database credentials are rotated every 60 days.",
        ),
    ),
    (
        "What is the daily meal allowance abroad?",
        (
            "The company's travel policy allows economy class for flights under 6 hours.",
            "Hotel bookings must be made through the TravelDesk portal.",
            "Meal allowances are 40 euros per day abroad.",
        ),
    ),
    (
        "Which scheduler does the Nimbus cluster use?",
        (
            "The Nimbus cluster has 12 GPU nodes, each with 8 accelerators.",
            "Jobs on Nimbus are scheduled with Slurm.",
            "Nimbus storage is backed up weekly to tape.",
        ),
    ),
)


@dataclass
class Outcome:
    kind: str  # "completed", "refused" or "error"
    ttft_s: float | None = None
    latency_s: float = 0.0
    completion_tokens: int = 0
    detail: str = ""


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def start_service(
    engine: str, python: Path, log_path: Path, ready_timeout_s: float
) -> tuple[subprocess.Popen[bytes], str]:
    """`python -m inference` on a free loopback port with `engine`; returns once /readyz is 200."""
    port = free_port()
    env = {
        **os.environ,
        "HF_HUB_OFFLINE": "1",
        "TRANSFORMERS_OFFLINE": "1",
        "INFERENCE_CHAT_ENGINE": engine,
        "INFERENCE_HOST": "127.0.0.1",
        "INFERENCE_PORT": str(port),
        "PYTHONPATH": str(ROOT),
    }
    with open(log_path, "wb") as log:
        process = subprocess.Popen(
            [str(python), "-m", "inference"],
            env=env,
            cwd=ROOT,
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + ready_timeout_s
    try:
        while time.monotonic() < deadline:
            if process.poll() is not None:
                raise RuntimeError(f"the inference API exited with {process.returncode}; see {log_path}")
            try:
                ready = httpx.get(f"{url}/readyz", timeout=5)
            except httpx.TransportError:
                ready = None
            if ready is not None and ready.status_code == 200:
                return process, url
            if ready is not None and "failed to load" in ready.text:
                raise RuntimeError(
                    f"the inference API could not load its models: {ready.text}; see {log_path}"
                )
            time.sleep(0.5)
        raise TimeoutError(f"the inference API was not ready after {ready_timeout_s:g} s; see {log_path}")
    except BaseException:
        stop_service(process)
        raise


def stop_service(process: subprocess.Popen[bytes]) -> None:
    if process.poll() is not None:
        return
    os.killpg(process.pid, signal.SIGTERM)
    try:
        process.wait(timeout=60)  # vLLM shuts its engine core down
    except subprocess.TimeoutExpired:
        os.killpg(process.pid, signal.SIGKILL)
        process.wait()


def chat_request(model: str, index: int, max_tokens: int, temperature: float) -> dict[str, Any]:
    question, passages = CASES[index % len(CASES)]
    prompt = answer_prompt(
        question=question,
        passages=[
            PromptPassage(number=number, label="Company handbook", text=text)
            for number, text in enumerate(passages, start=1)
        ],
        context_tokens=CONTEXT_TOKENS,
        answer_tokens=max_tokens,
    )
    return {
        "model": model,
        "stream": True,
        "stream_options": {"include_usage": True},
        "max_tokens": max_tokens,
        "temperature": temperature,
        "messages": prompt.messages,
    }


async def one_chat(http: httpx.AsyncClient, body: dict[str, Any]) -> Outcome:
    started = time.perf_counter()
    ttft_s: float | None = None
    finished = False
    tokens = 0
    try:
        async with http.stream("POST", "/v1/chat/completions", json=body) as response:
            if response.status_code == 429:
                await response.aread()
                return Outcome("refused", latency_s=time.perf_counter() - started)
            if response.status_code != 200:
                text = (await response.aread()).decode(errors="replace")
                return Outcome("error", detail=f"{response.status_code}: {text[:200]}")
            async for line in response.aiter_lines():
                if not line.startswith("data: ") or line == "data: [DONE]":
                    continue
                event = json.loads(line.removeprefix("data: "))
                if "error" in event:
                    return Outcome("error", detail=f"error event: {event['error']}")
                if event.get("usage"):
                    tokens = int(event["usage"]["completion_tokens"])
                for choice in event.get("choices", ()):
                    if ttft_s is None and choice["delta"].get("content"):
                        ttft_s = time.perf_counter() - started
                    finished = finished or choice.get("finish_reason") is not None
    except (httpx.HTTPError, json.JSONDecodeError) as exc:
        return Outcome("error", detail=repr(exc))
    if not finished:
        return Outcome("error", detail="the stream ended without a finish reason")
    return Outcome(
        "completed", ttft_s=ttft_s, latency_s=time.perf_counter() - started, completion_tokens=tokens
    )


async def run_clients(
    url: str,
    *,
    clients: int,
    rounds: int,
    max_tokens: int,
    temperature: float,
    api_key: str,
    timeout_s: float,
) -> tuple[list[Outcome], float, str]:
    headers = {"Authorization": f"Bearer {api_key}"} if api_key else {}
    limits = httpx.Limits(max_connections=clients, max_keepalive_connections=clients)
    async with httpx.AsyncClient(base_url=url, headers=headers, limits=limits, timeout=timeout_s) as http:
        cards = (await http.get("/v1/models")).json()["data"]
        chat_models = [card["id"] for card in cards if card.get("kind") == "chat"]
        if not chat_models:
            raise RuntimeError(f"{url} serves no chat model (INFERENCE_CHAT_ENGINE=none?)")
        model = chat_models[0]

        async def client(number: int) -> list[Outcome]:
            return [
                await one_chat(http, chat_request(model, number + n * clients, max_tokens, temperature))
                for n in range(rounds)
            ]

        started = time.perf_counter()
        results = await asyncio.gather(*(client(number) for number in range(clients)))
        wall_s = time.perf_counter() - started
    return [outcome for result in results for outcome in result], wall_s, model


def percentile_ms(values: list[float], q: float) -> float | None:
    """Nearest-rank percentile, in milliseconds."""
    if not values:
        return None
    ordered = sorted(values)
    return round(1000 * ordered[max(math.ceil(q * len(ordered)) - 1, 0)], 1)


def chat_capacity(url: str, api_key: str) -> int | None:
    headers = {"Authorization": f"Bearer {api_key}"} if api_key else {}
    try:
        text = httpx.get(f"{url}/metrics", headers=headers, timeout=10).text
    except httpx.HTTPError:
        return None
    for line in text.splitlines():
        if line.startswith(CAPACITY + " "):
            return int(float(line.split()[-1]))
    return None


def summary(outcomes: list[Outcome], wall_s: float) -> dict[str, Any]:
    completed = [o for o in outcomes if o.kind == "completed"]
    tokens = sum(o.completion_tokens for o in completed)
    ttfts = [o.ttft_s for o in completed if o.ttft_s is not None]
    latencies = [o.latency_s for o in completed]
    return {
        "completed": len(completed),
        "refusals": sum(o.kind == "refused" for o in outcomes),
        "errors": sum(o.kind == "error" for o in outcomes),
        "completion_tokens": tokens,
        "mean_completion_tokens": round(tokens / len(completed), 1) if completed else None,
        "tokens_per_s": round(tokens / wall_s, 1) if wall_s > 0 else None,
        "ttft_p50_ms": percentile_ms(ttfts, 0.5),
        "ttft_p99_ms": percentile_ms(ttfts, 0.99),
        "latency_p50_ms": percentile_ms(latencies, 0.5),
        "latency_p99_ms": percentile_ms(latencies, 0.99),
        "wall_s": round(wall_s, 2),
    }


def parse_args(argv: list[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument(
        "--engine",
        choices=sorted(VENVS),
        default=os.environ.get("BENCH_CHAT_ENGINE", "llamacpp"),
        help="the chat engine the started service runs (env BENCH_CHAT_ENGINE; default llamacpp)",
    )
    parser.add_argument("--clients", type=int, default=8, help="concurrent clients (default 8)")
    parser.add_argument("--rounds", type=int, default=1, help="chats each client sends in turn (default 1)")
    parser.add_argument("--max-tokens", type=int, default=128, help="max_tokens of each chat (default 128)")
    parser.add_argument("--temperature", type=float, default=0.0)
    parser.add_argument("--timeout", type=float, default=600, help="seconds a client waits for one answer")
    parser.add_argument(
        "--ready-timeout", type=float, default=1800, help="seconds the service may take to load"
    )
    parser.add_argument("--python", type=Path, help="the service's Python (default: the engine's venv)")
    parser.add_argument("--url", help="measure this running service instead of starting one")
    parser.add_argument("--api-key", default=os.environ.get("INFERENCE_API_KEY", ""), help="for --url")
    args = parser.parse_args(argv)
    if args.clients < 1 or args.rounds < 1 or args.max_tokens < 1:
        parser.error("--clients, --rounds and --max-tokens must be at least 1")
    return args


def main(argv: list[str]) -> int:
    args = parse_args(argv)
    process = None
    ready_s = None
    try:
        url = args.url
        if not url:
            python = args.python or ROOT / VENVS[args.engine] / "bin" / "python"
            if not python.exists():
                raise SystemExit(
                    f"{python} is missing: docs/engines.md says how to install the {args.engine} engine"
                )
            log_dir = ROOT / ".data" / "bench-logs"
            log_dir.mkdir(parents=True, exist_ok=True)
            log_path = Path(
                tempfile.mkstemp(prefix=f"chat-load-{args.engine}-", suffix=".log", dir=log_dir)[1]
            )
            print(
                f"starting the inference API with {args.engine} (log: {log_path})",
                file=sys.stderr,
                flush=True,
            )
            loading = time.perf_counter()
            process, url = start_service(args.engine, python, log_path, args.ready_timeout)
            ready_s = round(time.perf_counter() - loading, 1)
        print(f"{args.clients} clients x {args.rounds} streaming chats at {url}", file=sys.stderr, flush=True)
        outcomes, wall_s, model = asyncio.run(
            run_clients(
                url,
                clients=args.clients,
                rounds=args.rounds,
                max_tokens=args.max_tokens,
                temperature=args.temperature,
                api_key=args.api_key,
                timeout_s=args.timeout,
            )
        )
        capacity = chat_capacity(url, args.api_key)
    finally:
        signal.signal(signal.SIGTERM, signal.SIG_IGN)  # a second SIGTERM must not cut the clean-up short
        if process is not None:
            stop_service(process)
    for outcome in [o for o in outcomes if o.kind == "error"][:5]:
        print(f"error: {outcome.detail}", file=sys.stderr)
    result = {
        "engine": None if args.url else args.engine,
        "model": model,
        "clients": args.clients,
        "rounds": args.rounds,
        "max_tokens": args.max_tokens,
        **summary(outcomes, wall_s),
        "ready_s": ready_s,
        "chat_capacity": capacity,
    }
    print(json.dumps(result))
    return 0


def _exit_on_sigterm(signum: int, frame: object) -> None:
    # A plain SIGTERM would end this process without its `finally`, leaving the inference API running.
    raise SystemExit(128 + signum)


if __name__ == "__main__":
    signal.signal(signal.SIGTERM, _exit_on_sigterm)
    sys.exit(main(sys.argv[1:]))
