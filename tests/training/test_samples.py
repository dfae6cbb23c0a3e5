"""Counting the samples a run trained on across restarts (training.samples, no torch)."""

from __future__ import annotations

from pathlib import Path

import pytest

from training.samples import count_against, lineage, read_rows, record_step, repeats_within_epochs


def record(path: Path, attempt: str, step: int, shares: dict[int, dict[int, list[int]]]) -> None:
    for rank, micro_batches in shares.items():
        record_step(
            path, attempt=attempt, step=step, rank=rank, world_size=len(shares), micro_batches=micro_batches
        )


def test_the_last_attempt_that_ran_a_step_is_the_one_that_counts(tmp_path: Path) -> None:
    path = tmp_path / "samples.jsonl"
    record(path, "a", 1, {0: {0: [1, 2]}, 1: {1: [3, 4]}})
    record(path, "a", 2, {0: {0: [9, 9]}})  # rank 1 died in step 2; it is done again below
    record(path, "b", 2, {0: {0: [5, 6], 1: [7, 8]}})

    steps = lineage(read_rows(path))

    assert steps == {1: {0: [1, 2], 1: [3, 4]}, 2: {0: [5, 6], 1: [7, 8]}}


def test_a_micro_batch_computed_twice_in_one_attempt_is_an_error(tmp_path: Path) -> None:
    path = tmp_path / "samples.jsonl"
    record(path, "a", 1, {0: {0: [1, 2]}, 1: {0: [1, 2]}})

    with pytest.raises(ValueError, match="micro-batch 0 was computed twice"):
        lineage(read_rows(path))


def test_skipped_and_repeated_samples_are_counted_step_by_step() -> None:
    expected = {1: {0: [1, 2]}, 2: {0: [3, 4]}}
    seen = {1: {0: [1, 2]}, 2: {0: [3, 3]}}

    assert count_against(seen, expected) == {
        "samples_skipped": 1,
        "samples_repeated": 1,
        "samples_trained": 4,
    }
    assert count_against(expected, expected)["samples_skipped"] == 0


def test_repeats_within_an_epoch_are_counted() -> None:
    seen = {1: {0: [1, 2]}, 2: {0: [2, 3]}, 3: {0: [1, 2]}}

    assert repeats_within_epochs(seen, steps_per_epoch=2) == 1
    assert repeats_within_epochs(seen, steps_per_epoch=1) == 0
