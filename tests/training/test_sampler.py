"""The distributed sampler: disjoint per-rank shares, epochs from the seed, resumable position."""

from __future__ import annotations

import pytest

from training.sampler import DistributedBatchSampler


def samplers(world_size: int = 2, **kwargs: int) -> list[DistributedBatchSampler]:
    options = {"num_items": 20, "batch_size": 3, "seed": 7} | kwargs
    return [DistributedBatchSampler(world_size=world_size, rank=r, **options) for r in range(world_size)]


def test_ranks_share_each_global_batch_without_overlap() -> None:
    rank0, rank1 = samplers()

    first, second = rank0.next_batch(), rank1.next_batch()

    assert len(first) == len(second) == 3
    assert not set(first) & set(second)


def test_an_epoch_covers_every_full_global_batch_once_and_drops_the_tail() -> None:
    rank0, rank1 = samplers()
    seen = [i for _ in range(rank0.batches_per_epoch) for s in (rank0, rank1) for i in s.next_batch()]

    assert rank0.batches_per_epoch == 3
    assert len(seen) == len(set(seen)) == 18


def test_each_epoch_is_a_new_order_fixed_by_the_seed() -> None:
    (sampler,) = samplers(world_size=1)
    (again,) = samplers(world_size=1)
    per_epoch = sampler.batches_per_epoch

    epoch0 = [sampler.next_batch() for _ in range(per_epoch)]
    epoch1 = [sampler.next_batch() for _ in range(per_epoch)]

    assert sampler.epoch == 1
    assert epoch0 != epoch1
    assert [again.next_batch() for _ in range(2 * per_epoch)] == epoch0 + epoch1


def test_restored_position_replays_the_same_batches() -> None:
    (uninterrupted,) = samplers(world_size=1, num_items=10, batch_size=3)
    expected = [uninterrupted.next_batch() for _ in range(8)]
    (before_crash,) = samplers(world_size=1, num_items=10, batch_size=3)
    for _ in range(4):
        before_crash.next_batch()
    state = before_crash.state_dict()

    (resumed,) = samplers(world_size=1, num_items=10, batch_size=3)
    resumed.load_state_dict(state)

    assert [resumed.next_batch() for _ in range(4)] == expected[4:]


def test_restoring_into_a_different_layout_is_refused() -> None:
    (sampler,) = samplers(world_size=1)
    state = sampler.state_dict() | {"batch_size": 4}

    with pytest.raises(ValueError, match="batch_size=4"):
        sampler.load_state_dict(state)


def test_too_few_items_for_one_global_batch_is_an_error() -> None:
    with pytest.raises(ValueError, match="cannot fill one global batch"):
        samplers(num_items=5)
