"""The few collective operations the training loop needs, as no-ops in a single process.

A run is distributed when it was launched by torchrun (environment WORLD_SIZE > 1); the process group
then uses gloo (the models train on CPU). Every function here must be called by all ranks together.
"""
from __future__ import annotations

import os
from typing import Any

import torch
import torch.distributed as dist

__all__ = ["init_distributed", "rank", "world_size", "gather_objects", "any_rank", "barrier"]


def init_distributed() -> tuple[int, int]:
    """Join the torchrun process group if this process was launched by torchrun (idempotent).

    Returns (rank, world_size); (0, 1) in a plain process. The group stays up until the process exits.
    """
    if int(os.environ.get("WORLD_SIZE", "1")) > 1 and not dist.is_initialized():
        if not dist.is_available():
            raise RuntimeError("WORLD_SIZE > 1 but this torch build has no torch.distributed; run one process")
        dist.init_process_group("gloo")
    return rank(), world_size()


def _active() -> bool:
    return dist.is_available() and dist.is_initialized()


def rank() -> int:
    """This process's rank (0 without a process group)."""
    return dist.get_rank() if _active() else 0


def world_size() -> int:
    """Number of processes in the run (1 without a process group)."""
    return dist.get_world_size() if _active() else 1


def gather_objects(obj: Any) -> list[Any]:
    """Every rank's `obj` (picklable), in rank order, on every rank."""
    if world_size() == 1:
        return [obj]
    out: list[Any] = [None] * world_size()
    dist.all_gather_object(out, obj)
    return out


def any_rank(flags: list[bool]) -> list[bool]:
    """Element-wise OR of `flags` over all ranks, so every rank takes the same decision."""
    if world_size() == 1:
        return list(flags)
    t = torch.tensor([int(f) for f in flags], dtype=torch.int64)
    dist.all_reduce(t, op=dist.ReduceOp.MAX)
    return [bool(v) for v in t.tolist()]


def barrier() -> None:
    """Wait until every rank gets here."""
    if world_size() > 1:
        dist.barrier()
