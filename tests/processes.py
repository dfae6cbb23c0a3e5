"""Real processes the tests start: Celery workers (and, in later suites, the inference API)."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
import uuid
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlsplit, urlunsplit

ROOT = Path(__file__).resolve().parent.parent


def database_url_for(name: str) -> str:
    """The DATABASE_URL of this run, pointing at database `name` (pytest-django's test database)."""
    parts = urlsplit(os.environ["DATABASE_URL"])
    return urlunsplit(parts._replace(path=f"/{name}"))


def _spawn(command: list[str], *, env: dict[str, str], log_path: Path) -> subprocess.Popen[bytes]:
    """Start a server in a process group of its own (so a kill takes its children), output to a log."""
    with open(log_path, "wb") as log:
        return subprocess.Popen(
            command, env=env, cwd=ROOT, stdout=log, stderr=subprocess.STDOUT, start_new_session=True
        )


@dataclass
class ServiceProcess:
    """A server the tests started in its own process group, with its output in a log file."""

    process: subprocess.Popen[bytes]
    log_path: Path

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")

    def kill(self) -> None:
        """SIGKILL the whole process group (main process and children), as a crash would."""
        if self.process.poll() is None:
            os.killpg(self.process.pid, signal.SIGKILL)
            self.process.wait()

    def stop(self) -> None:
        if self.process.poll() is None:
            os.killpg(self.process.pid, signal.SIGTERM)
            try:
                self.process.wait(timeout=30)
            except subprocess.TimeoutExpired:
                self.kill()


@dataclass
class LoopbackServer(ServiceProcess):
    port: int

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"


@dataclass
class WorkerProcess(ServiceProcess):
    name: str
    metrics_url: str | None = None

    def wait_ready(self, timeout: float = 120) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if " ready." in self.log():
                return
            if self.process.poll() is not None:
                raise RuntimeError(f"worker exited with {self.process.returncode}:\n{self.log()}")
            time.sleep(0.2)
        raise TimeoutError(f"worker not ready after {timeout}s:\n{self.log()}")


def start_worker(
    *,
    database_name: str,
    log_dir: Path,
    queues: str = "default,ingest,reembed",
    concurrency: int = 1,
    extra_env: dict[str, str] | None = None,
) -> WorkerProcess:
    name = f"test-{uuid.uuid4().hex[:8]}"
    log_path = log_dir / f"{name}.log"
    env = {
        **os.environ,
        "DJANGO_SETTINGS_MODULE": "ragsite.settings.test",
        "DATABASE_URL": database_url_for(database_name),
        **(extra_env or {}),
    }
    process = _spawn(
        [
            sys.executable,
            "-m",
            "celery",
            "-A",
            "ragsite",
            "worker",
            "--loglevel",
            "INFO",
            "--pool",
            "prefork",
            "--concurrency",
            str(concurrency),
            "-Q",
            queues,
            "-n",
            f"{name}@%h",
            "--without-gossip",
            "--without-mingle",
        ],
        env=env,
        log_path=log_path,
    )
    worker = WorkerProcess(process=process, log_path=log_path, name=name)
    worker.wait_ready()
    return worker


def start_beat(
    *, database_name: str, log_dir: Path, schedule: Path, extra_env: dict[str, str] | None = None
) -> ServiceProcess:
    """A real Celery beat process (the scheduler `make run` starts), against the test database."""
    log_path = log_dir / f"beat-{uuid.uuid4().hex[:8]}.log"
    env = {
        **os.environ,
        "DJANGO_SETTINGS_MODULE": "ragsite.settings.test",
        "DATABASE_URL": database_url_for(database_name),
        **(extra_env or {}),
    }
    command = [
        sys.executable,
        "-m",
        "celery",
        "-A",
        "ragsite",
        "beat",
        "--loglevel",
        "INFO",
        "--schedule",
        str(schedule),
    ]
    return ServiceProcess(process=_spawn(command, env=env, log_path=log_path), log_path=log_path)


@dataclass
class InferenceProcess(LoopbackServer):
    def wait_ready(self, timeout: float = 300) -> None:
        import httpx

        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(f"inference API exited with {self.process.returncode}:\n{self.log()}")
            try:
                if httpx.get(f"{self.url}/readyz", timeout=2).status_code == 200:
                    return
            except httpx.TransportError:
                pass
            time.sleep(0.3)
        raise TimeoutError(f"inference API not ready after {timeout}s:\n{self.log()}")


def start_inference(
    *,
    log_dir: Path,
    chat_engine: str = "none",
    chat_model: str = "",
    extra_env: dict[str, str] | None = None,
    venv: str = ".venv-inference",
) -> InferenceProcess:
    """The real inference API in its own venv, on a free loopback port."""
    from ragsite.devstack import free_port

    port = free_port()
    log_path = log_dir / f"inference-{port}.log"
    env = {
        **os.environ,
        "HF_HUB_OFFLINE": "1",
        "INFERENCE_CHAT_ENGINE": chat_engine,
        "INFERENCE_CHAT_MODEL": chat_model,
        **(extra_env or {}),
    }
    process = _spawn(
        [
            str(ROOT / venv / "bin" / "python"),
            "-m",
            "uvicorn",
            "inference.app:app",
            "--host",
            "127.0.0.1",
            "--port",
            str(port),
        ],
        env=env,
        log_path=log_path,
    )
    server = InferenceProcess(process=process, log_path=log_path, port=port)
    server.wait_ready()
    return server


@dataclass
class WebProcess(LoopbackServer):
    """The Django ASGI app under uvicorn."""


def start_web(
    *,
    database_name: str,
    log_dir: Path,
    inference_url: str,
    extra_env: dict[str, str] | None = None,
    timeout: float = 60,
) -> WebProcess:
    """The web app as `make run` serves it (uvicorn, ASGI), on a free port, against the test database."""
    import httpx

    from ragsite.devstack import free_port

    port = free_port()
    log_path = log_dir / f"web-{port}.log"
    env = {
        **os.environ,
        "DJANGO_SETTINGS_MODULE": "ragsite.settings.test",
        "DATABASE_URL": database_url_for(database_name),
        "INFERENCE_URL": inference_url,
        "LOG_JSON": "false",
        **(extra_env or {}),
    }
    # The browser fixtures lift Django's async-safety guard in the test process; the app keeps it.
    env.pop("DJANGO_ALLOW_ASYNC_UNSAFE", None)
    process = _spawn(
        [
            sys.executable,
            "-m",
            "uvicorn",
            "ragsite.asgi:application",
            "--host",
            "127.0.0.1",
            "--port",
            str(port),
        ],
        env=env,
        log_path=log_path,
    )
    web = WebProcess(process=process, log_path=log_path, port=port)
    deadline = time.monotonic() + timeout
    while True:
        if process.poll() is not None:
            raise RuntimeError(f"web app exited with {process.returncode}:\n{web.log()}")
        try:
            httpx.get(f"{web.url}/healthz", timeout=2)
            return web
        except httpx.TransportError:
            if time.monotonic() > deadline:
                web.stop()
                raise TimeoutError(f"web app not answering after {timeout}s:\n{web.log()}") from None
            time.sleep(0.2)
