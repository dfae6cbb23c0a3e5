"""Two-phase checkpointing after CheckFreq (FAST '21), written with torch.distributed.checkpoint.

Phase one, the *snapshot*, is ``torch.distributed.checkpoint.async_save``'s staging: every rank
copies the state to CPU memory at a step boundary, and the training thread waits only for that.
Phase two, the *persist*, is its upload: each rank writes its share of the tensors (the planner
spreads replicated tensors over the ranks) into ``step-N/`` on a background thread, over a
process group of its own so its collectives never interleave with the training loop's. When the
save is complete on every rank, global rank 0 checksums the files and seals the directory with a
manifest (``training.manifest``). Any world size can load the result: each rank reads the tensors
it needs from whichever files hold them.
"""

from __future__ import annotations

import logging
import math
import os
import signal
import threading
import time
from collections.abc import Callable
from concurrent.futures import Future
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch.distributed as dist
import torch.distributed.checkpoint as dcp

from training import manifest

log = logging.getLogger(__name__)

FAULT_ENV = "RAGSITE_TRAIN_FAULT"
FAULT_KINDS = ("kill", "kill-in-write", "sigterm", "sigstop", "lose-node")


@dataclass(frozen=True)
class Fault:
    """A failure to inject, from ``RAGSITE_TRAIN_FAULT="<kind>:rank=<r>:step=<s>"``.

    Kinds: ``kill`` (SIGKILL after optimiser step s), ``kill-in-write`` (SIGKILL on the writer,
    rank 0, half-way through sealing the checkpoint of step s: its files are written, the manifest
    is not), ``sigterm`` (a preemption notice after step s), ``sigstop`` (the rank freezes in the
    middle of step s + 1, after its gradients and before the reduction) and ``lose-node`` (after
    step s the rank SIGKILLs its torchrun agent and itself: the node is gone for good). It fires
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
        if kind not in FAULT_KINDS:
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
        elif self.kind == "lose-node":
            on_kill()
            os.kill(os.getppid(), signal.SIGKILL)
            os.kill(os.getpid(), signal.SIGKILL)

    def mid_step(self, step: int, on_stop: Callable[[], None]) -> None:
        """Inside the step after ``step``, between the gradients and their reduction."""
        if self.kind == "sigstop" and step == self.step:
            on_stop()
            os.kill(os.getpid(), signal.SIGSTOP)

    def seal_hook(self, step: int, on_kill: Callable[[], None]) -> Callable[[int, int], None] | None:
        if self.kind != "kill-in-write" or step != self.step:
            return None

        def kill_half_way(done: int, total: int) -> None:
            if done * 2 >= total:
                on_kill()
                os.kill(os.getpid(), signal.SIGKILL)

        return kill_half_way


@dataclass
class PersistStats:
    step: int
    snapshot_s: float
    stall_s: float
    persist_s: float = math.nan
    bytes: int = 0


@dataclass
class Checkpointer:
    """Snapshots on the training thread, persists in the background; every rank takes part.

    ``group`` is the process group the background save runs its collectives on (gloo, created by
    every rank for this alone). Only global rank 0 seals and prunes.
    """

    root: Path
    keep: int
    rank: int
    group: Any
    fault: Fault | None = None
    on_kill: Callable[[int], None] = lambda step: None
    on_sealed: Callable[[PersistStats], None] = lambda stats: None
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

    def save(self, step: int, state: dict[str, Any], meta: dict[str, Any]) -> PersistStats:
        """Collective. Phase one now (staging to CPU memory), phase two on a background thread."""
        stall_s = self.wait()
        started = time.perf_counter()
        directory = manifest.step_dir(self.root, step)
        directory.mkdir(parents=True, exist_ok=True)
        upload = dcp.async_save(
            state,
            storage_writer=dcp.FileSystemWriter(directory, sync_files=True),
            process_group=self.group,
        )
        stats = PersistStats(step=step, snapshot_s=time.perf_counter() - started, stall_s=stall_s)
        self.history.append(stats)
        if not isinstance(upload, Future):
            raise TypeError(f"async_save returned {type(upload).__name__}, expected a Future")
        self._thread = threading.Thread(
            target=self._persist, args=(upload, step, directory, meta, stats), name=f"persist-{step}"
        )
        self._thread.start()
        return stats

    def _persist(
        self, upload: Future[Any], step: int, directory: Path, meta: dict[str, Any], stats: PersistStats
    ) -> None:
        started = time.perf_counter()
        try:
            # async_save's future ends after the coordinator gathered every rank's write results,
            # so on rank 0 all files of the step are written and fsynced by now.
            upload.result()
            if self.rank == 0:
                hook = self.fault.seal_hook(step, lambda: self.on_kill(step)) if self.fault else None
                stats.bytes = manifest.seal_directory(directory, step=step, meta=meta, on_file=hook)
                manifest.fsync_dir(self.root)
                stats.persist_s = time.perf_counter() - started
                self.on_sealed(stats)
                manifest.prune(self.root, self.keep)
        except BaseException as exc:  # re-raised on the training thread by wait()
            self._error = exc
        stats.persist_s = time.perf_counter() - started


def load_checkpoint(checkpoint: manifest.Checkpoint, state: dict[str, Any]) -> None:
    """Collective: fill ``state``'s tensors in place from a verified checkpoint, at any world size."""
    dcp.load(state, storage_reader=dcp.FileSystemReader(checkpoint.path), process_group=dist.group.WORLD)
