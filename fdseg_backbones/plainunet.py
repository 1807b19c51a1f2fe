"""A plain U-Net after Çiçek et al. (2016), "3D U-Net: Learning Dense Volumetric
Segmentation from Sparse Annotation" (MICCAI): two conv-norm-activation blocks per
level, max pooling down, transposed convolutions up, skip concatenation."""

from __future__ import annotations

import torch
from torch import nn

from fdseg_backbones._layers import FusionPointsMixin, check_dims, conv, norm
from fdseg_core.errors import InputError

__all__ = ["PlainUNet", "build_plainunet"]


class _Double(nn.Sequential):
    def __init__(self, dims: int, cin: int, cout: int) -> None:
        super().__init__(
            conv(dims, cin, cout),
            norm(dims, cout),
            nn.LeakyReLU(0.01),
            conv(dims, cout, cout),
            norm(dims, cout),
            nn.LeakyReLU(0.01),
        )


class PlainUNet(FusionPointsMixin, nn.Module):
    """Plain encoder-decoder U-Net.

    Args:
        in_channels: Input channels.
        out_channels: Output channels (logits).
        spatial_dims: 2 or 3.
        base_filters: Filters of the first level, doubled per level.
        levels: Resolution levels (input divisible by ``2 ** (levels - 1)``).

    Fusion points: ``"stem"`` is the first convolution (``base_filters`` channels);
    ``"decoder"`` the last transposed convolution's output, at full resolution before
    the level-1 skip is concatenated and the last double convolution runs.

    Shapes:
        ``(N, in_channels, *spatial)`` -> ``(N, out_channels, *spatial)``.
    """

    def __init__(
        self,
        in_channels: int,
        out_channels: int,
        spatial_dims: int = 3,
        *,
        base_filters: int = 16,
        levels: int = 4,
    ) -> None:
        super().__init__()
        check_dims(spatial_dims)
        if levels < 2:
            raise InputError(f"levels must be >= 2, got {levels}")
        d = spatial_dims
        self.size_divisor = 2 ** (levels - 1)
        f = [base_filters * 2**i for i in range(levels)]
        self.stem_channels = f[0]
        self.decoder_channels = f[0]
        pool = nn.MaxPool3d if d == 3 else nn.MaxPool2d
        upconv = nn.ConvTranspose3d if d == 3 else nn.ConvTranspose2d
        self.enc = nn.ModuleList(
            [_Double(d, in_channels, f[0])] + [_Double(d, f[i - 1], f[i]) for i in range(1, levels)]
        )
        self.pool = pool(2)
        self.ups = nn.ModuleList(
            [upconv(f[i], f[i - 1], 2, stride=2) for i in range(levels - 1, 0, -1)]
        )
        self.dec = nn.ModuleList(
            [_Double(d, 2 * f[i - 1], f[i - 1]) for i in range(levels - 1, 0, -1)]
        )
        self.head = conv(d, f[0], out_channels, 1, bias=True)

    def forward_stem(self, x: torch.Tensor) -> torch.Tensor:
        """The first convolution."""
        return self.enc[0][0](x)

    def forward_head(self, features: torch.Tensor, skip: torch.Tensor) -> torch.Tensor:
        """The last double convolution on ``[features, skip]`` and the 1x1 head."""
        return self.head(self.dec[-1](torch.cat([features, skip], dim=1)))

    def _decode(self, features: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """``(last upsampling's output, level-1 skip)`` from the first convolution's output."""
        x = features
        for layer in list(self.enc[0])[1:]:
            x = layer(x)
        skips = [x]
        for block in self.enc[1:]:
            x = block(self.pool(x))
            skips.append(x)
        x = skips.pop()
        for up, dec in zip(self.ups[:-1], self.dec[:-1], strict=True):
            x = dec(torch.cat([up(x), skips.pop()], dim=1))
        return self.ups[-1](x), skips.pop()


def build_plainunet(
    in_channels: int, out_channels: int, spatial_dims: int = 3, **options
) -> PlainUNet:
    """Builder of the ``plainunet`` backbone."""
    return PlainUNet(in_channels, out_channels, spatial_dims, **options)
