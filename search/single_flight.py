"""Single-flight: everyone asking the same question at once is served by one retrieval and one generation.

The first asker of a key (`search.answer_cache.answer_key`) takes a lease in Redis, renewed every third of
its length (at most each second), and publishes every event of the answer to a Redis stream named by the
lease; askers in other web processes
follow that stream, and askers in the same process read the same in-memory list. A leader that dies stops
renewing; once its lease lapses a follower takes over and answers again, passing on only what its askers
have not seen yet. When nobody follows any more (here or in another process) the answer is cancelled, and
with it the model's work.

Every buffer is bounded: an answer keeps at most `RAGSITE_ANSWER_MAX_EVENTS` events (tokens past that are
dropped: the final answer holds the whole text), its Redis stream as many plus its end, and a process
follows at most `RAGSITE_ANSWER_MAX_FLIGHTS` answers at once (`flight_join` returns None past that).
"""

from __future__ import annotations

import asyncio
import json
import logging
import time
import uuid
import weakref
from collections.abc import AsyncGenerator, Callable, Sequence
from contextlib import aclosing, suppress
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from django.conf import settings
from redis.exceptions import RedisError

from search.answer_cache import answer_cache_get, answer_cache_set, cache_key, event_as_dict, event_from_dict
from search.answer_redis import KEY_PREFIX, answer_redis, answer_redis_sync
from search.embedding_cache import question_embeddings_cached
from search.model_queue import answer_askers
from search.retrieval_gate import retrieval_bounded
from search.services import AnswerEvent

logger = logging.getLogger(__name__)

StartAnswer = Callable[[], AsyncGenerator[AnswerEvent, None]]

WATCH_INTERVAL_S = 1.0
# A follower counts as watching for this long after it last said so (it says so every WATCH_INTERVAL_S).
WATCHER_TTL_MS = 5000
# A finished answer's events stay readable this long for followers still catching up.
STREAM_GRACE_S = 60
READ_BLOCK_MS = 200
READ_COUNT = 256

# Renew the leases we hold, many in one command (KEYS the leases, ARGV their epochs, then the length); one
# that lapsed while nobody took it (a stalled process) is ours again. Returns the (1-based) positions of the
# leases another holder has taken.
_RENEW_MANY = """
local lost = {}
for i, key in ipairs(KEYS) do
  local holder = redis.call('GET', key)
  if holder == ARGV[i] then redis.call('PEXPIRE', key, ARGV[#ARGV])
  elseif not holder then redis.call('SET', key, ARGV[i], 'PX', ARGV[#ARGV])
  else table.insert(lost, i) end
end
return lost
"""
# Leases renewed per command: a few thousand GETs keep Redis busy for about a millisecond.
RENEW_BATCH = 1000
_RELEASE = """
if redis.call('GET', KEYS[1]) == ARGV[1] then return redis.call('DEL', KEYS[1]) end
return 0
"""
INTERRUPTED = AnswerEvent(kind="error", text="Something went wrong while answering. Please ask again.")


def _setting(name: str, default: Any) -> Any:
    return getattr(settings, name, default)


def _renew_interval_s() -> float:
    """A third of the lease: two renewals may fail (a busy Redis, a busy process) before it lapses."""
    return max(WATCH_INTERVAL_S, float(_setting("RAGSITE_ANSWER_LEASE_S", 15.0)) / 3)


def _lease_key(key: str) -> str:
    return f"{KEY_PREFIX}lease:{key}"


def _events_key(key: str, epoch: str) -> str:
    return f"{KEY_PREFIX}events:{key}:{epoch}"


def _watchers_key(key: str) -> str:
    return f"{KEY_PREFIX}watchers:{key}"


def _text(value: bytes | str) -> str:
    return value.decode() if isinstance(value, bytes) else value


def _now_ms() -> int:
    return int(time.time() * 1000)


class Flight:
    """The events of one answer so far, read by every asker of it in this process.

    A new run (a follower taking over from a dead leader) starts the answer again: its "sources" and
    "extract" and the tokens already passed on are not passed on twice.
    """

    def __init__(self, key: str, *, max_events: int) -> None:
        self.key = key
        self.max_events = max_events
        self.events: list[AnswerEvent] = []
        self.finished = False
        self.subscribers = 0
        self.epoch = ""
        # Set by the hub's renewer when another holder took the lease of the run this process leads.
        self.lease_lost = False
        self.reused_at: datetime | None = None
        self._once: set[str] = set()
        self._tokens = 0
        self._run_tokens = 0
        self._changed = asyncio.Event()

    def new_run(self) -> None:
        self._run_tokens = 0

    def admit(self, event: AnswerEvent) -> bool:
        """Whether `event` is news to this flight's askers (and fits its bound)."""
        if self.finished:
            return False
        if event.kind in ("sources", "extract"):
            if event.kind in self._once:
                return False
            self._once.add(event.kind)
        elif event.kind == "token":
            self._run_tokens += 1
            if self._run_tokens <= self._tokens:
                return False
            self._tokens += 1
        return event.kind in ("done", "error") or len(self.events) < self.max_events

    def append(self, event: AnswerEvent) -> None:
        self.events.append(event)
        if event.kind in ("done", "error"):
            self.finished = True
        self._changed.set()
        self._changed = asyncio.Event()

    def waiter(self) -> asyncio.Event:
        return self._changed


@dataclass
class _Follow:
    """A flight whose answer another process writes: its Redis stream and how far it has been read."""

    flight: Flight
    stream: str
    outcome: asyncio.Future[str]
    last_id: str = "0-0"


@dataclass
class _Hub:
    """The flights of one event loop (one web process), and the one task reading the streams it follows."""

    id: str = field(default_factory=lambda: uuid.uuid4().hex)
    flights: dict[str, Flight] = field(default_factory=dict)
    followed: dict[str, _Follow] = field(default_factory=dict)
    reader: asyncio.Task[None] | None = None
    wake: asyncio.Event = field(default_factory=asyncio.Event)
    # The answers this process leads, with the epoch of their lease, renewed together by one task: with
    # thousands of answers waiting for retrieval, one renewal each every few seconds took the Redis pool's
    # every connection (issue 16's --unique bench), and a command waiting for a connection then failed.
    leading: dict[str, tuple[Flight, str]] = field(default_factory=dict)
    renewer: asyncio.Task[None] | None = None

    async def join(self, key: str, start: StartAnswer) -> tuple[Flight, bool] | None:
        """The flight of `key` and whether it was already under way (here or elsewhere); None when full."""
        flight = self.flights.get(key)
        if flight is not None and not flight.finished:
            flight.subscribers += 1
            return flight, True
        if len(self.flights) >= int(_setting("RAGSITE_ANSWER_MAX_FLIGHTS", 2048)):
            return None
        flight = Flight(key, max_events=int(_setting("RAGSITE_ANSWER_MAX_EVENTS", 1024)))
        flight.subscribers = 1
        self.flights[key] = flight
        try:
            leading = await self._take_lease(flight)
        except BaseException:
            self._forget(flight)
            raise
        asyncio.create_task(self._drive(flight, start, leading=leading))
        return flight, not leading

    def leave(self, flight: Flight) -> None:
        flight.subscribers -= 1
        if flight.subscribers > 0:
            return
        follow = self.followed.get(flight.key)
        if follow is not None and follow.flight is flight and not follow.outcome.done():
            follow.outcome.set_result("left")

    def _forget(self, flight: Flight) -> None:
        if self.flights.get(flight.key) is flight:
            del self.flights[flight.key]

    async def _take_lease(self, flight: Flight) -> bool:
        """Lead (True) or follow the leader whose lease is there (False); `flight.epoch` names the run."""
        redis = answer_redis()
        lease_ms = int(float(_setting("RAGSITE_ANSWER_LEASE_S", 15.0)) * 1000)
        for _attempt in range(5):
            epoch = uuid.uuid4().hex
            if await redis.set(_lease_key(flight.key), epoch, nx=True, px=lease_ms):
                flight.epoch = epoch
                return True
            current = await redis.get(_lease_key(flight.key))
            if current is not None:
                flight.epoch = _text(current)
                return False
        raise RedisError("the answer's lease changed hands five times in a row")

    async def _drive(self, flight: Flight, start: StartAnswer, *, leading: bool) -> None:
        try:
            while True:
                if leading:
                    await self._lead(flight, start)
                else:
                    await self._follow(flight)
                if flight.finished or flight.subscribers <= 0:
                    break
                # The leader died or gave up while someone here still waits: take over, or follow a new one.
                leading = await self._take_lease(flight)
        except Exception:
            logger.exception("the shared answer %s failed", flight.key[:12])
        finally:
            self._forget(flight)
            if not flight.finished:
                flight.append(INTERRUPTED)

    # The leader ----------------------------------------------------------------------------------------

    async def _lead(self, flight: Flight, start: StartAnswer) -> None:
        epoch = flight.epoch
        flight.lease_lost = False
        self.leading[flight.key] = (flight, epoch)
        if self.renewer is None or self.renewer.done():
            self.renewer = asyncio.create_task(self._renew_all())
        produce = asyncio.create_task(self._produce(flight, start, epoch))
        try:
            while True:
                done, _ = await asyncio.wait({produce}, timeout=WATCH_INTERVAL_S)
                if done:
                    # Again: a renewal racing the end of the answer may have taken the lease back.
                    await self._release(flight.key, epoch)
                    produce.result()
                    return
                if flight.lease_lost and not produce.done():
                    logger.warning("the lease of answer %s was taken over", flight.key[:12])
                    return
                if flight.subscribers <= 0 and not await self._watched_elsewhere(flight.key):
                    await self._abandon(flight.key, epoch)
                    return
        finally:
            if self.leading.get(flight.key, (None, ""))[0] is flight:
                del self.leading[flight.key]
            if not produce.done():
                produce.cancel()
                await asyncio.gather(produce, return_exceptions=True)

    async def _produce(self, flight: Flight, start: StartAnswer, epoch: str) -> None:
        """Run the answer (or replay one finished meanwhile), publishing each event before showing it here."""
        flight.new_run()
        stream = _events_key(flight.key, epoch)
        kept: list[AnswerEvent] = []
        published = 0
        try:
            cached = await answer_cache_get(flight.key)
        except RedisError as exc:
            logger.warning("the answer cache is unavailable, answering afresh: %s", exc)
            cached = None
        if cached is not None:
            flight.reused_at = cached.written_at
            source: AsyncGenerator[AnswerEvent, None] = _replay(cached.events)
        else:
            source = retrieval_bounded(start())
        # The model takes first the answers the most people here wait for (search.model_queue).
        answer_askers.set(lambda: flight.subscribers)
        with question_embeddings_cached():
            async with aclosing(source):
                async for event in source:
                    terminal = event.kind in ("done", "error")
                    if event.kind != "token":
                        kept.append(event)
                    if terminal and cached is None:
                        stored = await answer_cache_set(flight.key, events=kept)
                        if stored is not None:
                            logger.debug("answer %s kept for reuse", flight.key[:12])
                    if terminal or published < flight.max_events:
                        published += 1
                        await self._publish(flight.key, stream, event, epoch=epoch, terminal=terminal)
                    if flight.admit(event):
                        flight.append(event)
                    if terminal:
                        return

    async def _publish(
        self, key: str, stream: str, event: AnswerEvent, *, epoch: str, terminal: bool
    ) -> None:
        try:
            pipe = answer_redis().pipeline(transaction=False)
            pipe.xadd(stream, {"e": json.dumps(event_as_dict(event))})
            if terminal:
                pipe.xadd(stream, {"end": "done"})
                pipe.expire(stream, STREAM_GRACE_S)
                pipe.eval(_RELEASE, 1, _lease_key(key), epoch)
            else:
                pipe.expire(stream, STREAM_GRACE_S + int(float(_setting("RAGSITE_ANSWER_LEASE_S", 15.0))))
            await pipe.execute()
        except RedisError as exc:
            # Followers elsewhere will take over when the lease lapses; askers here are served all the same.
            logger.warning("publishing answer %s failed: %s", key[:12], exc)

    async def _renew_all(self) -> None:
        """Every `_renew_interval_s`, renew the leases of the answers this process leads, while any."""
        while self.leading:
            await asyncio.sleep(_renew_interval_s())
            leases = list(self.leading.values())
            for first in range(0, len(leases), RENEW_BATCH):
                batch = leases[first : first + RENEW_BATCH]
                lost = await self._renew_leases([(flight.key, epoch) for flight, epoch in batch])
                for flight, epoch in batch:
                    if flight.key in lost and flight.epoch == epoch:
                        flight.lease_lost = True

    async def _renew_leases(self, leases: Sequence[tuple[str, str]]) -> set[str]:
        """Renew (key, epoch) leases in one command; the keys whose lease another holder has taken."""
        lease_ms = int(float(_setting("RAGSITE_ANSWER_LEASE_S", 15.0)) * 1000)
        try:
            lost: Any = await answer_redis().eval(
                _RENEW_MANY,
                len(leases),
                *[_lease_key(key) for key, _ in leases],
                *[epoch for _, epoch in leases],
                lease_ms,
            )
        except RedisError as exc:
            # Two more tries before the leases lapse (a third of their length each).
            logger.warning("renewing %d leases of answers failed: %s", len(leases), exc)
            return set()
        return {leases[int(position) - 1][0] for position in lost}

    async def _release(self, key: str, epoch: str) -> None:
        try:
            await answer_redis().eval(_RELEASE, 1, _lease_key(key), epoch)
        except RedisError as exc:
            logger.warning("releasing the lease of answer %s failed: %s", key[:12], exc)

    async def _watched_elsewhere(self, key: str) -> bool:
        try:
            return bool(await answer_redis().zcount(_watchers_key(key), _now_ms(), "+inf"))
        except RedisError:
            return False

    async def _abandon(self, key: str, epoch: str) -> None:
        """Nobody follows this answer any more: stop it, and let the next asker start afresh."""
        try:
            pipe = answer_redis().pipeline(transaction=False)
            stream = _events_key(key, epoch)
            pipe.xadd(stream, {"end": "abandoned"})
            pipe.expire(stream, STREAM_GRACE_S)
            pipe.eval(_RELEASE, 1, _lease_key(key), epoch)
            await pipe.execute()
        except RedisError as exc:
            logger.warning("abandoning answer %s failed: %s", key[:12], exc)

    # A follower of another process's answer ------------------------------------------------------------

    async def _follow(self, flight: Flight) -> None:
        flight.new_run()
        follow = _Follow(
            flight=flight,
            stream=_events_key(flight.key, flight.epoch),
            outcome=asyncio.get_running_loop().create_future(),
        )
        self.followed[flight.key] = follow
        try:
            await self._say_watching([follow])
            if self.reader is None or self.reader.done():
                self.reader = asyncio.create_task(self._read())
            self.wake.set()
            await follow.outcome
        finally:
            if self.followed.get(flight.key) is follow:
                del self.followed[flight.key]
            with suppress(RedisError):
                await answer_redis().zrem(_watchers_key(flight.key), self.id)

    async def _say_watching(self, follows: Sequence[_Follow]) -> None:
        pipe = answer_redis().pipeline(transaction=False)
        until = _now_ms() + WATCHER_TTL_MS
        for follow in follows:
            watchers = _watchers_key(follow.flight.key)
            pipe.zadd(watchers, {self.id: until})
            pipe.zremrangebyscore(watchers, "-inf", _now_ms())
            pipe.pexpire(watchers, WATCHER_TTL_MS * 2)
        await pipe.execute()

    async def _read(self) -> None:
        """One blocking read over every followed stream at once; each second, their leases and watchers."""
        redis = answer_redis()
        checked = time.monotonic()
        while True:
            if not self.followed:
                self.wake.clear()
                await self.wake.wait()
                continue
            follows = {follow.stream: follow for follow in self.followed.values()}
            quiet = set(follows)
            try:
                reply: Any = await redis.xread(
                    {stream: follow.last_id for stream, follow in follows.items()},
                    count=READ_COUNT,
                    block=READ_BLOCK_MS,
                )
                for name, entries in reply or []:
                    follow = follows[_text(name)]
                    quiet.discard(follow.stream)
                    self._deliver(follow, entries)
                if time.monotonic() - checked >= WATCH_INTERVAL_S:
                    checked = time.monotonic()
                    await self._check_leaders([follows[stream] for stream in quiet], list(follows.values()))
            except RedisError as exc:
                logger.warning("reading shared answers failed: %s", exc)
                await asyncio.sleep(WATCH_INTERVAL_S)

    def _deliver(self, follow: _Follow, entries: Sequence[tuple[Any, dict[bytes, bytes]]]) -> None:
        for entry_id, fields in entries:
            follow.last_id = _text(entry_id)
            if follow.outcome.done():
                return
            if b"end" in fields:
                follow.outcome.set_result(fields[b"end"].decode())
                return
            event = event_from_dict(json.loads(fields[b"e"]))
            if follow.flight.admit(event):
                follow.flight.append(event)
            if follow.flight.finished:
                follow.outcome.set_result("done")
                return

    async def _check_leaders(self, quiet: Sequence[_Follow], follows: Sequence[_Follow]) -> None:
        """Say we still watch; a stream gone quiet whose lease has lapsed or changed hands is lost."""
        await self._say_watching(follows)
        if not quiet:
            return
        leases = await answer_redis().mget([_lease_key(follow.flight.key) for follow in quiet])
        for follow, lease in zip(quiet, leases, strict=True):
            if follow.outcome.done():
                continue
            if lease is None or _text(lease) != follow.flight.epoch:
                follow.outcome.set_result("lost")


async def _replay(events: Sequence[AnswerEvent]) -> AsyncGenerator[AnswerEvent, None]:
    for event in events:
        yield event


_hubs: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, _Hub] = weakref.WeakKeyDictionary()


def _hub() -> _Hub:
    loop = asyncio.get_running_loop()
    hub = _hubs.get(loop)
    if hub is None:
        hub = _Hub()
        _hubs[loop] = hub
    return hub


async def flight_join(key: str, start: StartAnswer) -> tuple[Flight, bool] | None:
    """The answer in progress for `key` (started with `start` if there is none) and whether it already was.

    Read its `events` until it is `finished` (`waiter()` wakes on each new one), then call `flight_leave`.
    None when this process follows as many answers as it may.
    """
    return await _hub().join(key, start)


def flight_leave(flight: Flight) -> None:
    _hub().leave(flight)


def answer_kept_or_in_flight_blocking(key: str) -> bool:
    """Whether an answer for `key` is kept, or being written now in any process (its lease is held); from a
    view. One EXISTS of both keys: the kept answer itself is read, and parsed, only by whoever replays it."""
    return bool(answer_redis_sync().exists(cache_key(key), _lease_key(key)))
