"""What a training run gives back: a typed, frozen result instead of a dict."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

__all__ = ["TrainResult"]


@dataclass(frozen=True)
class TrainResult:
    """The outcome of one training run (:func:`fdseg_core.train.train`,
    :meth:`fdseg_core.train.Trainer.run`).

    Attributes:
        out: The run's folder.
        best_dice: The best validation score (mean foreground Dice, or its moving
            average with ``best_selection="ema"``); ``-inf`` when it never validated.
        best_epoch: The epoch of ``best.pt`` (from 1; 0: never validated).
        final: The last validation's Dice per class (``val_dice_<name>``) and
            ``val_dice_mean``.
        report: A printable text of the run (what ``fdseg train`` prints).
        is_main: Whether this process is rank 0 (the one that writes and reports).
        n_folds: Folds of the split (``None``: trained and validated on every case).
        fold: The validation fold, or ``"all"``.
        epochs_run: Epochs done (resumed runs included).
        stopped_early: Whether early stopping ended the run.
        steps_per_epoch: Optimiser steps per epoch (per process).
        train_ids: The case ids it trained on.
        val_ids: The case ids it validated on.
        activation: How its logits become labels (``"softmax"`` or ``"sigmoid"``).
        trainer: The name of the trainer that ran it.
        train_time_s: Seconds in training steps, summed over the log.
        val_time_s: Seconds in validation, summed over the log.
        machines: The machines that trained it, in order (one unless a resume continued
            it on another; :func:`~fdseg_core.provenance.machine_provenance`).
    """

    out: str
    best_dice: float
    best_epoch: int
    final: Mapping[str, float]
    report: str
    is_main: bool
    n_folds: int | None
    fold: int | str
    epochs_run: int
    stopped_early: bool
    steps_per_epoch: int
    train_ids: tuple[str, ...]
    val_ids: tuple[str, ...]
    activation: str
    trainer: str
    train_time_s: float
    val_time_s: float
    machines: tuple[Mapping[str, Any], ...] = ()

    def to_dict(self) -> dict[str, Any]:
        """A JSON-compatible dict (what callbacks and trackers log)."""
        return {
            "out": self.out,
            "best_dice": self.best_dice,
            "best_epoch": self.best_epoch,
            "final": dict(self.final),
            "n_folds": self.n_folds,
            "fold": self.fold,
            "epochs_run": self.epochs_run,
            "stopped_early": self.stopped_early,
            "steps_per_epoch": self.steps_per_epoch,
            "train_ids": list(self.train_ids),
            "val_ids": list(self.val_ids),
            "activation": self.activation,
            "trainer": self.trainer,
            "train_time_s": self.train_time_s,
            "val_time_s": self.val_time_s,
            "machines": [dict(m) for m in self.machines],
        }
