"""Run one command with the inference API up and the database migrated, then stop it.

The API serves embeddings only, unless EVALUATE_CHAT_ENGINE names a chat engine (`make evaluate QUESTIONS=N`).

    python bench/with_inference.py CMD ARGS...   # inside `python -m ragsite.devstack exec --`

When INFERENCE_URL is already set, that service is used and nothing is started. The API's log goes to a file
so that the command's last output line stays its own (the benches print one JSON object last).
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import httpx

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from ragsite.devstack import free_port  # noqa: E402


def start_embeddings_api(log_path: Path) -> tuple[subprocess.Popen[bytes], str]:
    port = free_port()
    env = {
        **os.environ,
        "HF_HUB_OFFLINE": "1",
        # A chat model only for what needs one (`make evaluate QUESTIONS=N`: generate_questions).
        "INFERENCE_CHAT_ENGINE": os.environ.get("EVALUATE_CHAT_ENGINE", "none"),
        "INFERENCE_HOST": "127.0.0.1",
        "INFERENCE_PORT": str(port),
    }
    with open(log_path, "wb") as log:
        process = subprocess.Popen(
            [str(ROOT / ".venv-inference" / "bin" / "python"), "-m", "inference"],
            env=env,
            cwd=ROOT,
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 600
    try:
        while time.monotonic() < deadline:
            if process.poll() is not None:
                raise RuntimeError(f"the inference API exited with {process.returncode}; see {log_path}")
            try:
                if httpx.get(f"{url}/readyz", timeout=2).status_code == 200:
                    return process, url
            except httpx.TransportError:
                pass
            time.sleep(0.5)
        raise TimeoutError(f"the inference API was not ready after 600 s; see {log_path}")
    except BaseException:  # not ready, or stopped (SIGTERM) while it loaded: it must not outlive us
        if process.poll() is None:
            os.killpg(process.pid, signal.SIGKILL)
            process.wait()
        raise


def main(command: list[str]) -> int:
    if not command:
        print(__doc__, file=sys.stderr)
        return 2
    env = {**os.environ, "DJANGO_SETTINGS_MODULE": os.environ.get("BENCH_SETTINGS", "ragsite.settings.test")}
    process = None
    try:
        if not env.get("INFERENCE_URL"):
            log_dir = ROOT / ".data" / "bench-logs"
            log_dir.mkdir(parents=True, exist_ok=True)
            log_path = Path(tempfile.mkstemp(prefix="inference-", suffix=".log", dir=log_dir)[1])
            print(f"starting the inference API (log: {log_path})", file=sys.stderr, flush=True)
            process, env["INFERENCE_URL"] = start_embeddings_api(log_path)
        subprocess.run(
            [sys.executable, str(ROOT / "manage.py"), "migrate", "--no-input", "-v", "0"],
            env=env,
            cwd=ROOT,
            check=True,
        )
        return subprocess.call(command, env=env, cwd=ROOT)
    finally:
        signal.signal(signal.SIGTERM, signal.SIG_IGN)  # a second SIGTERM must not cut the clean-up short
        if process is not None and process.poll() is None:
            os.killpg(process.pid, signal.SIGTERM)
            try:
                process.wait(timeout=30)
            except subprocess.TimeoutExpired:
                os.killpg(process.pid, signal.SIGKILL)
                process.wait()


def _exit_on_sigterm(signum: int, frame: object) -> None:
    # A plain SIGTERM would end this process without its `finally`, leaving the inference API running.
    raise SystemExit(128 + signum)


if __name__ == "__main__":
    signal.signal(signal.SIGTERM, _exit_on_sigterm)
    sys.exit(main(sys.argv[1:]))
