"""Training: configuration, loop (single process or torchrun), losses, checkpoints, logs.

Importing this package is cheap: the configuration (:mod:`fdseg_core.train.config`),
the recipes and the default job import no torch, so the command line can build its
options from :class:`TrainConfig` without loading torch. Every other public name is
resolved on first access (PEP 562).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from fdseg_core._lazy import lazy_attributes

#: public name -> module that defines it
_EXPORTS: dict[str, str] = {
    "RECIPES": "fdseg_core.train.recipes",
    "apply_recipe": "fdseg_core.train.recipes",
    "resolve_fields": "fdseg_core.train.recipes",
    "TrainConfig": "fdseg_core.train.config",
    "RUNTIME_FIELDS": "fdseg_core.train.config",
    "DiceCELoss": "fdseg_core.train.losses",
    "SigmoidDiceLoss": "fdseg_core.train.losses",
    "atomic_save": "fdseg_core.train.checkpoint",
    "build_model": "fdseg_core.train.checkpoint",
    "load_checkpoint": "fdseg_core.train.checkpoint",
    "load_model": "fdseg_core.train.checkpoint",
    "resolve_device": "fdseg_core.train.loop",
    "train": "fdseg_core.train.loop",
    "TrainResult": "fdseg_core.train.results",
    "Trainer": "fdseg_core.train.trainer",
    "get_trainer": "fdseg_core.train.trainer",
    "list_trainers": "fdseg_core.train.trainer",
}

__all__ = [
    "RECIPES",
    "RUNTIME_FIELDS",
    "DiceCELoss",
    "SigmoidDiceLoss",
    "TrainConfig",
    "TrainResult",
    "Trainer",
    "apply_recipe",
    "atomic_save",
    "build_model",
    "get_trainer",
    "list_trainers",
    "load_checkpoint",
    "load_model",
    "resolve_device",
    "resolve_fields",
    "train",
]

if TYPE_CHECKING:  # pragma: no cover
    from fdseg_core.train.checkpoint import atomic_save, build_model, load_checkpoint, load_model
    from fdseg_core.train.config import RUNTIME_FIELDS, TrainConfig
    from fdseg_core.train.loop import resolve_device, train
    from fdseg_core.train.losses import DiceCELoss, SigmoidDiceLoss
    from fdseg_core.train.recipes import RECIPES, apply_recipe, resolve_fields
    from fdseg_core.train.results import TrainResult
    from fdseg_core.train.trainer import Trainer, get_trainer, list_trainers


__getattr__, __dir__ = lazy_attributes(__name__, _EXPORTS, globals())
