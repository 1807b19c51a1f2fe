"""Learning-rate schedules, stepped once per optimiser step."""

from __future__ import annotations

import math

import torch

from fdseg_core.errors import InputError

__all__ = ["build_scheduler"]


def build_scheduler(
    optimizer: torch.optim.Optimizer, kind: str, total_steps: int
) -> torch.optim.lr_scheduler.LambdaLR:
    """A ``LambdaLR`` for ``"poly"`` (exponent 0.9, as nnU-Net), ``"cosine"`` or ``"constant"``.

    Args:
        optimizer: The optimiser.
        kind: Schedule name.
        total_steps: Steps of the whole run.

    Returns:
        The scheduler (its state dict goes into checkpoints).
    """
    if total_steps < 1:
        raise InputError(f"total_steps must be >= 1, got {total_steps}")
    if kind == "poly":

        def factor(step: int) -> float:
            return (1.0 - min(step, total_steps) / total_steps) ** 0.9
    elif kind == "cosine":

        def factor(step: int) -> float:
            return 0.5 * (1.0 + math.cos(math.pi * min(step, total_steps) / total_steps))
    elif kind == "constant":

        def factor(step: int) -> float:
            return 1.0
    else:
        raise InputError(f"unknown schedule {kind!r}; expected 'poly', 'cosine' or 'constant'")
    return torch.optim.lr_scheduler.LambdaLR(optimizer, factor)
