"""nnU-Net v2 trainers with frequency-disentangled learning (fdseg; the nnunet extra).

nnU-Net finds them by name through the folder ``fdseg nnunet path`` prints (its one
module re-exports these classes)::

    export nnUNet_extTrainer=$(fdseg nnunet path)
    nnUNetv2_train DATASET 3d_fullres 0 -tr nnUNetTrainerFDEarly
    nnUNetv2_predict -i IN -o OUT -d DATASET -c 3d_fullres -f 0 -tr nnUNetTrainerFDEarly

Each trainer is nnU-Net's own ``nnUNetTrainer`` with one change: its network is the
planned one (``PlainConvUNet`` or ``ResidualEncoderUNet``) wrapped in fdseg's band split
and fusion (``fdseg_core.integrations.nnunet.wrap_planned_network``). The class
attributes choose the fusion, ``beta`` and the band layout; the named subclasses below
follow nnU-Net's convention for variants (``nnUNetTrainer_250epochs``). Derive your own
from this module (``from fdseg_core.integrations.nnunet.trainer import
nnUNetTrainerFDEarly``), in a module of your own folder added to ``nnUNet_extTrainer``.
"""

from __future__ import annotations

import torch
from nnunetv2.training.nnUNetTrainer.nnUNetTrainer import nnUNetTrainer
from nnunetv2.utilities.get_network_from_plans import get_network_from_plans
from torch import nn

from fdseg_core.choices import DEFAULT_BETA
from fdseg_core.train.loop import Tracker

__all__ = [
    "PlateauSchedule",
    "nnUNetTrainer_plateau",
    "nnUNetTrainerFDEarly_plateau",
    "nnUNetTrainerFDLate_plateau",
    "nnUNetTrainerFD",
    "nnUNetTrainerFDEarly",
    "nnUNetTrainerFDEarly_beta0p05",
    "nnUNetTrainerFDEarly_beta0p2",
    "nnUNetTrainerFDEarly_reference",
    "nnUNetTrainerFDLate",
    "nnUNetTrainerFDLate_beta0p05",
    "nnUNetTrainerFDLate_beta0p2",
    "nnUNetTrainerFDLate_reference",
]
from fdseg_core.integrations.nnunet.network import band_dims_for, wrap_planned_network


class nnUNetTrainerFD(nnUNetTrainer):  # noqa: N801 - nnU-Net's naming, found by name
    """nnU-Net's trainer whose planned network goes through fdseg's wrapper.

    ``fd_fusion = "none"`` trains exactly nnU-Net's network (the same parameters and
    outputs): the control for the subclasses, which set ``"early"`` or ``"late"``.

    Attributes:
        fd_fusion: ``"none"``, ``"early"`` (at the network's first stage) or ``"late"``
            (at its last full-resolution decoder features).
        fd_beta: Relative width of the low band over the in-plane axes.
        fd_layout: ``"centered"`` (the paper's text) or ``"reference"`` (its code).
    """

    fd_fusion: str = "none"
    fd_beta: float = DEFAULT_BETA
    fd_layout: str = "centered"

    @classmethod
    def build_network_architecture(
        cls,
        plans_manager,
        configuration_manager,
        num_input_channels: int,
        num_output_channels: int,
        enable_deep_supervision: bool = True,
    ) -> nn.Module:
        """The planned network, as nnU-Net builds it, with the bands fused at
        ``fd_fusion``. Training and ``nnUNetv2_predict`` both call it."""
        network = get_network_from_plans(
            configuration_manager.network_arch_class_name,
            configuration_manager.network_arch_init_kwargs,
            configuration_manager.network_arch_init_kwargs_req_import,
            num_input_channels,
            num_output_channels,
            allow_init=True,
            deep_supervision=enable_deep_supervision,
        )
        return wrap_planned_network(
            network,
            fusion=cls.fd_fusion,
            beta=cls.fd_beta,
            layout=cls.fd_layout,
            dims=band_dims_for(configuration_manager.spacing),
        )


class nnUNetTrainerFDEarly(nnUNetTrainerFD):  # noqa: N801
    """Early fusion: the low band's stem is fused with the network's first stage."""

    fd_fusion = "early"


class nnUNetTrainerFDLate(nnUNetTrainerFD):  # noqa: N801
    """Late fusion: at the network's last full-resolution decoder features."""

    fd_fusion = "late"


class nnUNetTrainerFDEarly_reference(nnUNetTrainerFDEarly):  # noqa: N801
    """Early fusion with the paper code's unshifted band layout."""

    fd_layout = "reference"


class nnUNetTrainerFDLate_reference(nnUNetTrainerFDLate):  # noqa: N801
    """Late fusion with the paper code's unshifted band layout."""

    fd_layout = "reference"


class nnUNetTrainerFDEarly_beta0p05(nnUNetTrainerFDEarly):  # noqa: N801
    """Early fusion, a low band half as wide (beta 0.05)."""

    fd_beta = 0.05


class nnUNetTrainerFDEarly_beta0p2(nnUNetTrainerFDEarly):  # noqa: N801
    """Early fusion, a low band twice as wide (beta 0.2)."""

    fd_beta = 0.2


class nnUNetTrainerFDLate_beta0p05(nnUNetTrainerFDLate):  # noqa: N801
    """Late fusion, beta 0.05."""

    fd_beta = 0.05


class nnUNetTrainerFDLate_beta0p2(nnUNetTrainerFDLate):  # noqa: N801
    """Late fusion, beta 0.2."""

    fd_beta = 0.2


#: nnU-Net's default device argument (a module-level value, not a call in the signature)
_CUDA = torch.device("cuda")


class PlateauSchedule:
    """A short schedule that ends on the validation plateau: a mixin for nnU-Net trainers.

    nnU-Net's standard schedule is 1000 epochs of 250 iterations, days on a CPU. This
    schedule runs epochs of ``plateau_iterations`` iterations with
    ``plateau_val_iterations`` validation iterations, at most ``plateau_max_epochs``
    epochs (the poly learning rate decays over them, as nnU-Net's over its 1000), and
    stops after the epoch at which nnU-Net's EMA pseudo Dice (the number that chooses its
    ``checkpoint_best.pth``) has gone ``plateau_patience`` epochs without improving by more
    than ``plateau_min_delta``, never before ``plateau_min_epochs``: fdseg's own plateau
    rule (:class:`fdseg_core.train.loop.Tracker`), replayed on the logged EMA each epoch,
    so a resumed run (``--c``) stops where an uninterrupted one does.

    Put it first among the bases, before an nnU-Net trainer::

        class nnUNetTrainer_plateau(PlateauSchedule, nnUNetTrainer): ...
    """

    plateau_iterations: int = 50
    plateau_val_iterations: int = 10
    plateau_max_epochs: int = 40
    plateau_patience: int = 8
    plateau_min_epochs: int = 10
    plateau_min_delta: float = 0.002

    # nnU-Net records its __init__ arguments by name: keep its signature
    def __init__(self, plans, configuration, fold, dataset_json, device=_CUDA):
        super().__init__(plans, configuration, fold, dataset_json, device)
        self.num_iterations_per_epoch = self.plateau_iterations
        self.num_val_iterations_per_epoch = self.plateau_val_iterations
        self.num_epochs = self.plateau_max_epochs

    def plateau_reached(self) -> bool:
        """Whether the EMA pseudo Dice logged so far has reached the plateau."""
        tracker = Tracker(self.plateau_patience, self.plateau_min_delta, self.plateau_min_epochs)
        for epoch, ema in enumerate(self.logger.get_value("ema_fg_dice", step=None), start=1):
            tracker.update(float(ema), epoch)
        return tracker.stopped

    def run_training(self):
        """nnU-Net's training loop, ended after the epoch that reaches the plateau."""
        self.on_train_start()
        for _ in range(self.current_epoch, self.num_epochs):
            self.on_epoch_start()
            self.on_train_epoch_start()
            train_outputs = [
                self.train_step(next(self.dataloader_train))
                for _ in range(self.num_iterations_per_epoch)
            ]
            self.on_train_epoch_end(train_outputs)
            with torch.no_grad():
                self.on_validation_epoch_start()
                val_outputs = [
                    self.validation_step(next(self.dataloader_val))
                    for _ in range(self.num_val_iterations_per_epoch)
                ]
                self.on_validation_epoch_end(val_outputs)
            self.on_epoch_end()
            if self.plateau_reached():
                self.print_to_log_file(
                    f"plateau: the EMA pseudo Dice did not improve by more than "
                    f"{self.plateau_min_delta} in {self.plateau_patience} epochs; stopping after "
                    f"epoch {self.current_epoch - 1} ({self.current_epoch} of at most "
                    f"{self.num_epochs})"
                )
                break
        self.on_train_end()


class nnUNetTrainer_plateau(PlateauSchedule, nnUNetTrainer):  # noqa: N801
    """nnU-Net's stock trainer on the short plateau schedule (:class:`PlateauSchedule`)."""


class nnUNetTrainerFDEarly_plateau(PlateauSchedule, nnUNetTrainerFDEarly):  # noqa: N801
    """Early fusion on the short plateau schedule."""


class nnUNetTrainerFDLate_plateau(PlateauSchedule, nnUNetTrainerFDLate):  # noqa: N801
    """Late fusion on the short plateau schedule."""
