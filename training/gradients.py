"""Gradients summed in micro-batch order, whichever rank computed each micro-batch.

An all-reduce adds the ranks' partial sums in an order the collective library picks, and that order
changes with the world size, so a run that shrinks from 3 ranks to 2 would drift from one that
did not by float rounding. Here the sum over a step's micro-batches is always ``((0 + g0) + g1) +
...`` left to right: rank r receives the running sum of the micro-batches before its share from
rank r - 1, adds its own in order and passes it on; the last rank broadcasts the total. Each
micro-batch's gradient is itself the same on any rank (same weights, inputs and dropout seed, one
deterministic thread), so the step is bitwise the same at any world size. The cost is a chain of
``world_size - 1`` sends of the gradient instead of one all-reduce.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable, Sequence

import torch
import torch.distributed as dist


def micro_batch_seed(seed: int, step: int, first_sample: int) -> int:
    """The RNG seed of the micro-batch that starts at ``first_sample`` (a position in the run)."""
    digest = hashlib.blake2b(f"ragsite-dropout:{seed}:{step}:{first_sample}".encode(), digest_size=8)
    return int.from_bytes(digest.digest(), "little") & (2**63 - 1)


def flat_gradient(params: Sequence[torch.nn.Parameter]) -> torch.Tensor:
    """Every parameter's gradient in one vector (zeros where a parameter got none)."""
    return torch.cat(
        [p.grad.reshape(-1) if p.grad is not None else torch.zeros_like(p).reshape(-1) for p in params]
    )


def set_flat_gradient(params: Sequence[torch.nn.Parameter], flat: torch.Tensor) -> None:
    offset = 0
    for p in params:
        p.grad = flat[offset : offset + p.numel()].view_as(p).clone()
        offset += p.numel()


def sum_in_micro_batch_order(
    local: Iterable[torch.Tensor], *, numel: int, rank: int, world_size: int, device: torch.device
) -> torch.Tensor:
    """The sum of every rank's vectors in global micro-batch order, on every rank.

    ``local`` holds this rank's vectors for its contiguous share of the micro-batches, in order
    (see ``training.sampler.micro_batch_share``); a rank with no share passes the sum on.
    """
    total = torch.zeros(numel, dtype=torch.float32, device=device)
    if rank > 0:
        dist.recv(total, src=rank - 1)
    for vector in local:
        total += vector
    if rank < world_size - 1:
        dist.send(total, dst=rank + 1)
    dist.broadcast(total, src=world_size - 1)
    return total
