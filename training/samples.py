"""Which samples each step trained on, across restarts: the record and the count (stdlib only).

With ``--record-samples`` every rank appends one line per step to ``samples.jsonl``: the attempt,
the step, and the pair indices of each micro-batch it computed. A crashed attempt's steps after the
checkpoint it resumed from are done again by the next attempt, so the steps that made the final
weights are, for each step, the records of the last attempt that ran it (the *lineage*).
"""

from __future__ import annotations

import json
import os
from collections import Counter
from pathlib import Path
from typing import Any

# step -> micro-batch index -> pair indices
Lineage = dict[int, dict[int, list[int]]]


def record_step(
    path: Path, *, attempt: str, step: int, rank: int, world_size: int, micro_batches: dict[int, list[int]]
) -> None:
    """Append one rank's share of one step (a single write, so lines of several ranks never mix)."""
    row = {
        "attempt": attempt,
        "step": step,
        "rank": rank,
        "world_size": world_size,
        "micro_batches": micro_batches,
    }
    fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
    try:
        os.write(fd, (json.dumps(row) + "\n").encode())
    finally:
        os.close(fd)


def read_rows(path: Path) -> list[dict[str, Any]]:
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


def lineage(rows: list[dict[str, Any]]) -> Lineage:
    """Each step's micro-batches as the last attempt that ran the step computed them.

    Raises ValueError if that attempt computed a micro-batch twice (two ranks, or one twice).
    """
    last_attempt: dict[int, str] = {}
    for row in rows:
        last_attempt[row["step"]] = row["attempt"]
    steps: Lineage = {}
    for row in rows:
        if row["attempt"] != last_attempt[row["step"]]:
            continue
        batches = steps.setdefault(row["step"], {})
        for index, pairs in row["micro_batches"].items():
            if int(index) in batches:
                raise ValueError(f"step {row['step']}: micro-batch {index} was computed twice")
            batches[int(index)] = list(pairs)
    return steps


def count_against(seen: Lineage, expected: Lineage) -> dict[str, int]:
    """Samples the expected run trained on that ``seen`` did not (skipped), and extra ones (repeated).

    Compared step by step as multisets, so a sample moved to another step counts as both.
    """
    skipped = repeated = 0
    for step in sorted(set(seen) | set(expected)):
        got = Counter(i for pairs in seen.get(step, {}).values() for i in pairs)
        want = Counter(i for pairs in expected.get(step, {}).values() for i in pairs)
        skipped += sum((want - got).values())
        repeated += sum((got - want).values())
    return {
        "samples_skipped": skipped,
        "samples_repeated": repeated,
        "samples_trained": sum(len(pairs) for batches in seen.values() for pairs in batches.values()),
    }


def repeats_within_epochs(seen: Lineage, steps_per_epoch: int) -> int:
    """How many times any sample came back within one epoch (0 when each is seen once)."""
    repeats = 0
    epochs: dict[int, Counter[int]] = {}
    for step, batches in seen.items():
        counter = epochs.setdefault((step - 1) // steps_per_epoch, Counter())
        counter.update(i for pairs in batches.values() for i in pairs)
    for counter in epochs.values():
        repeats += sum(n - 1 for n in counter.values() if n > 1)
    return repeats
