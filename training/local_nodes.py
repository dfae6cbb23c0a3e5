"""Several torchrun agents on one machine, each standing in for a node of an elastic job (stdlib only).

The tests and ``bench/elastic.py`` use it to lose a node for good and bring one back, as
``torchrun --nnodes MIN:MAX`` does across machines: every agent runs one worker, the c10d
rendezvous store is served by a process of its own (so losing any "node" never takes the store
with it, as it would if that node hosted it), and ``TORCH_DISABLE_SHARE_RDZV_TCP_STORE=1`` gives
each attempt a fresh store for the workers (see ``training.runtime.warn_if_store_is_shared``).
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

STORE_HOST = """
import sys, time
import torch.distributed as dist
port = int(sys.argv[1])
store = dist.TCPStore("127.0.0.1", port, is_master=True, wait_for_workers=False, multi_tenant=True)
print("ready", flush=True)
while True:
    time.sleep(3600)
"""


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@dataclass
class LocalNodes:
    """An elastic job of ``min_nodes:max_nodes`` one-worker agents, started and killed at will."""

    root: Path  # the repository (PYTHONPATH, working directory)
    ml_bin: Path  # .venv-inference/bin
    log_dir: Path
    train_args: list[str]
    min_nodes: int = 2
    max_nodes: int = 3
    max_restarts: int = 3
    env: dict[str, str] = field(default_factory=dict)
    port: int = field(default_factory=free_port)
    nodes: list[subprocess.Popen[bytes]] = field(default_factory=list)
    store: subprocess.Popen[bytes] | None = None

    def start_store(self) -> None:
        self.log_dir.mkdir(parents=True, exist_ok=True)
        self.store = subprocess.Popen(
            [str(self.ml_bin / "python"), "-c", STORE_HOST, str(self.port)],
            stdout=subprocess.PIPE,
            start_new_session=True,
        )
        assert self.store.stdout is not None
        if self.store.stdout.readline().strip() != b"ready":
            raise RuntimeError("the rendezvous store did not start")

    def start_node(self, name: str, *, fault: str | None = None) -> subprocess.Popen[bytes]:
        """One more agent; ``fault`` is a RAGSITE_TRAIN_FAULT spec for its worker's first attempt."""
        env = {
            **os.environ,
            **self.env,
            "PYTHONPATH": str(self.root),
            "HF_HUB_OFFLINE": "1",
            "TRANSFORMERS_OFFLINE": "1",
            "OMP_NUM_THREADS": "1",
            "TORCH_DISABLE_SHARE_RDZV_TCP_STORE": "1",
        }
        env.pop("RAGSITE_TRAIN_FAULT", None)
        if fault:
            env["RAGSITE_TRAIN_FAULT"] = fault
        command = [
            str(self.ml_bin / "torchrun"),
            "--nnodes", f"{self.min_nodes}:{self.max_nodes}",
            "--nproc-per-node", "1",
            "--rdzv-backend", "c10d",
            "--rdzv-endpoint", f"127.0.0.1:{self.port}",
            "--rdzv-id", "local-nodes",
            # A lost node's place is given up after 3 missed 1 s keep-alives; a round with fewer
            # than max_nodes closes 2 s after the last node joined.
            "--rdzv-conf", "is_host=0,last_call_timeout=2,join_timeout=120,keep_alive_interval=1",
            "--max-restarts", str(self.max_restarts),
            "--monitor-interval", "0.5",
            "-m", "training.train",
            *self.train_args,
        ]  # fmt: skip
        log = open(self.log_dir / f"{name}.log", "wb")  # noqa: SIM115 (the child keeps it)
        node = subprocess.Popen(
            command, cwd=self.root, env=env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True
        )
        log.close()
        self.nodes.append(node)
        return node

    def stop(self) -> None:
        """Kill every agent (and its worker) and the store that are still running."""
        for process in [*self.nodes, *([self.store] if self.store else [])]:
            if process.poll() is None:
                os.killpg(process.pid, signal.SIGKILL)
                process.wait()

    def logs(self) -> str:
        return "\n".join(
            f"==== {path.name}\n{path.read_text(errors='replace')}"
            for path in sorted(self.log_dir.glob("*.log"))
        )


def wait_for(predicate: Callable[[], bool], *, timeout: float, what: str) -> None:
    """Poll ``predicate()`` every 0.2 s until it is true; raise TimeoutError naming ``what``."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return
        time.sleep(0.2)
    raise TimeoutError(f"{what} did not happen within {timeout:.0f} s")
