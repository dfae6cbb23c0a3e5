"""How often to checkpoint, from measured costs (CheckFreq, FAST '21)."""

from __future__ import annotations

import math


def checkfreq_interval(
    *, step_s: float, snapshot_s: float, interference_s: float, persist_s: float, target: float
) -> int:
    """Steps between checkpoints that keep the cost under ``target`` (0.035 = 3.5 %) of training.

    A checkpoint costs the training thread its snapshot plus whatever the background persist slows
    the steps it overlaps; spread over k steps that must stay under ``target``. The next snapshot
    must also not wait for the last persist, so k steps must outlast one persist.
    """
    cost = snapshot_s + max(interference_s, 0.0)
    by_overhead = math.ceil(cost / (target * step_s))
    by_persist = math.ceil(persist_s / step_s) + 1
    return max(1, by_overhead, by_persist)
