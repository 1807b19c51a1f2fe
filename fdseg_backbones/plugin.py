"""The built-in backbones' plugin, registered through the ``fdseg`` entry point group
exactly like a third-party plugin (``[project.entry-points.fdseg]`` in pyproject.toml)."""

from __future__ import annotations

from fdseg_backbones._spec import unet_spec
from fdseg_backbones.monai_nets import monai_specs
from fdseg_backbones.nnunet_nets import nnunet_specs
from fdseg_backbones.paper_unet3d import build_paper_unet3d
from fdseg_backbones.plainunet import build_plainunet
from fdseg_backbones.unet3d import build_unet3d
from fdseg_core.plugins import BackboneSpec, hookimpl

__all__ = ["fdseg_register_backbones"]


#: The built-in networks of this package: (name, builder, size divisor, description,
#: default options), as :func:`~fdseg_backbones._spec.unet_spec` takes them.
_BUILT_IN = (
    (
        "unet3d",
        build_unet3d,
        8,
        "Residual U-Net of Isensee et al. 2017, the paper's backbone family "
        "(4 levels, 8 base filters, deep supervision)",
        {"levels": 4, "base_filters": 8},
    ),
    (
        "paper_unet3d",
        build_paper_unet3d,
        4,
        "The paper's public-code network, layer for layer (UNet3D_3: "
        "3 levels, 8 base filters, dropout 0.6)",
        {"base_filters": 8, "dropout": 0.6},
    ),
    (
        "plainunet",
        build_plainunet,
        8,
        "Plain U-Net of Cicek et al. 2016 (4 levels, 16 base filters)",
        {"levels": 4, "base_filters": 16},
    ),
)


@hookimpl
def fdseg_register_backbones() -> list[BackboneSpec]:
    """unet3d, paper_unet3d (the paper's own network), plainunet, and MONAI's and
    nnU-Net's networks when installed."""
    return [*(unet_spec(*row) for row in _BUILT_IN), *monai_specs(), *nnunet_specs()]
