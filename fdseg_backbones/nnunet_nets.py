"""nnU-Net's network as an fdseg backbone (the ``nnunet`` extra).

``nnunet_plainconv`` is ``dynamic_network_architectures``' ``PlainConvUNet``, the network
nnU-Net's default plans build, with nnU-Net's 3d_fullres layout for isotropic patches
of 64 voxels and more: 5 stages of 2 convolutions (3x3x3, instance norm, leaky ReLU),
32 features doubled per stage up to 320, stride 2 from the second stage on, He
initialisation. It comes with the ``"stem"`` and ``"decoder"`` fusion points of
:class:`~fdseg_core.nn.PlannedUNet`, so that ``fdseg train --backbone nnunet_plainconv``
trains the same network with fdseg's own loop that ``nnUNetv2_train -tr
nnUNetTrainerFDEarly`` trains with nnU-Net's (``docs/nnunet.md``).
"""

from __future__ import annotations

import importlib.util

from torch import nn

from fdseg_backbones._spec import unet_spec
from fdseg_core.errors import InputError
from fdseg_core.nn import PlannedUNet
from fdseg_core.plugins.spec import BackboneSpec

__all__ = ["build_nnunet_plainconv", "nnunet_specs"]


def build_nnunet_plainconv(
    in_channels: int,
    out_channels: int,
    spatial_dims: int = 3,
    *,
    n_stages: int = 5,
    base_features: int = 32,
    max_features: int = 320,
    n_conv_per_stage: int = 2,
) -> PlannedUNet:
    """nnU-Net's ``PlainConvUNet`` with fdseg's fusion points (no deep supervision).

    Args:
        in_channels: Image channels.
        out_channels: Classes.
        spatial_dims: 2 or 3.
        n_stages: Encoder stages (the spatial size divisor is ``2 ** (n_stages - 1)``).
        base_features: Features of the first stage, doubled per stage.
        max_features: Cap of the features (nnU-Net's 320 in 3D).
        n_conv_per_stage: Convolutions per encoder and decoder stage.

    Raises:
        ValueError: Fewer than 2 stages.
    """
    # the nnunet extra: imported when the backbone is built
    from dynamic_network_architectures.architectures.unet import PlainConvUNet
    from dynamic_network_architectures.initialization.weight_init import InitWeights_He

    if n_stages < 2:
        raise InputError(f"n_stages must be >= 2, got {n_stages}")
    conv = nn.Conv3d if spatial_dims == 3 else nn.Conv2d
    norm = nn.InstanceNorm3d if spatial_dims == 3 else nn.InstanceNorm2d
    network = PlainConvUNet(
        input_channels=in_channels,
        n_stages=n_stages,
        features_per_stage=[min(base_features * 2**i, max_features) for i in range(n_stages)],
        conv_op=conv,
        kernel_sizes=3,
        strides=[1] + [2] * (n_stages - 1),
        n_conv_per_stage=n_conv_per_stage,
        num_classes=out_channels,
        n_conv_per_stage_decoder=n_conv_per_stage,
        conv_bias=True,
        norm_op=norm,
        norm_op_kwargs={"eps": 1e-5, "affine": True},
        nonlin=nn.LeakyReLU,
        nonlin_kwargs={"inplace": True},
        deep_supervision=False,
    )
    network.apply(InitWeights_He(1e-2))
    return PlannedUNet(network)


def nnunet_specs() -> list[BackboneSpec]:
    """``nnunet_plainconv``, or ``[]`` when ``dynamic_network_architectures`` (which the
    nnunet extra brings) is not installed."""
    if importlib.util.find_spec("dynamic_network_architectures") is None:
        return []
    return [
        unet_spec(
            "nnunet_plainconv",
            build_nnunet_plainconv,
            16,
            "nnU-Net's PlainConvUNet (5 stages, 32-320 features), as its default 3d_fullres "
            "plans build it",
        )
    ]
