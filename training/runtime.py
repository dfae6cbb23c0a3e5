"""The training job's process: the process group, the event log and the hang watchdog."""

from __future__ import annotations

import gc
import json
import logging
import os
import time
import uuid
from dataclasses import dataclass, field
from datetime import timedelta
from pathlib import Path
from typing import Any

import torch
import torch.distributed as dist

from training.watchdog import Watchdog

log = logging.getLogger("training")


@dataclass(frozen=True)
class Process:
    rank: int
    world_size: int
    local_rank: int
    device: torch.device
    attempt: str  # the same on every rank of one attempt, new for each attempt


@dataclass
class EventLog:
    """JSON lines any rank appends to (one write each): timings the bench and tests read."""

    path: Path
    rank: int
    attempt: str = ""
    world_size: int = 1
    restart: int = field(default_factory=lambda: int(os.environ.get("TORCHELASTIC_RESTART_COUNT", 0)))

    def write(self, event: str, **values: Any) -> None:
        row = {
            "event": event,
            "t": time.time(),
            "rank": self.rank,
            "restart": self.restart,
            "attempt": self.attempt,
            "world_size": self.world_size,
        }
        line = json.dumps(row | values) + "\n"
        fd = os.open(self.path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
        try:
            os.write(fd, line.encode())
        finally:
            os.close(fd)


def init_distributed(*, timeout_s: float) -> Process:
    """Join torchrun's process group (a world of one when run as plain python).

    ``timeout_s`` bounds every collective: a rank waiting on a peer that died or froze fails
    instead of waiting forever (the watchdog usually ends the attempt sooner).
    """
    for key, value in (("RANK", "0"), ("WORLD_SIZE", "1"), ("LOCAL_RANK", "0")):
        os.environ.setdefault(key, value)
    os.environ.setdefault("MASTER_ADDR", "127.0.0.1")
    os.environ.setdefault("MASTER_PORT", "29533")
    local_rank = int(os.environ["LOCAL_RANK"])
    if torch.cuda.is_available():
        os.environ.setdefault("CUBLAS_WORKSPACE_CONFIG", ":4096:8")  # deterministic cuBLAS
        torch.cuda.set_device(local_rank)
        # gloo for CPU tensors too: the background checkpoint save runs on a gloo group.
        device, backend = torch.device("cuda", local_rank), "cpu:gloo,cuda:nccl"
    else:
        device, backend = torch.device("cpu"), "gloo"
    timeout = timedelta(seconds=timeout_s)
    store, rank, world_size = next(dist.rendezvous("env://", timeout=timeout))
    if shares_agent_store():
        # Keys of a crashed attempt linger in torchrun's store and would point the new ranks at
        # dead peers (pytorch/pytorch#167288); a prefix per restart keeps each mesh to itself. It
        # is per node and unchanged by a membership change, hence warn_if_store_is_shared.
        restart = os.environ.get("TORCHELASTIC_RESTART_COUNT", "0")
        store = dist.PrefixStore(f"ragsite-train/attempt-{restart}", store)
    dist.init_process_group(backend, store=store, rank=rank, world_size=world_size, timeout=timeout)
    attempt: list[Any] = [uuid.uuid4().hex[:12] if rank == 0 else None]
    dist.broadcast_object_list(attempt, src=0)
    return Process(rank, world_size, local_rank, device, str(attempt[0]))


def shares_agent_store() -> bool:
    """Whether the workers use torchrun's store, which outlives attempts (else rank 0 serves anew)."""
    return os.environ.get("TORCHELASTIC_USE_AGENT_STORE") == "True"


def warn_if_store_is_shared() -> None:
    """Several torchrun agents sharing their store cannot tell the workers' attempts apart."""
    if shares_agent_store() and int(os.environ.get("GROUP_WORLD_SIZE", "1")) > 1:
        log.warning(
            "torchrun shares its rendezvous store with the workers across restarts; after a membership "
            "change two attempts can collide in it. Run torchrun with TORCH_DISABLE_SHARE_RDZV_TCP_STORE=1 "
            "so that every attempt gets a store of its own"
        )


def start_watchdog(process: Process, *, timeout_s: float, events: EventLog) -> Watchdog:
    """Heartbeats through a store client of the watchdog's own (its thread may block on it)."""
    store = dist.TCPStore(
        os.environ["MASTER_ADDR"],
        int(os.environ["MASTER_PORT"]),
        is_master=False,
        timeout=timedelta(seconds=max(timeout_s, 30)),
    )
    watchdog = Watchdog(
        store=dist.PrefixStore(f"ragsite-train/watchdog/{process.attempt}", store),
        rank=process.rank,
        world_size=process.world_size,
        timeout_s=timeout_s,
        # Without the agent's store, the env:// rendezvous serves the store from rank 0's process.
        store_host_rank=None if shares_agent_store() else 0,
        on_hang=lambda reason, details: events.write("hang", reason=reason, **details),
    )
    watchdog.start()
    return watchdog


def leave_process_group() -> None:
    """End the process group on every rank together, while the interpreter is fully alive.

    A finished run once ended in SIGABRT as gloo's connections were torn down at interpreter exit,
    one rank while its peer was still connected ("terminate called without an active exception",
    as pytorch/pytorch#179291 describes). So all ranks meet at a barrier and destroy the group.
    """
    dist.barrier()
    gc.collect()
    dist.destroy_process_group()
