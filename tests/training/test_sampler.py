"""The global sampler: the same micro-batches at any world size, epochs from the seed, a sample count."""

from __future__ import annotations

import pytest

from training.sampler import GlobalBatchSampler, micro_batch_share


def sampler(**kwargs: int) -> GlobalBatchSampler:
    options = {"num_items": 20, "global_batch_size": 6, "micro_batch_size": 2, "seed": 7} | kwargs
    return GlobalBatchSampler(**options)


def test_a_step_is_the_next_global_batch_cut_into_micro_batches() -> None:
    s = sampler()

    micro_batches = s.next_global_batch()

    assert [len(m) for m in micro_batches] == [2, 2, 2]
    assert [i for m in micro_batches for i in m] == s.epoch_order(0)[:6]
    assert s.samples_consumed == 6


def test_an_epoch_covers_every_full_global_batch_once_and_drops_the_tail() -> None:
    s = sampler()
    seen = [i for _ in range(s.batches_per_epoch) for m in s.next_global_batch() for i in m]

    assert s.batches_per_epoch == 3
    assert len(seen) == len(set(seen)) == 18
    assert s.epoch == 1


def test_each_epoch_is_a_new_order_fixed_by_the_seed() -> None:
    s, again = sampler(), sampler()
    epoch0 = [s.next_global_batch() for _ in range(s.batches_per_epoch)]
    epoch1 = [s.next_global_batch() for _ in range(s.batches_per_epoch)]

    assert epoch0 != epoch1
    assert [again.next_global_batch() for _ in range(2 * s.batches_per_epoch)] == epoch0 + epoch1


def test_restored_sample_count_replays_the_same_batches() -> None:
    uninterrupted = sampler()
    expected = [uninterrupted.next_global_batch() for _ in range(8)]
    before_crash = sampler()
    for _ in range(4):
        before_crash.next_global_batch()

    resumed = sampler()
    resumed.load_state_dict(before_crash.state_dict())

    assert resumed.samples_consumed == 24
    assert [resumed.next_global_batch() for _ in range(4)] == expected[4:]


@pytest.mark.parametrize("world_size", [1, 2, 3, 4, 5, 7])
def test_shares_cover_the_micro_batches_in_order_once_at_any_world_size(world_size: int) -> None:
    shares = [micro_batch_share(6, rank, world_size) for rank in range(world_size)]

    assert [j for share in shares for j in share] == list(range(6))
    assert max(map(len, shares)) - min(map(len, shares)) <= 1


def test_restoring_into_a_different_layout_is_refused() -> None:
    state = sampler().state_dict() | {"global_batch_size": 8}

    with pytest.raises(ValueError, match="global_batch_size=8"):
        sampler().load_state_dict(state)


def test_a_count_between_global_batches_is_refused() -> None:
    state = sampler().state_dict() | {"samples_consumed": 7}

    with pytest.raises(ValueError, match="not a whole number of global batches"):
        sampler().load_state_dict(state)


def test_the_global_batch_must_be_whole_micro_batches() -> None:
    with pytest.raises(ValueError, match="whole number of micro-batches"):
        sampler(global_batch_size=5)


def test_too_few_items_for_one_global_batch_is_an_error() -> None:
    with pytest.raises(ValueError, match="cannot fill one global batch"):
        sampler(num_items=5)
