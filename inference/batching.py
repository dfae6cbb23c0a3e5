"""Bounded admission and the dynamic micro-batcher that merges concurrent embedding requests."""

from __future__ import annotations

import asyncio
import contextlib
import math
import threading
import time
from collections import deque
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

import numpy as np

from inference.metrics import Metrics

EncodeFn = Callable[[list[str]], np.ndarray]


class QueueFull(Exception):
    """The queue cannot take this work now; the caller should retry after `retry_after` seconds."""

    def __init__(self, retry_after: int) -> None:
        super().__init__(f"queue full, retry after {retry_after}s")
        self.retry_after = retry_after


@dataclass(eq=False)
class _Item:
    text: str
    tokens: int
    enqueued_at: float
    future: asyncio.Future[np.ndarray] = field(repr=False)


class DeliveredRate:
    """Inputs encoded per second the batcher was busy, over the last `window_s` seconds.

    A batch's busy time runs from the end of the previous batch (or from its oldest input's arrival,
    if the queue was idle) to its own end, so it counts everything between two batches: forming it,
    the pipe to the encoder, a starved CPU and the model. Admission built on the model's own time
    admitted work that a starved process then could not answer before its deadline.
    """

    def __init__(self, *, window_s: float = 10.0, seed: float = 0.0) -> None:
        self.window_s = window_s
        self._seed = seed
        self._batches: deque[tuple[float, int, float]] = deque()
        self._inputs = 0
        self._busy_s = 0.0
        self._last_answer = -math.inf

    @property
    def per_second(self) -> float:
        return self._inputs / self._busy_s if self._busy_s > 0 else self._seed

    def record(self, inputs: int, *, oldest_arrival: float, answered_at: float) -> float:
        """Add one answered batch; its busy seconds."""
        busy_s = max(answered_at - max(self._last_answer, oldest_arrival), 1e-6)
        self._last_answer = answered_at
        self._batches.append((answered_at, inputs, busy_s))
        self._inputs += inputs
        self._busy_s += busy_s
        # Keep the newest batch whatever its age: one slow batch is better than no estimate.
        while len(self._batches) > 1 and self._batches[0][0] < answered_at - self.window_s:
            _, old_inputs, old_busy_s = self._batches.popleft()
            self._inputs -= old_inputs
            self._busy_s -= old_busy_s
        return busy_s


class EmbeddingBatcher:
    """Queues single inputs and encodes whatever arrived together as one length-sorted batch.

    A batch closes when it holds `max_batch_size` inputs, when its padded size would pass
    `max_batch_tokens`, or `max_wait_s` after its oldest input arrived. Batches are formed and
    encoded on a thread of their own (`encode` blocks; with an EncoderProcess the model itself runs
    in another process), and the answers go back to the event loop in one callback per batch. So a
    flood of connections that keeps the event loop busy delays answers a little but never keeps the
    model waiting for its next batch.
    """

    def __init__(
        self,
        encode: EncodeFn,
        *,
        max_batch_size: int,
        max_wait_s: float,
        max_batch_tokens: int,
        max_queue: int,
        metrics: Metrics,
        inputs_per_second: float = 0.0,
    ) -> None:
        self._encode = encode
        self.max_batch_size = max_batch_size
        self.max_wait_s = max_wait_s
        self.max_batch_tokens = max_batch_tokens
        self.max_queue = max_queue
        self._metrics = metrics
        # Shared with the batching thread: guarded by `_changed`, which also wakes that thread.
        self._pending: deque[_Item] = deque()
        self._changed = threading.Condition()
        self._stopping = False
        self._in_flight = 0
        # Event loop side only: requests let in whose inputs are not queued yet (their body is being read).
        self._reserved = 0
        self._thread: threading.Thread | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        # Event loop side only. Measured from each answered batch; seeded by the warm-up so the first
        # burst is admitted with care too.
        self._rate = DeliveredRate(seed=inputs_per_second)
        self._answer_lag_s = 0.0
        metrics.queue_capacity.labels("embeddings").set(max_queue)

    @property
    def depth(self) -> int:
        """Inputs admitted and not yet encoded, the batch in the model included, and one for each
        reserved request whose inputs are not queued yet."""
        return len(self._pending) + self._in_flight + self._reserved

    def start(self) -> None:
        self._loop = asyncio.get_running_loop()
        self._thread = threading.Thread(target=self._run, name="embedding-batcher", daemon=True)
        self._thread.start()

    async def stop(self) -> None:
        with self._changed:
            self._stopping = True
            waiting = list(self._pending)
            self._pending.clear()
            self._changed.notify_all()
        for item in waiting:
            item.future.cancel()
        if self._thread is not None:
            # The batch in the model, if any, finishes first.
            await asyncio.to_thread(self._thread.join)
            self._thread = None

    @property
    def inputs_per_second(self) -> float:
        """Inputs answered per busy second, recently (the warm-up's rate until there are answers)."""
        return self._rate.per_second

    def retry_after(self, extra: int = 0) -> int:
        """Seconds until the queue has likely drained enough for `extra` more inputs."""
        rate = self._rate.per_second
        if rate <= 0:
            return 1
        return max(1, min(60, math.ceil((self.depth + extra) / rate)))

    def expected_wait_s(self, inputs: int) -> float:
        """How long `inputs` more would likely wait for their answer, at the delivered rate."""
        rate = self._rate.per_second
        if rate <= 0:
            return 0.0
        # Everything ahead of them and, behind a queue, the rest of the batch they land in; then the
        # event loop's lag in handing a finished batch back to its callers.
        ahead = self.depth + inputs + min(self.depth, self.max_batch_size)
        return ahead / rate + self._answer_lag_s

    def has_room(self, inputs: int, *, within_s: float) -> bool:
        """Whether `inputs` more fit the queue and would likely be answered within `within_s` seconds."""
        if self.depth + inputs > self.max_queue:
            return False
        # A wait longer than the deadline would end in a 504 after holding a slot: refuse it now.
        return self.expected_wait_s(inputs) <= within_s

    def reserve(self, *, within_s: float) -> Reservation | None:
        """Hold room for one input of a request whose body is still to be read; None when there is none.

        A burst of connections arrives before any of them has queued an input, so a check of the queue
        alone lets every one of them through to the body, the validation and the tokenizer, only to
        refuse most of them after that work, and meanwhile the model waits. A reservation counts in the
        depth from the moment the request arrives, so the requests past the queue's room are refused
        first, cheaply.
        """
        if not self.has_room(1, within_s=within_s):
            return None
        self._reserved += 1
        self._publish_depth()
        return Reservation(self)

    def _unreserve(self) -> None:
        self._reserved -= 1
        self._publish_depth()

    def has_room_for(self, inputs: int, reservation: Reservation | None, *, within_s: float) -> bool:
        """has_room for a request's `inputs`, one of which its reservation (on this batcher) already holds."""
        held = 1 if reservation is not None and reservation.holds(self) else 0
        return self.has_room(inputs - held, within_s=within_s)

    async def embed(
        self,
        texts: Sequence[str],
        token_counts: Sequence[int],
        *,
        within_s: float,
        reservation: Reservation | None = None,
    ) -> list[np.ndarray]:
        """Encode `texts` in order; raises QueueFull at once when they do not fit the queue.

        A `reservation` on this batcher is given back as the inputs take its place in the queue.
        """
        if not self.has_room_for(len(texts), reservation, within_s=within_s):
            raise QueueFull(self.retry_after(len(texts)))
        if reservation is not None and reservation.holds(self):
            reservation.release()
        loop = asyncio.get_running_loop()
        now = time.monotonic()
        items = [
            _Item(text, tokens, now, loop.create_future())
            for text, tokens in zip(texts, token_counts, strict=True)
        ]
        with self._changed:
            self._pending.extend(items)
            self._changed.notify()
        self._publish_depth()
        try:
            return list(await asyncio.gather(*(item.future for item in items)))
        finally:
            self._withdraw(items)

    def _withdraw(self, items: list[_Item]) -> None:
        """Drop a caller's inputs still waiting in the queue (it gave up or was answered)."""
        withdrawn = False
        with self._changed:
            for item in items:
                if not item.future.done():
                    item.future.cancel()
                try:
                    self._pending.remove(item)
                    withdrawn = True
                except ValueError:
                    pass
        if withdrawn:
            self._publish_depth()

    def _publish_depth(self) -> None:
        self._metrics.queue_depth.labels("embeddings").set(self.depth)

    def _run(self) -> None:
        """The batching thread: take the next batch, encode it, hand the answers to the event loop."""
        while True:
            with self._changed:
                batch = self._next_batch()
            if batch is None:
                return
            self._encode_batch(batch)

    def _next_batch(self) -> list[_Item] | None:
        """Wait (holding `_changed`) until a batch closes; None once stopping."""
        while not self._stopping:
            if not self._pending:
                self._changed.wait()
                continue
            if len(self._pending) < self.max_batch_size:
                remaining = self._pending[0].enqueued_at + self.max_wait_s - time.monotonic()
                if remaining > 0:
                    self._changed.wait(remaining)
                    continue
            batch = self._take_batch()
            if batch:
                self._in_flight = len(batch)
                return batch
        return None

    def _take_batch(self) -> list[_Item]:
        """Oldest inputs first, as many as fit; sorted by length so padding stays small."""
        batch: list[_Item] = []
        longest = 0
        while self._pending and len(batch) < self.max_batch_size:
            item = self._pending[0]
            if item.future.done():
                self._pending.popleft()
                continue
            padded = max(longest, item.tokens) * (len(batch) + 1)
            if batch and padded > self.max_batch_tokens:
                break
            batch.append(self._pending.popleft())
            longest = max(longest, item.tokens)
        batch.sort(key=lambda item: item.tokens)
        return batch

    def _encode_batch(self, batch: list[_Item]) -> None:
        oldest_arrival = min(item.enqueued_at for item in batch)
        started = time.perf_counter()
        vectors: np.ndarray | None = None
        error: Exception | None = None
        try:
            vectors = self._encode([item.text for item in batch])
        except Exception as exc:
            error = exc
        elapsed = max(time.perf_counter() - started, 1e-9)
        self._in_flight = 0
        self._publish_depth()
        if error is None:
            self._record(batch, elapsed)
        assert self._loop is not None
        # RuntimeError: the event loop has closed, so nobody is waiting any more.
        with contextlib.suppress(RuntimeError):
            self._loop.call_soon_threadsafe(
                self._answer, batch, vectors, error, oldest_arrival, time.monotonic()
            )

    def _answer(
        self,
        batch: list[_Item],
        vectors: np.ndarray | None,
        error: Exception | None,
        oldest_arrival: float,
        encoded_at: float,
    ) -> None:
        """On the event loop: settle each caller's future; measure the encoding rate and the loop's lag."""
        self._answer_lag_s = time.monotonic() - encoded_at
        if vectors is None:
            for item in batch:
                if not item.future.done():
                    item.future.set_exception(error or RuntimeError("the encoder returned nothing"))
            return
        for item, vector in zip(batch, vectors, strict=True):
            if not item.future.done():
                item.future.set_result(vector)
        # The rate is taken where batches finish, not where the loop hands them out: a flooded loop's lag
        # is one delay for every answer, added on its own in expected_wait_s, not a slower rate.
        self._rate.record(len(batch), oldest_arrival=oldest_arrival, answered_at=encoded_at)

    def _record(self, batch: list[_Item], elapsed: float) -> None:
        tokens = sum(item.tokens for item in batch)
        self._metrics.batch_size.observe(len(batch))
        self._metrics.batch_seconds.observe(elapsed)
        self._metrics.tokens.labels("embedding").inc(tokens)
        self._metrics.tokens_per_second.labels("embedding").set(tokens / elapsed)


class Reservation:
    """Room for one input, held for a request from its arrival until its inputs are queued or it ends."""

    def __init__(self, batcher: EmbeddingBatcher) -> None:
        self._batcher: EmbeddingBatcher | None = batcher

    def holds(self, batcher: EmbeddingBatcher) -> bool:
        return self._batcher is batcher

    def release(self) -> None:
        """Give the room back; later calls do nothing."""
        if self._batcher is not None:
            batcher, self._batcher = self._batcher, None
            batcher._unreserve()


class AdmissionGate:
    """At most `max_active` requests run and `max_waiting` wait; past that, QueueFull at once."""

    def __init__(self, *, name: str, max_active: int, max_waiting: int, metrics: Metrics) -> None:
        self.name = name
        self.max_active = max_active
        self.capacity = max_active + max_waiting
        self._active = asyncio.Semaphore(max_active)
        self._admitted = 0
        self._metrics = metrics
        metrics.queue_capacity.labels(name).set(self.capacity)

    @property
    def depth(self) -> int:
        return self._admitted

    def admit(self) -> Ticket:
        if self._admitted >= self.capacity:
            raise QueueFull(1)
        self._admitted += 1
        self._metrics.queue_depth.labels(self.name).set(self._admitted)
        return Ticket(self)

    def _leave(self, holds_slot: bool) -> None:
        if holds_slot:
            self._active.release()
        self._admitted -= 1
        self._metrics.queue_depth.labels(self.name).set(self._admitted)


class Ticket:
    """One admitted request: wait for a run slot with `acquire`, give everything back with `release`."""

    def __init__(self, gate: AdmissionGate) -> None:
        self._gate = gate
        self._holds_slot = False
        self._released = False

    async def acquire(self) -> None:
        await self._gate._active.acquire()
        self._holds_slot = True

    def release(self) -> None:
        if not self._released:
            self._released = True
            self._gate._leave(self._holds_slot)
