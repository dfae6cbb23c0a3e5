"""The hang watchdog's verdicts, on a fake clock and an in-memory store (no threads, no torch)."""

from __future__ import annotations

from training.watchdog import Watchdog


class MemoryStore:
    def __init__(self) -> None:
        self.values: dict[str, int | str] = {}

    def add(self, key: str, value: int, /) -> int:
        self.values[key] = int(self.values.get(key, 0)) + value
        return int(self.values[key])

    def set(self, key: str, value: str, /) -> None:
        self.values[key] = value

    def get(self, key: str, /) -> bytes:
        return str(self.values[key]).encode()

    def check(self, keys: list[str], /) -> bool:
        return all(key in self.values for key in keys)


class Clock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def watchdogs(world_size: int = 3, timeout_s: float = 10.0) -> tuple[list[Watchdog], Clock]:
    store, clock = MemoryStore(), Clock()
    dogs = [
        Watchdog(store=store, rank=r, world_size=world_size, timeout_s=timeout_s, clock=clock)
        for r in range(world_size)
    ]
    return dogs, clock


def run_for(dogs: list[Watchdog], clock: Clock, seconds: float, *, beating: list[int]) -> None:
    for _ in range(int(seconds)):
        clock.now += 1
        for rank in beating:
            dogs[rank].beat_once()


def test_ranks_that_keep_beating_are_left_alone() -> None:
    dogs, clock = watchdogs()

    run_for(dogs, clock, 60, beating=[0, 1, 2])

    assert [d.verdict() for d in dogs] == [None, None, None]


def test_a_frozen_rank_is_named_by_its_peers_after_the_timeout() -> None:
    dogs, clock = watchdogs()
    run_for(dogs, clock, 5, beating=[0, 1, 2])

    run_for(dogs, clock, 10, beating=[0, 2])
    assert dogs[0].verdict() is None
    run_for(dogs, clock, 2, beating=[0, 2])  # one beat interval to notice, as in the threads

    verdict = dogs[0].verdict()
    assert verdict is not None
    reason, details = verdict
    assert details["peer"] == 1 and 10 < details["silent_s"] <= 12
    assert reason.startswith("rank 1 sent no heartbeat for 11.0 s (stopped, hung or gone)")
    assert dogs[2].verdict() is not None


def test_a_store_that_stops_answering_is_a_hang_and_not_blamed_on_the_peers() -> None:
    dogs, clock = watchdogs()
    run_for(dogs, clock, 5, beating=[0, 1, 2])
    dogs[1].store_host_rank = 0

    run_for(dogs, clock, 11, beating=[])  # nobody's store calls return

    verdict = dogs[1].verdict()
    assert verdict is not None
    reason, details = verdict
    assert reason.startswith("the heartbeat store (rank 0) has not answered for 11.0 s")
    assert details["peer"] == 0


def test_an_armed_rank_without_progress_aborts_itself() -> None:
    dogs, clock = watchdogs()
    dogs[2].arm()

    run_for(dogs, clock, 15, beating=[0, 1, 2])
    assert dogs[2].verdict() is None, "a peer's silence would be named first"
    run_for(dogs, clock, 1, beating=[0, 1, 2])

    verdict = dogs[2].verdict()
    assert verdict is not None and verdict[0].startswith("rank 2 made no progress for 16.0 s")
    assert dogs[0].verdict() is None, "an unarmed rank judges only its peers"


def test_a_rank_that_finished_is_not_a_hang() -> None:
    dogs, clock = watchdogs()
    run_for(dogs, clock, 2, beating=[0, 1, 2])

    dogs[1].close()
    run_for(dogs, clock, 30, beating=[0, 2])

    assert dogs[0].verdict() is None
