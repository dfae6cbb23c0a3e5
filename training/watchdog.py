"""A hang watchdog: every rank beats a counter in the job's store and aborts when any rank goes quiet.

Collective timeouts (``init_process_group(timeout=...)``) end a rank that waits on a dead peer, but
only after the long timeout that checkpoint loads and verifies need, and a frozen rank (SIGSTOP, a
wedged driver) never reaches one. So each rank runs two daemon threads:

- the *beat* thread adds 1 to ``hb/<rank>`` in the store every ``interval_s`` and reads every
  peer's counter (``add(key, 0)`` never blocks on a missing key);
- the *judge* thread, which does no I/O of its own, aborts the process when a peer's counter has
  stood still for ``timeout_s`` while the store kept answering (timed by this rank's clock, so
  clock skew between machines does not matter), when the store has not answered for
  ``timeout_s`` (a TCPStore client waits forever on a frozen server; under
  ``TORCH_DISABLE_SHARE_RDZV_TCP_STORE=1`` rank 0 serves it), or, once armed, when this rank's own
  training thread has made no progress for 1.5 x ``timeout_s``. A frozen rank is named at most
  ``timeout_s`` plus two check intervals (``timeout_s / 4``, at most 1 s) after it stopped.

A rank that finishes sets ``done/<rank>`` so its peers stop watching it. On a verdict the judge
writes the reason to the log and ``events.jsonl``, dumps every thread's stack, SIGKILLs the silent
peer when it runs on this machine (torchrun's restart path waits a fixed 30 s before it kills a
worker that ignores SIGTERM, which a stopped process does), and exits with ``HANG_EXIT``; torchrun
then restarts the attempt, which resumes from the newest checkpoint.
"""

from __future__ import annotations

import contextlib
import faulthandler
import json
import logging
import os
import signal
import socket
import sys
import threading
import time
from collections.abc import Callable
from typing import Any, Protocol

log = logging.getLogger(__name__)

HANG_EXIT = 70  # EX_SOFTWARE: torchrun counts it as a failure and restarts
# A rank's own lack of progress is judged later than a peer's silence: when a frozen rank stalls
# the others, they should name it rather than each blame itself.
OWN_PROGRESS_FACTOR = 1.5


class Store(Protocol):
    def add(self, key: str, value: int, /) -> int: ...
    def set(self, key: str, value: str, /) -> None: ...
    def get(self, key: str, /) -> bytes: ...
    def check(self, keys: list[str], /) -> bool: ...


class Watchdog:
    def __init__(
        self,
        *,
        store: Store,
        rank: int,
        world_size: int,
        timeout_s: float,
        store_host_rank: int | None = None,
        on_hang: Callable[[str, dict[str, Any]], None] = lambda reason, details: None,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.store = store
        self.rank = rank
        self.world_size = world_size
        self.timeout_s = timeout_s
        self.store_host_rank = store_host_rank  # the rank whose process serves the store, if any
        self.interval_s = min(1.0, timeout_s / 4)
        self.on_hang = on_hang
        self.clock = clock
        now = clock()
        self.started = now
        self.store_answered = now
        self.last_progress = now
        self.armed = False
        self.peers = [r for r in range(world_size) if r != rank]
        self.heard: dict[int, tuple[int, float]] = {}  # peer -> (counter, when it last moved)
        self.done: set[int] = set()
        self.who: dict[int, dict[str, Any]] = {}
        self._stop = threading.Event()
        self._threads: list[threading.Thread] = []

    # -- the training thread's side -------------------------------------------------------------

    def start(self) -> None:
        self.store.set(f"who/{self.rank}", json.dumps({"host": socket.gethostname(), "pid": os.getpid()}))
        for target, name in ((self._beat_loop, "heartbeat"), (self._judge_loop, "hang-watchdog")):
            thread = threading.Thread(target=target, name=name, daemon=True)
            thread.start()
            self._threads.append(thread)

    def progress(self) -> None:
        """The training thread got somewhere (a step, a checkpoint phase)."""
        self.last_progress = self.clock()

    def arm(self) -> None:
        """From now on, this rank's own lack of progress is a hang too."""
        self.progress()
        self.armed = True

    def disarm(self) -> None:
        self.armed = False

    def close(self) -> None:
        """Tell the peers this rank is done (so its silence is not a hang) and stop the threads."""
        self.armed = False
        self._stop.set()
        try:
            self.store.add(f"done/{self.rank}", 1)
        except Exception:  # the store's host may already be gone at the very end
            log.debug("could not mark rank %d done in the store", self.rank, exc_info=True)

    # -- the threads ----------------------------------------------------------------------------

    def _beat_loop(self) -> None:
        while not self._stop.is_set():
            try:
                self.beat_once()
            except Exception:  # judged by store_answered going stale
                log.warning("heartbeat store error", exc_info=True)
            self._stop.wait(self.interval_s)

    def beat_once(self) -> None:
        self.store.add(f"hb/{self.rank}", 1)
        for peer in self.peers:
            if peer in self.done:
                continue
            if self.store.add(f"done/{peer}", 0):
                self.done.add(peer)
                continue
            counter = self.store.add(f"hb/{peer}", 0)
            now = self.clock()
            previous = self.heard.get(peer)
            if previous is None or previous[0] != counter:
                self.heard[peer] = (counter, now)
            if peer not in self.who and self.store.check([f"who/{peer}"]):
                self.who[peer] = json.loads(self.store.get(f"who/{peer}"))
        self.store_answered = self.clock()

    def _judge_loop(self) -> None:
        while not self._stop.wait(self.interval_s):
            verdict = self.verdict()
            if verdict is not None:
                self.abort(*verdict)

    def verdict(self) -> tuple[str, dict[str, Any]] | None:
        """Why this attempt must end now, or None while every rank is making progress."""
        now = self.clock()
        # A peer is silent when the store kept answering while the peer's counter stood still;
        # peers come first so that the verdict names the rank that stalled everyone else.
        for peer in self.peers:
            if peer in self.done:
                continue
            silent = self.store_answered - self.heard.get(peer, (0, self.started))[1]
            if silent > self.timeout_s:
                return (
                    f"rank {peer} sent no heartbeat for {silent:.1f} s (stopped, hung or gone)",
                    {"peer": peer, "silent_s": silent},
                )
        if now - self.store_answered > self.timeout_s:
            silent = now - self.store_answered
            details: dict[str, Any] = {"silent_s": silent}
            if self.store_host_rank is not None and self.store_host_rank != self.rank:
                details["peer"] = self.store_host_rank
            return (
                f"the heartbeat store (rank {self.store_host_rank}) has not answered for {silent:.1f} s",
                details,
            )
        if self.armed and now - self.last_progress > OWN_PROGRESS_FACTOR * self.timeout_s:
            silent = now - self.last_progress
            return f"rank {self.rank} made no progress for {silent:.1f} s", {"silent_s": silent}
        return None

    def abort(self, reason: str, details: dict[str, Any]) -> None:
        log.error("hang detected: %s; aborting this attempt (limit %.1f s)", reason, self.timeout_s)
        try:
            self.on_hang(reason, details)
            faulthandler.dump_traceback(file=sys.stderr, all_threads=True)
            self.kill_local_peer(details.get("peer"))
        finally:
            logging.shutdown()
            os._exit(HANG_EXIT)

    def kill_local_peer(self, peer: int | None) -> None:
        who = self.who.get(peer) if peer is not None else None
        if who is None or who["host"] != socket.gethostname():
            return
        log.error(
            "killing rank %s (pid %s on this machine) so the restart need not wait for it", peer, who["pid"]
        )
        with contextlib.suppress(ProcessLookupError):
            os.kill(int(who["pid"]), signal.SIGKILL)
