"""One optimiser step, one epoch, one validation: the stages a run repeats."""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass

import numpy as np
import torch
from torch import nn
from tqdm import tqdm

from fdseg_core.choices import DEFAULT_WINDOW_BATCH
from fdseg_core.infer.sliding_window import InferenceStopped
from fdseg_core.train.distributed import DistInfo, all_reduce_max, all_reduce_sum
from fdseg_core.train.evaluation import evaluate_volumes
from fdseg_core.train.setup import Optimisation

__all__ = ["EpochProgress", "StepStop", "train_step", "train_epoch", "validate", "unwrap"]


def unwrap(model: nn.Module) -> nn.Module:
    """The module inside a ``DistributedDataParallel`` wrapper (or the model itself)."""
    return model.module if isinstance(model, nn.parallel.DistributedDataParallel) else model


def train_step(
    model: nn.Module,
    opt: Optimisation,
    image: torch.Tensor,
    label: torch.Tensor,
    *,
    channels_last: bool = False,
) -> torch.Tensor:
    """Forward, loss, backward (AMP-scaled on CUDA), clip, optimiser and schedule step.

    Args:
        model: The network in training mode.
        opt: Its :class:`~fdseg_core.train.setup.Optimisation`.
        image: Batch ``(B, C, *spatial)`` on the model's device.
        label: Labels ``(B, *spatial)`` on the same device.
        channels_last: Give a 3D batch to the model in the channels-last format.

    Returns:
        The loss, detached (a 0-dim tensor on the device: no host sync here).
    """
    if channels_last and image.ndim == 5:
        image = image.contiguous(memory_format=torch.channels_last_3d)
    opt.optimizer.zero_grad(set_to_none=True)
    with torch.autocast(image.device.type, dtype=torch.float16, enabled=opt.use_amp):
        logits = model(image)
        loss = opt.loss_fn(logits, label)
    opt.scaler.scale(loss).backward()
    if opt.grad_clip > 0:
        opt.scaler.unscale_(opt.optimizer)
        nn.utils.clip_grad_norm_(opt.params, opt.grad_clip)
    opt.scaler.step(opt.optimizer)
    opt.scaler.update()
    opt.scheduler.step()
    return loss.detach()


@dataclass
class EpochProgress:
    """Where an epoch stands: the steps done in it, the sum of their losses and the
    seconds they took (what a run stopped by a signal saves, so that it resumes at the
    same step; ``done`` equal to the epoch's steps: stopped in its validation)."""

    done: int = 0
    loss_sum: float = 0.0
    elapsed_s: float = 0.0


class StepStop(Exception):  # noqa: N818 - a control-flow signal, not an error
    """Raised between two steps of :func:`train_epoch`: ``reason`` is ``"diverged"``
    (the step's loss was not finite; its update is discarded by the caller, which keeps
    the earlier checkpoints) or ``"signal"`` (a stop was asked for)."""

    def __init__(self, reason: str, progress: EpochProgress, loss: float | None = None) -> None:
        super().__init__(reason)
        self.reason = reason
        self.progress = progress
        self.loss = loss


def train_epoch(
    model: nn.Module,
    opt: Optimisation,
    batches: Iterable[tuple[torch.Tensor, torch.Tensor]],
    device: torch.device,
    *,
    steps: int,
    progress: bool = False,
    desc: str = "",
    channels_last: bool = False,
    start: EpochProgress | None = None,
    should_stop: Callable[[], bool] | None = None,
    dist_info: DistInfo | None = None,
    step: Callable[..., torch.Tensor] | None = None,
) -> torch.Tensor:
    """Run the steps of one epoch (``channels_last`` as in :func:`train_step`).

    After each step the loss is checked: a NaN or infinite loss raises
    :class:`StepStop` (``"diverged"``) at that step. ``should_stop`` is asked after
    each step too (a signal arrived); under ``torchrun`` both decisions are reduced
    over the processes, so that every rank stops at the same step.

    Args:
        batches: The epoch's batches, from the step after ``start.done``.
        start: The steps of this epoch already done (a run resumed mid-epoch).
        should_stop: Whether to stop after the current step.
        dist_info: The processes (``None``: one).
        step: One optimiser step, ``step(model, opt, image, label) -> loss`` (a
            trainer's :meth:`~fdseg_core.train.trainer.Trainer.train_step`); ``None``:
            :func:`train_step` with ``channels_last``.

    Returns:
        The mean loss of this process's steps (a 0-dim tensor on ``device``).

    Raises:
        StepStop: The loss was not finite, or ``should_stop`` said so.
    """
    model.train()
    state = EpochProgress(start.done, start.loss_sum) if start else EpochProgress()
    remaining = steps - state.done
    bar = tqdm(batches, total=remaining, disable=not progress, leave=False, desc=desc)
    if step is None:

        def step(model, opt, image, label):
            return train_step(model, opt, image, label, channels_last=channels_last)

    for image, label in bar:
        loss = step(
            model, opt, image.to(device, non_blocking=True), label.to(device, non_blocking=True)
        )
        value = float(loss)  # one host sync a step: the check must see this step's loss
        stop = should_stop() if should_stop is not None else False
        flags = torch.tensor([0.0 if math.isfinite(value) else 1.0, float(stop)])
        if dist_info is not None and dist_info.enabled:
            flags = all_reduce_max(flags.to(device), dist_info).cpu()
        if flags[0] > 0:
            raise StepStop("diverged", state, value)
        state.done += 1
        state.loss_sum += value
        if progress:
            bar.set_postfix(loss=f"{value:.4f}")
        if flags[1] > 0 and state.done < steps:
            raise StepStop("signal", state)
    return torch.tensor(state.loss_sum / max(steps, 1), device=device)


@torch.no_grad()
def validate(
    model: nn.Module,
    volumes: Sequence,
    num_classes: int,
    patch_size: Sequence[int],
    *,
    overlap: float,
    device: torch.device,
    dist_info: DistInfo,
    activation: str = "softmax",
    batch_size: int = DEFAULT_WINDOW_BATCH,
    should_stop: Callable[[], bool] | None = None,
    on_case: Callable[[int], None] | None = None,
    target_spacing: Sequence[float] | None = None,
) -> np.ndarray:
    """Mean Dice per class over the validation volumes, scored by
    :func:`~fdseg_core.train.evaluation.evaluate_volumes` (whole volumes; labels by
    ``activation``, the rule of the run's loss). Each process takes every
    ``world_size``-th volume; the sums are reduced over processes. ``batch_size``
    windows go through the network at a time.

    ``should_stop`` (a signal arrived) ends the validation early: in one process after
    the current batch of windows; under ``torchrun`` after the current round of volumes
    (one per process), decided by all processes together so that none waits in a
    collective for one that stopped. ``on_case`` is called with the number of this
    process's volumes scored after each one (a progress line or bar). With a
    ``target_spacing`` (the run resamples its cases), each volume is scored on its own
    grid, as ``fdseg predict`` and ``fdseg evaluate`` score it.

    Returns:
        ``(num_classes,)`` float64; NaN for a class absent from every prediction and
        reference.

    Raises:
        InferenceStopped: ``should_stop`` asked for it.
    """
    net = unwrap(model)
    net.eval()
    mine = volumes[dist_info.rank :: dist_info.world_size]
    options = dict(
        target_spacing=target_spacing,
        case_grid=True,
        num_classes=num_classes,
        patch_size=patch_size,
        overlap=overlap,
        device=device,
        activation=activation,
        batch_size=batch_size,
    )
    try:
        if dist_info.enabled and should_stop is not None:
            scores = []
            for r in range(math.ceil(len(volumes) / dist_info.world_size)):
                scores += evaluate_volumes(net, mine[r : r + 1], **options)
                if on_case is not None:
                    on_case(len(scores))
                flag = torch.tensor([float(should_stop())], device=device)
                if float(all_reduce_max(flag, dist_info)[0]) > 0:
                    raise InferenceStopped
        else:
            scores = evaluate_volumes(
                net, mine, should_stop=should_stop, on_case=on_case, **options
            )
    finally:
        model.train()
    dice = np.stack([s.dice for s in scores]) if scores else np.full((0, num_classes), np.nan)
    valid = ~np.isnan(dice)
    sums = torch.as_tensor(np.where(valid, dice, 0.0).sum(axis=0), device=device)
    counts = torch.as_tensor(valid.sum(axis=0).astype(np.float64), device=device)
    sums = all_reduce_sum(sums, dist_info)
    counts = all_reduce_sum(counts, dist_info)
    return (sums / counts.clamp(min=1)).where(counts > 0, torch.nan).cpu().numpy()
