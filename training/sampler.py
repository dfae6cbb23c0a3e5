"""The data order: one global permutation per epoch, cut into fixed micro-batches, at any world size.

Nothing here depends on how many ranks there are. Each step takes the next ``global_batch_size``
samples of the epoch's permutation and cuts them into micro-batches of ``micro_batch_size``; the
ranks split those micro-batches between them (``micro_batch_share``), so a step trains on the same
samples, grouped the same way, whether 3 ranks or 2 run it. The position is the count of samples
consumed, which a checkpoint taken at one world size hands to a run at another.
"""

from __future__ import annotations

import random
from dataclasses import dataclass
from typing import Any


def micro_batch_share(count: int, rank: int, world_size: int) -> range:
    """Which of a step's ``count`` micro-batches this rank computes: a contiguous run, in order.

    The first ``count % world_size`` ranks take one more; a rank may take none when there are more
    ranks than micro-batches.
    """
    if not 0 <= rank < world_size:
        raise ValueError(f"rank {rank} is outside a world of {world_size}")
    base, extra = divmod(count, world_size)
    start = rank * base + min(rank, extra)
    return range(start, start + base + (1 if rank < extra else 0))


@dataclass
class GlobalBatchSampler:
    """Global batches of micro-batches from ``(seed, epoch)`` alone; the state is a sample count.

    Every epoch is a permutation drawn from ``(seed, epoch)``, never from the global RNGs, so the
    order depends on nothing a crash can lose. The tail of an epoch that does not fill a global
    batch is dropped, so every step has the same micro-batches.
    """

    num_items: int
    global_batch_size: int
    micro_batch_size: int
    seed: int
    samples_consumed: int = 0

    def __post_init__(self) -> None:
        if self.micro_batch_size < 1 or self.global_batch_size % self.micro_batch_size:
            raise ValueError(
                f"the global batch ({self.global_batch_size}) must be a whole number of "
                f"micro-batches of {self.micro_batch_size}"
            )
        if self.batches_per_epoch == 0:
            raise ValueError(
                f"{self.num_items} pairs cannot fill one global batch of {self.global_batch_size}"
            )
        self._order: tuple[int, list[int]] | None = None

    @property
    def micro_batches_per_step(self) -> int:
        return self.global_batch_size // self.micro_batch_size

    @property
    def batches_per_epoch(self) -> int:
        return self.num_items // self.global_batch_size

    @property
    def samples_per_epoch(self) -> int:
        return self.batches_per_epoch * self.global_batch_size

    @property
    def epoch(self) -> int:
        return self.samples_consumed // self.samples_per_epoch

    def epoch_order(self, epoch: int) -> list[int]:
        order = list(range(self.num_items))
        random.Random(f"ragsite-sampler:{self.seed}:{epoch}").shuffle(order)
        return order

    def next_global_batch(self) -> list[list[int]]:
        """The next step's micro-batches (pair indices), in order; advances the sample count."""
        epoch, offset = divmod(self.samples_consumed, self.samples_per_epoch)
        if self._order is None or self._order[0] != epoch:
            self._order = (epoch, self.epoch_order(epoch))
        batch = self._order[1][offset : offset + self.global_batch_size]
        self.samples_consumed += self.global_batch_size
        size = self.micro_batch_size
        return [batch[start : start + size] for start in range(0, len(batch), size)]

    def state_dict(self) -> dict[str, Any]:
        return {
            "num_items": self.num_items,
            "global_batch_size": self.global_batch_size,
            "micro_batch_size": self.micro_batch_size,
            "seed": self.seed,
            "samples_consumed": self.samples_consumed,
        }

    def load_state_dict(self, state: dict[str, Any]) -> None:
        for key in ("num_items", "global_batch_size", "micro_batch_size", "seed"):
            if state[key] != getattr(self, key):
                raise ValueError(
                    f"the checkpoint's sampler has {key}={state[key]!r} but this run has "
                    f"{getattr(self, key)!r}; resuming would not replay the same batches"
                )
        consumed = int(state["samples_consumed"])
        if consumed % self.global_batch_size:
            raise ValueError(f"{consumed} samples consumed is not a whole number of global batches")
        self.samples_consumed = consumed
        self._order = None
