"""The built-in backbones' plugin, registered through the ``fdseg`` entry point group
exactly like a third-party plugin (``[project.entry-points.fdseg]`` in pyproject.toml)."""

from __future__ import annotations

from fdseg_backbones.monai_nets import monai_specs
from fdseg_backbones.nnunet_nets import nnunet_specs
from fdseg_backbones.paper_unet3d import build_paper_unet3d
from fdseg_backbones.plainunet import build_plainunet
from fdseg_backbones.unet3d import build_unet3d
from fdseg_core.choices import FUSION_POINTS
from fdseg_core.plugins import BackboneSpec, hookimpl

__all__ = ["fdseg_register_backbones"]


@hookimpl
def fdseg_register_backbones() -> list[BackboneSpec]:
    """unet3d, paper_unet3d (the paper's own network), plainunet, and MONAI's networks
    when installed."""
    return [
        BackboneSpec(
            name="unet3d",
            builder=build_unet3d,
            spatial_dims=(2, 3),
            size_divisor=8,
            description="Residual U-Net of Isensee et al. 2017, the paper's backbone family "
            "(4 levels, 8 base filters, deep supervision)",
            default_options={"levels": 4, "base_filters": 8},
            fusion_points=FUSION_POINTS,
        ),
        BackboneSpec(
            name="paper_unet3d",
            builder=build_paper_unet3d,
            spatial_dims=(2, 3),
            size_divisor=4,
            description="The paper's public-code network, layer for layer (UNet3D_3: "
            "3 levels, 8 base filters, dropout 0.6)",
            default_options={"base_filters": 8, "dropout": 0.6},
            fusion_points=FUSION_POINTS,
        ),
        BackboneSpec(
            name="plainunet",
            builder=build_plainunet,
            spatial_dims=(2, 3),
            size_divisor=8,
            description="Plain U-Net of Cicek et al. 2016 (4 levels, 16 base filters)",
            default_options={"levels": 4, "base_filters": 16},
            fusion_points=FUSION_POINTS,
        ),
        *monai_specs(),
        *nnunet_specs(),
    ]
