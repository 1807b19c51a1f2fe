"""A minimal fdseg backbone plugin: a two-level encoder-decoder.

Install it (``pip install ./examples/fdseg-backbone-example``) and it appears in
``fdseg backbones`` and trains with ``fdseg train --backbone tinynet``.
"""

from __future__ import annotations

import torch
from torch import nn

from fdseg_core import BackboneSpec, hookimpl

__all__ = ["TinyNet", "build_tinynet", "fdseg_register_backbones"]


class TinyNet(nn.Module):
    """conv -> stride-2 conv -> upsample -> concat -> 1x1 head; inputs divisible by 2.

    It offers the ``"decoder"`` fusion point, so that late fusion happens where the
    paper's late model fuses (the upsampled decoder features, before the last stage):
    a ``decoder_channels`` attribute and the two halves of ``forward``. A backbone that
    does not offer it is fused at its output by a generic head instead.
    """

    def __init__(
        self, in_channels: int, out_channels: int, spatial_dims: int = 3, width: int = 8
    ) -> None:
        super().__init__()
        conv = nn.Conv3d if spatial_dims == 3 else nn.Conv2d
        self.enc = nn.Sequential(conv(in_channels, width, 3, padding=1), nn.ReLU())
        self.down = nn.Sequential(conv(width, 2 * width, 3, stride=2, padding=1), nn.ReLU())
        self.up = nn.Upsample(scale_factor=2, mode="nearest")
        self.head = conv(3 * width, out_channels, 1)
        self.decoder_channels = 2 * width  # channels of forward_features' output

    def forward_features(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """The decoder features at full resolution, and what the last stage needs."""
        skip = self.enc(x)
        return self.up(self.down(skip)), skip

    def forward_head(self, features: torch.Tensor, skip: torch.Tensor) -> torch.Tensor:
        """The last stage: concatenate the skip, 1x1 head."""
        return self.head(torch.cat([skip, features], dim=1))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.forward_head(*self.forward_features(x))


def build_tinynet(in_channels: int, out_channels: int, spatial_dims: int, **options) -> nn.Module:
    return TinyNet(in_channels, out_channels, spatial_dims, **options)


@hookimpl
def fdseg_register_backbones():
    return [
        BackboneSpec(
            name="tinynet",
            builder=build_tinynet,
            spatial_dims=(2, 3),
            size_divisor=2,
            description="two-level example network",
            fusion_points=("decoder",),
        )
    ]
