"""Two-phase checkpointing after CheckFreq (FAST '21): a snapshot in memory, then a background persist.

Phase one copies the training state to CPU memory at a step boundary; the training thread waits
only for that copy. Phase two, on a thread, serialises each part, writes it atomically and seals
the directory with a manifest (``training.manifest``). Only the writer rank (global rank 0) persists;
the other ranks hand their per-rank state (RNG streams) to it before the snapshot.
"""

from __future__ import annotations

import io
import logging
import math
import os
import signal
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch

from training import manifest

log = logging.getLogger(__name__)

FAULT_ENV = "RAGSITE_TRAIN_FAULT"


@dataclass(frozen=True)
class Fault:
    """A failure to inject, from ``RAGSITE_TRAIN_FAULT="<kind>:rank=<r>:step=<s>"``.

    Kinds: ``kill`` (SIGKILL after optimiser step s), ``kill-in-write`` (SIGKILL half-way through
    writing the checkpoint of step s) and ``sigterm`` (a preemption notice after step s). It fires
    only in the first attempt (torchrun's restart count 0), so the restarted job runs clean.
    """

    kind: str
    rank: int
    step: int

    @classmethod
    def from_env(cls, rank: int) -> Fault | None:
        spec = os.environ.get(FAULT_ENV, "")
        if not spec or os.environ.get("TORCHELASTIC_RESTART_COUNT", "0") != "0":
            return None
        kind, *options = spec.split(":")
        values = dict(option.split("=", 1) for option in options)
        if kind not in ("kill", "kill-in-write", "sigterm"):
            raise ValueError(f"unknown {FAULT_ENV} kind {kind!r}")
        fault = cls(kind=kind, rank=int(values["rank"]), step=int(values["step"]))
        return fault if fault.rank == rank else None

    def after_step(self, step: int, on_kill: Callable[[], None]) -> None:
        if step != self.step:
            return
        if self.kind == "kill":
            on_kill()
            os.kill(os.getpid(), signal.SIGKILL)
        elif self.kind == "sigterm":
            os.kill(os.getpid(), signal.SIGTERM)

    def chunk_hook(self, step: int, on_kill: Callable[[], None]) -> manifest.ChunkHook | None:
        if self.kind != "kill-in-write" or step != self.step:
            return None

        def kill_half_way(written: int, total: int) -> None:
            if written * 2 >= total:
                on_kill()
                os.kill(os.getpid(), signal.SIGKILL)

        return kill_half_way


def copy_to_cpu(obj: Any) -> Any:
    """A deep copy with every tensor in CPU memory: the snapshot must not alias live training state."""
    if isinstance(obj, torch.Tensor):
        return obj.detach().to("cpu", copy=True)
    if isinstance(obj, dict):
        return {key: copy_to_cpu(value) for key, value in obj.items()}
    if isinstance(obj, list):
        return [copy_to_cpu(value) for value in obj]
    if isinstance(obj, tuple):
        return tuple(copy_to_cpu(value) for value in obj)
    return obj


@dataclass
class PersistStats:
    step: int
    snapshot_s: float
    stall_s: float
    persist_s: float = math.nan
    bytes: int = 0


@dataclass
class Checkpointer:
    """Takes snapshots on the training thread and persists them on one background thread."""

    root: Path
    keep: int
    fault: Fault | None = None
    on_kill: Callable[[int], None] = lambda step: None
    history: list[PersistStats] = field(default_factory=list)

    def __post_init__(self) -> None:
        if self.keep < 1:
            raise ValueError("keep at least one checkpoint")
        self.root.mkdir(parents=True, exist_ok=True)
        self._thread: threading.Thread | None = None
        self._error: BaseException | None = None

    @property
    def busy(self) -> bool:
        return self._thread is not None and self._thread.is_alive()

    def wait(self) -> float:
        """Block until the previous persist is on disk; re-raise its failure. Returns the wait."""
        started = time.perf_counter()
        if self._thread is not None:
            self._thread.join()
            self._thread = None
        if self._error is not None:
            error, self._error = self._error, None
            raise RuntimeError("writing the previous checkpoint failed") from error
        return time.perf_counter() - started

    def drain(self) -> None:
        """Let an in-flight persist finish without raising: the way out after another failure."""
        if self._thread is not None:
            self._thread.join()

    def save(self, step: int, parts: dict[str, Any], meta: dict[str, Any]) -> PersistStats:
        """Phase one now (copy to CPU memory), phase two on the background thread."""
        stall_s = self.wait()
        started = time.perf_counter()
        snapshot = copy_to_cpu(parts)
        stats = PersistStats(step=step, snapshot_s=time.perf_counter() - started, stall_s=stall_s)
        self.history.append(stats)
        self._thread = threading.Thread(
            target=self._persist, args=(step, snapshot, meta, stats), name=f"persist-{step}"
        )
        self._thread.start()
        return stats

    def _persist(
        self, step: int, snapshot: dict[str, Any], meta: dict[str, Any], stats: PersistStats
    ) -> None:
        started = time.perf_counter()
        try:
            directory = manifest.step_dir(self.root, step)
            if directory.exists():
                manifest.remove_checkpoint(directory)
            directory.mkdir(parents=True)
            hook = self.fault.chunk_hook(step, lambda: self.on_kill(step)) if self.fault else None
            files = {}
            for name, part in snapshot.items():
                buffer = io.BytesIO()
                torch.save(part, buffer)
                data = buffer.getbuffer()
                sha = manifest.write_file_atomic(directory / f"{name}.pt", data, on_chunk=hook)
                files[f"{name}.pt"] = (len(data), sha)
                stats.bytes += len(data)
            manifest.write_manifest(directory, step=step, files=files, meta=meta)
            manifest.fsync_dir(self.root)
            manifest.prune(self.root, self.keep)
        except BaseException as exc:  # re-raised on the training thread by wait()
            self._error = exc
        stats.persist_s = time.perf_counter() - started


def load_parts(checkpoint: manifest.Checkpoint) -> dict[str, Any]:
    """Every part of a verified checkpoint, onto the CPU. Our own checksummed files, so full pickle."""
    return {
        Path(name).stem: torch.load(checkpoint.path / name, map_location="cpu", weights_only=False)
        for name in checkpoint.manifest["files"]
    }
