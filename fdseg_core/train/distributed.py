"""torch.distributed helpers for runs launched with ``torchrun``."""

from __future__ import annotations

import os
from dataclasses import dataclass

import torch
import torch.distributed as dist

__all__ = [
    "DistInfo",
    "init_distributed",
    "cleanup",
    "all_reduce_max",
    "all_reduce_mean",
    "barrier",
]


@dataclass(frozen=True)
class DistInfo:
    """Where this process stands in the job."""

    rank: int = 0
    world_size: int = 1
    local_rank: int = 0

    @property
    def enabled(self) -> bool:
        return self.world_size > 1

    @property
    def is_main(self) -> bool:
        return self.rank == 0


def init_distributed(device: torch.device) -> DistInfo:
    """Join the process group that ``torchrun`` set up (``WORLD_SIZE`` > 1), else nothing.

    The backend is NCCL for CUDA devices and gloo otherwise.
    """
    world = int(os.environ.get("WORLD_SIZE", "1"))
    if world <= 1:
        return DistInfo()
    rank = int(os.environ["RANK"])
    local_rank = int(os.environ.get("LOCAL_RANK", "0"))
    if not dist.is_initialized():
        backend = "nccl" if device.type == "cuda" else "gloo"
        dist.init_process_group(backend=backend)
    return DistInfo(rank=rank, world_size=world, local_rank=local_rank)


def cleanup(info: DistInfo) -> None:
    if info.enabled and dist.is_initialized():
        dist.destroy_process_group()


def _all_reduce(t: torch.Tensor, info: DistInfo, op: dist.ReduceOp) -> torch.Tensor:
    """``t`` reduced over all processes by ``op`` (a copy; ``t`` itself alone)."""
    if not info.enabled:
        return t
    t = t.clone()
    dist.all_reduce(t, op=op)
    return t


def all_reduce_mean(t: torch.Tensor, info: DistInfo) -> torch.Tensor:
    """Mean of ``t`` over all processes (identity when not distributed)."""
    return _all_reduce(t, info, dist.ReduceOp.SUM) / info.world_size


def all_reduce_sum(t: torch.Tensor, info: DistInfo) -> torch.Tensor:
    """Sum of ``t`` over all processes (identity when not distributed)."""
    return _all_reduce(t, info, dist.ReduceOp.SUM)


def all_reduce_max(t: torch.Tensor, info: DistInfo) -> torch.Tensor:
    """The element-wise maximum over processes (a flag any rank raised)."""
    return _all_reduce(t, info, dist.ReduceOp.MAX)


def barrier(info: DistInfo) -> None:
    if info.enabled:
        dist.barrier()
