"""The trainer: the training loop's stages as methods a subclass overrides.

:class:`Trainer` holds what ``fdseg train`` computes. The loop
(:func:`fdseg_core.train.train`) calls, in order, :meth:`~Trainer.build_network`, then
:meth:`~Trainer.build_optimisation` (:meth:`~Trainer.build_loss`,
:meth:`~Trainer.build_optimizer`, :meth:`~Trainer.build_scheduler`), then every epoch
:meth:`~Trainer.train_step` once per step, :meth:`~Trainer.validate` every
``val_every`` epochs and :meth:`~Trainer.write_curves`, as ``nnUNetTrainer.run_training``
calls its own methods. A variant overrides one of them and nothing else::

    class TrainerRAdam(Trainer):
        def build_optimizer(self, params):
            return torch.optim.RAdam(params, lr=self.config.lr)

Trainers are selected by name (``TrainConfig.trainer``, ``fdseg train --trainer``):
the built-in ones (:data:`BUILTIN_TRAINERS`) and those plugins register through the
``fdseg_register_trainers`` hook. The name is saved with the run, so a resumed run
continues with the same trainer. Callbacks
(:class:`~fdseg_core.train.callbacks.TrainingCallback`) observe a run; a trainer
changes what it computes.

A trainer may change how the network is initialised, not its architecture:
inference rebuilds the network from the run's configuration
(:func:`~fdseg_core.train.checkpoint.build_model`). Another architecture is a backbone
(:mod:`fdseg_core.plugins`).
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from typing import Any, ClassVar

import numpy as np
import torch
from torch import nn

from fdseg_core.choices import activation_of_loss
from fdseg_core.errors import OptionError
from fdseg_core.train.checkpoint import build_model
from fdseg_core.train.config import TrainConfig
from fdseg_core.train.logs import plot_curves
from fdseg_core.train.losses import DiceFocalLoss, build_loss
from fdseg_core.train.schedules import build_scheduler
from fdseg_core.train.setup import Optimisation, build_optimizer
from fdseg_core.train.steps import train_step, validate

__all__ = [
    "BUILTIN_TRAINERS",
    "DEFAULT_TRAINER",
    "Trainer",
    "TrainerDiceFocal",
    "TrainerRAdam",
    "get_trainer",
    "list_trainers",
    "trainer_for",
]

logger = logging.getLogger(__name__)

#: The trainer ``fdseg train`` runs unless told otherwise.
DEFAULT_TRAINER = "Trainer"


class Trainer:
    """The training loop of one run, as overridable stages.

    Args:
        config: The run's configuration (its ``trainer`` field names this class or a
            subclass).

    Attributes:
        config: The run's configuration.
        name: The name a trainer is selected by (its class name, as nnU-Net's ``-tr``).
    """

    name: ClassVar[str] = DEFAULT_TRAINER

    def __init__(self, config: TrainConfig) -> None:
        self.config = config

    def __init_subclass__(cls, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        if "name" not in cls.__dict__:  # a subclass is selected by its own class name
            cls.name = cls.__name__

    # --- what a run is built from -------------------------------------------------

    @property
    def activation(self) -> str:
        """How the trained logits become labels, ``"softmax"`` or ``"sigmoid"``: the
        rule of the loss (:meth:`build_loss`). It is saved in the checkpoints, and
        validation, ``fdseg predict``, the experiment and exported models follow it; a
        trainer whose loss trains another rule than ``config.loss`` overrides it."""
        return activation_of_loss(self.config.loss)

    def build_network(self, in_channels: int, num_classes: int) -> nn.Module:
        """The network, on the CPU, in training mode.

        Args:
            in_channels: Image channels ``C`` of the ``(N, C, X, Y, Z)`` input.
            num_classes: Output channels ``K`` (background included) of the logits
                ``(N, K, X, Y, Z)``.
        """
        return build_model(self.config, in_channels, num_classes)

    def build_loss(self) -> nn.Module:
        """The loss of logits ``(N, K, *spatial)`` against labels ``(N, *spatial)``."""
        return build_loss(self.config.loss)

    def build_optimizer(self, params: list[nn.Parameter]) -> torch.optim.Optimizer:
        """The optimiser of the trainable parameters."""
        return build_optimizer(self.config, params)

    def build_scheduler(
        self, optimizer: torch.optim.Optimizer, total_steps: int
    ) -> torch.optim.lr_scheduler.LRScheduler:
        """The learning-rate schedule, stepped once per optimiser step over
        ``total_steps``. It must be a ``LambdaLR`` for a resumed run to change
        ``epochs`` (the rate is then recomputed over the new total)."""
        return build_scheduler(optimizer, self.config.schedule, total_steps)

    def build_optimisation(
        self, model: nn.Module, total_steps: int, device: torch.device
    ) -> Optimisation:
        """Loss, optimiser and schedule over ``total_steps`` (:meth:`build_loss`,
        :meth:`build_optimizer`, :meth:`build_scheduler`) and the AMP scaler: what
        updates the weights and is saved in the checkpoints."""
        params = [p for p in model.parameters() if p.requires_grad]
        optimizer = self.build_optimizer(params)
        use_amp = self.config.amp and device.type == "cuda"
        return Optimisation(
            params=params,
            optimizer=optimizer,
            scheduler=self.build_scheduler(optimizer, total_steps),
            scaler=torch.amp.GradScaler("cuda", enabled=use_amp),
            loss_fn=self.build_loss(),
            use_amp=use_amp,
            grad_clip=self.config.grad_clip,
        )

    # --- what a run repeats -------------------------------------------------------

    def train_step(
        self, model: nn.Module, opt: Optimisation, image: torch.Tensor, label: torch.Tensor
    ) -> torch.Tensor:
        """One optimiser step (forward, loss, backward, clip, optimiser and schedule
        step; :func:`~fdseg_core.train.steps.train_step`).

        Args:
            model: The network in training mode.
            opt: Optimiser, schedule, scaler and loss (:meth:`build_loss`).
            image: Batch ``(B, C, X, Y, Z)`` on the model's device.
            label: Labels ``(B, X, Y, Z)`` on the same device.

        Returns:
            The loss, detached (a 0-dim tensor on the device).
        """
        return train_step(model, opt, image, label, channels_last=self.config.channels_last)

    def validate(
        self,
        net: nn.Module,
        volumes: Sequence,
        num_classes: int,
        patch_size: Sequence[int],
        **options: Any,
    ) -> np.ndarray:
        """The mean Dice per class over the validation volumes, shape ``(K,)``
        (:func:`~fdseg_core.train.steps.validate`, whose keyword ``options`` these are;
        NaN for a class absent from every prediction and reference)."""
        return validate(net, volumes, num_classes, patch_size, **options)

    def write_curves(self, rows: list[dict[str, Any]], path: Any) -> None:
        """Draw the run's log (one row per epoch) into ``path`` (``curves.png``)."""
        c = self.config
        plot_curves(rows, path, title=f"{c.backbone} fusion={c.fusion} beta={c.beta}", loss=c.loss)


class TrainerRAdam(Trainer):
    """Rectified Adam (Liu et al. 2020) with decoupled weight decay, instead of the
    configured optimiser: Adam whose first steps are damped while the variance of the
    adaptive rate is unreliable, so it needs no warm-up."""

    def build_optimizer(self, params: list[nn.Parameter]) -> torch.optim.Optimizer:
        return torch.optim.RAdam(
            params,
            lr=self.config.lr,
            weight_decay=self.config.weight_decay,
            decoupled_weight_decay=True,
        )


class TrainerDiceFocal(Trainer):
    """Soft Dice plus the focal loss (Lin et al. 2017, gamma 2) on softmax
    probabilities (:class:`~fdseg_core.train.losses.DiceFocalLoss`), instead of the
    configured loss; the model predicts by the softmax rule (argmax)."""

    @property
    def activation(self) -> str:
        return "softmax"

    def build_loss(self) -> nn.Module:
        return DiceFocalLoss()


#: The trainers fdseg provides, by name.
BUILTIN_TRAINERS: dict[str, type[Trainer]] = {
    t.name: t for t in (Trainer, TrainerRAdam, TrainerDiceFocal)
}


def list_trainers() -> dict[str, type[Trainer]]:
    """Every trainer by name: the built-in ones, then those of plugins
    (``fdseg_register_trainers``; a plugin's trainer may not take a built-in name)."""
    from fdseg_core.plugins.manager import plugin_trainers  # lazy: loads entry points

    found = dict(BUILTIN_TRAINERS)
    for trainer in plugin_trainers():
        if not (isinstance(trainer, type) and issubclass(trainer, Trainer)):
            logger.warning(f"plugin trainer {trainer!r} is not a Trainer subclass: skipped")
        elif trainer.name in found and found[trainer.name] is not trainer:
            logger.warning(f"plugin trainer {trainer.name!r} takes a name in use: skipped")
        else:
            found[trainer.name] = trainer
    return found


def get_trainer(name: str | type[Trainer]) -> type[Trainer]:
    """The trainer class of a name (a class is returned as it is).

    Raises:
        OptionError: No trainer of that name (the message lists them).
    """
    if isinstance(name, type) and issubclass(name, Trainer):
        return name
    found = list_trainers()
    if name not in found:
        raise OptionError(
            f"{{trainer}}: no trainer named {name!r}; expected one of {sorted(found)} "
            "(`fdseg trainers` lists them)",
            "trainer",
        )
    return found[name]


def trainer_for(config: TrainConfig, trainer: type[Trainer] | None = None) -> Trainer:
    """The trainer of a run: ``trainer`` if given (the config then takes its name, so
    the run is saved as trained by it), else the one ``config.trainer`` names.

    Raises:
        OptionError: ``config.trainer`` names no trainer.
    """
    if trainer is None:
        return get_trainer(config.trainer)(config)
    cls = get_trainer(trainer)
    if config.trainer != cls.name:
        config = config.replace(trainer=cls.name)
    return cls(config)
