"""The spec every built-in U-Net shares: 2D and 3D inputs, both fusion points."""

from __future__ import annotations

from typing import Any

from fdseg_core.choices import FUSION_POINTS
from fdseg_core.plugins.spec import BackboneBuilder, BackboneSpec

__all__ = ["unet_spec"]


def unet_spec(
    name: str,
    builder: BackboneBuilder,
    size_divisor: int,
    description: str,
    default_options: dict[str, Any] | None = None,
) -> BackboneSpec:
    """The spec of a built-in U-Net, which takes 2D and 3D inputs and offers every fusion
    point (:data:`~fdseg_core.choices.FUSION_POINTS`).

    Args:
        name: Backbone name (``--backbone``).
        builder: ``builder(in_channels, out_channels, spatial_dims, **options)``.
        size_divisor: Spatial sizes the network accepts are multiples of this.
        description: One line for ``fdseg backbones``.
        default_options: Keyword options the builder gets unless overridden.

    Returns:
        The :class:`~fdseg_core.plugins.spec.BackboneSpec`.
    """
    return BackboneSpec(
        name=name,
        builder=builder,
        spatial_dims=(2, 3),
        size_divisor=size_divisor,
        description=description,
        default_options=dict(default_options or {}),
        fusion_points=FUSION_POINTS,
    )
