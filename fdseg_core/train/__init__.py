"""Training: configuration, loop (single process or torchrun), losses, checkpoints, logs."""

from __future__ import annotations

from fdseg_core.train.checkpoint import atomic_save, load_checkpoint, load_model
from fdseg_core.train.config import TrainConfig
from fdseg_core.train.loop import resolve_device, train
from fdseg_core.train.losses import DiceCELoss, SigmoidDiceLoss
from fdseg_core.train.recipes import RECIPES, apply_recipe

__all__ = [
    "RECIPES",
    "DiceCELoss",
    "SigmoidDiceLoss",
    "apply_recipe",
    "TrainConfig",
    "atomic_save",
    "load_checkpoint",
    "load_model",
    "resolve_device",
    "train",
]
