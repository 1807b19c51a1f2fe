"""torch.distributed helpers for runs launched with ``torchrun``, and :func:`launch`, which
starts such a run through torchrun's own launcher (``torch.distributed.run``)."""

from __future__ import annotations

import logging
import os
from collections.abc import Sequence
from dataclasses import dataclass

import torch
import torch.distributed as dist

from fdseg_core.errors import InputError

__all__ = [
    "DistInfo",
    "LaunchResult",
    "launch",
    "under_torchrun",
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


#: The loggers of torchrun's agent: its per-rank failure lines and its warnings.
_AGENT_LOGGERS = ("torch.distributed.elastic", "torch.distributed.run")


@dataclass(frozen=True)
class LaunchResult:
    """How a :func:`launch` ended: ``exit_code`` 0, the first failed rank's exit code, or
    ``128 + signal`` when the launcher itself was signalled; ``rank`` of that failure."""

    exit_code: int
    rank: int | None = None


def under_torchrun() -> bool:
    """Whether this process is a rank that torchrun (or another launcher) started."""
    return "LOCAL_RANK" in os.environ or "TORCHELASTIC_RUN_ID" in os.environ


def launch(argv: Sequence[str], nproc: int, *, quiet: bool = True) -> LaunchResult:
    """Run ``python -m fdseg_cli ARGV`` on ``nproc`` local processes with torchrun's own
    launcher (``torch.distributed.run``, ``--standalone``), as ``torchrun
    --nproc-per-node NPROC -m fdseg_cli ARGV`` would.

    The difference is what a failure prints: torchrun ends with a traceback of its own
    ``ChildFailedError`` whenever a rank exits non-zero, even after the rank's one-line
    error. Here the failure becomes a :class:`LaunchResult` (the ranks have already said
    what went wrong), and with ``quiet`` the agent's log lines are held back too.

    Args:
        argv: The ``fdseg`` command line for every rank (global options, the command and
            its options), without the option that asked for the launch.
        nproc: Processes on this machine, ``>= 2``.
        quiet: Hold back the agent's warnings and per-rank failure lines (``--debug``
            shows them).

    Returns:
        The exit code and the failed rank, if any.

    Raises:
        ValueError: ``nproc < 2``, or this process is already a rank of a launched job.
    """
    if nproc < 2:
        raise InputError(f"nproc must be >= 2 to launch several processes, got {nproc}")
    if under_torchrun():
        raise InputError(
            f"nproc={nproc}: this process is already a rank of a torchrun job; give the "
            "process count to torchrun or to fdseg train (--nproc-per-node), not to both"
        )
    # lazy: torchrun's launcher and its errors load only when a launch is asked for
    from torch.distributed.elastic.multiprocessing.api import SignalException
    from torch.distributed.elastic.multiprocessing.errors import ChildFailedError
    from torch.distributed.run import get_args_parser, run

    args = get_args_parser().parse_args(
        ["--standalone", f"--nproc-per-node={nproc}", "--module", "fdseg_cli", *argv]
    )
    loggers = [logging.getLogger(name) for name in _AGENT_LOGGERS]
    levels = [lg.level for lg in loggers]
    if quiet:
        for lg in loggers:
            lg.setLevel(logging.CRITICAL)
    try:
        run(args)
    except ChildFailedError as err:
        rank, failure = err.get_first_failure()
        code = failure.exitcode or 1
        # a rank killed by a signal reports -signum; a shell reports 128 + signum
        return LaunchResult(exit_code=code if code > 0 else 128 - code, rank=rank)
    except SignalException as err:
        return LaunchResult(exit_code=128 + int(err.sigval))
    finally:
        for lg, level in zip(loggers, levels, strict=True):
            lg.setLevel(level)
    return LaunchResult(exit_code=0)
