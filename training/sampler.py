"""A deterministic distributed batch sampler whose position is part of the checkpoint."""

from __future__ import annotations

import random
from dataclasses import dataclass
from typing import Any


@dataclass
class DistributedBatchSampler:
    """Hands each rank its slice of the same shuffled global batch, in a fixed order.

    Every epoch is a permutation drawn from ``(seed, epoch)`` alone, never from the global RNGs, so
    the order depends on nothing a crash can lose. The position (epoch, batches taken) is the whole
    state: restoring it replays exactly the batches an uninterrupted run would have seen. The tail
    that does not fill a global batch is dropped, so every rank always gets the same batch size.
    """

    num_items: int
    batch_size: int
    world_size: int
    rank: int
    seed: int
    epoch: int = 0
    position: int = 0

    def __post_init__(self) -> None:
        if not 0 <= self.rank < self.world_size:
            raise ValueError(f"rank {self.rank} is outside a world of {self.world_size}")
        if self.batches_per_epoch == 0:
            raise ValueError(
                f"{self.num_items} pairs cannot fill one global batch of "
                f"{self.batch_size} x {self.world_size} ranks"
            )
        self._order: list[int] | None = None

    @property
    def global_batch_size(self) -> int:
        return self.batch_size * self.world_size

    @property
    def batches_per_epoch(self) -> int:
        return self.num_items // self.global_batch_size

    def epoch_order(self, epoch: int) -> list[int]:
        order = list(range(self.num_items))
        random.Random(f"ragsite-sampler:{self.seed}:{epoch}").shuffle(order)
        return order

    def next_batch(self) -> list[int]:
        """The indices of this rank's share of the next global batch; advances the position."""
        if self.position >= self.batches_per_epoch:
            self.epoch += 1
            self.position = 0
            self._order = None
        if self._order is None:
            self._order = self.epoch_order(self.epoch)
        start = self.position * self.global_batch_size + self.rank * self.batch_size
        self.position += 1
        return self._order[start : start + self.batch_size]

    def state_dict(self) -> dict[str, Any]:
        return {
            "num_items": self.num_items,
            "batch_size": self.batch_size,
            "world_size": self.world_size,
            "seed": self.seed,
            "epoch": self.epoch,
            "position": self.position,
        }

    def load_state_dict(self, state: dict[str, Any]) -> None:
        for key in ("num_items", "batch_size", "world_size", "seed"):
            if state[key] != getattr(self, key):
                raise ValueError(
                    f"the checkpoint's sampler has {key}={state[key]!r} but this run has "
                    f"{getattr(self, key)!r}; resuming would not replay the same batches"
                )
        self.epoch = int(state["epoch"])
        self.position = int(state["position"])
        self._order = None
