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

from nnunetv2.training.nnUNetTrainer.nnUNetTrainer import nnUNetTrainer
from nnunetv2.utilities.get_network_from_plans import get_network_from_plans
from torch import nn

from fdseg_core.choices import DEFAULT_BETA

__all__ = [
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
