"""Extension points of the training loop: callbacks at its stage boundaries.

A callback is an object with any of the methods of :class:`TrainingCallback`; the loop
calls them in order, on every process (``run.dist_info`` says which), so that an extra
metric, a custom log or weight averaging is added without editing the loop::

    class PrintLR(TrainingCallback):
        def on_epoch_end(self, run, row):
            if run.dist_info.is_main:
                print(run.epoch, row["lr"])

    train(config, callbacks=[PrintLR()])

A callback that keeps state across epochs returns it from :meth:`state_dict`; it is
saved in every checkpoint under the callback's :attr:`name` and given back to
:meth:`load_state_dict` on resume, so a resumed run continues exactly.

:class:`EMASelection` is the one fdseg ships: it chooses ``best.pt`` by an exponential
moving average of the validation Dice, as nnU-Net does, instead of by the raw Dice of
one validation (``TrainConfig.best_selection="ema"``).
"""

from __future__ import annotations

import math
from typing import Any, Protocol

from torch import nn

from fdseg_core.errors import InputError
from fdseg_core.infer.card import ModelCard
from fdseg_core.train.config import TrainConfig
from fdseg_core.train.distributed import DistInfo
from fdseg_core.train.results import TrainResult

__all__ = ["EMASelection", "RunView", "SELECTION_KEY", "TrainingCallback"]


class RunView(Protocol):
    """What a callback may read of the run (:class:`fdseg_core.train.loop.RunState`
    holds these and more: the optimiser, the loader, the metrics log)."""

    config: TrainConfig
    dist_info: DistInfo
    net: nn.Module
    epoch: int
    steps: int
    card: ModelCard


#: The key of a validation row that, when a callback sets it, is the score that picks
#: ``best.pt`` and drives early stopping (default: ``val_dice_mean``).
SELECTION_KEY = "selection_score"


class TrainingCallback:
    """Hooks at the stage boundaries of :func:`fdseg_core.train.train`; every method is
    optional and does nothing here.

    Attributes:
        name: The key of the callback's state in checkpoints (default: the class name).
    """

    @property
    def name(self) -> str:
        return type(self).__name__

    def on_train_start(self, run: RunView) -> None:
        """After the set-up (data, model, optimiser; restored state on resume), before
        the first step."""

    def on_epoch_start(self, run: RunView) -> None:
        """Before the steps of epoch ``run.epoch + 1``."""

    def on_epoch_end(self, run: RunView, row: dict[str, Any]) -> None:
        """After the steps (``run.epoch`` counts this epoch) and the validation, if one
        ran: ``row`` is the epoch's log row, and may be given more entries (they go into
        ``metrics.jsonl``), before the checkpoints are written."""

    def on_validation_end(self, run: RunView, row: dict[str, Any]) -> None:
        """After a validation: ``row`` holds ``val_dice_<class>`` and ``val_dice_mean``.
        Setting ``row[SELECTION_KEY]`` makes that the score that picks ``best.pt`` and
        drives early stopping."""

    def on_train_end(self, run: RunView, result: TrainResult) -> None:
        """After the last epoch (or an early stop), with the result ``train`` returns."""

    def state_dict(self) -> dict[str, Any]:
        """State to save in checkpoints (JSON-like values)."""
        return {}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """State from a resumed run's checkpoint."""


class EMASelection(TrainingCallback):
    """Choose ``best.pt`` by an exponential moving average of the mean validation Dice.

    ``ema = weight * ema + (1 - weight) * dice`` at every validation (the first one
    starts it), as nnU-Net smooths its pseudo-Dice before it picks the best checkpoint:
    with few validation cases one lucky validation no longer decides. The average is
    logged as ``val_dice_ema``.

    Args:
        weight: The weight of the past, in ``[0, 1)`` (nnU-Net: 0.9).
    """

    def __init__(self, weight: float = 0.9) -> None:
        if not 0.0 <= weight < 1.0:
            raise InputError(f"EMA weight must lie in [0, 1), got {weight}")
        self.weight = float(weight)
        self.ema: float | None = None

    def on_validation_end(self, run: RunView, row: dict[str, Any]) -> None:
        dice = row["val_dice_mean"]
        if math.isnan(dice):
            dice = 0.0
        self.ema = dice if self.ema is None else self.weight * self.ema + (1 - self.weight) * dice
        row["val_dice_ema"] = self.ema
        row[SELECTION_KEY] = self.ema

    def state_dict(self) -> dict[str, Any]:
        return {"weight": self.weight, "ema": self.ema}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.ema = state.get("ema")
