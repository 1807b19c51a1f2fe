"""The residual U-Net of Isensee et al. (2017), as the paper's public code uses it.

F. Isensee et al., "Brain Tumor Segmentation and Radiomics Survival Prediction:
Contribution to the BRATS 2017 Challenge" (arXiv 1802.10508); the variant found in
MedicalZooPytorch (``Unet3D``), which Fu et al. (arXiv 2302.12980) use as backbone:
instance norm, leaky ReLU, residual context blocks with channel dropout, a
localisation path with nearest-neighbour upsampling, and deep-supervision
segmentation outputs upsampled and summed at full resolution.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from fdseg_backbones._layers import FusionPointsMixin, check_dims, conv, dropout, norm
from fdseg_core.errors import InputError

__all__ = ["ResidualUNet", "build_unet3d"]


class _NormAct(nn.Sequential):
    def __init__(self, dims: int, channels: int) -> None:
        super().__init__(norm(dims, channels), nn.LeakyReLU(0.01, inplace=False))


class _Context(nn.Module):
    """Residual context module: (norm-lrelu-conv, dropout, norm-lrelu-conv) + identity."""

    def __init__(self, dims: int, channels: int, p: float) -> None:
        super().__init__()
        self.body = nn.Sequential(
            _NormAct(dims, channels),
            conv(dims, channels, channels),
            dropout(dims, p),
            _NormAct(dims, channels),
            conv(dims, channels, channels),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + self.body(x)


class _Up(nn.Module):
    """Upsampling module: norm-lrelu, nearest x2, conv3x3 halving channels, norm-lrelu."""

    def __init__(self, dims: int, cin: int, cout: int) -> None:
        super().__init__()
        self.pre = _NormAct(dims, cin)
        self.conv = conv(dims, cin, cout)
        self.post = _NormAct(dims, cout)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = F.interpolate(self.pre(x), scale_factor=2, mode="nearest")
        return self.post(self.conv(x))


class _Localize(nn.Sequential):
    """Localisation module: conv3x3-norm-lrelu, then conv1x1 halving the channels."""

    def __init__(self, dims: int, cin: int, cout: int) -> None:
        super().__init__(conv(dims, cin, cin), _NormAct(dims, cin), conv(dims, cin, cout, 1))


class ResidualUNet(FusionPointsMixin, nn.Module):
    """Residual U-Net with deep supervision summed at full resolution.

    Args:
        in_channels: Input channels.
        out_channels: Output channels (classes); logits, no final activation.
        spatial_dims: 2 or 3.
        base_filters: Filters of the first level (the paper: 8); doubled per level.
        levels: Resolution levels (the input must be divisible by ``2 ** (levels - 1)``).
        dropout: Channel dropout in the context modules (the paper's code: 0.6).
        deep_supervision: Sum 1x1 segmentation outputs of the coarser decoder levels,
            upsampled, into the output (Isensee et al.).

    Fusion points (:data:`fdseg_core.plugins.FUSION_POINTS`): ``"stem"`` is the first
    convolution (``stem_channels = base_filters``); ``"decoder"`` is the output of the
    last upsampling module, at full resolution before it is concatenated with the
    level-1 skip and passed through the last localisation stage
    (``decoder_channels = base_filters``), where the paper's late model fuses.

    Shapes:
        ``(N, in_channels, *spatial)`` -> ``(N, out_channels, *spatial)``.
    """

    def __init__(
        self,
        in_channels: int,
        out_channels: int,
        spatial_dims: int = 3,
        *,
        base_filters: int = 8,
        levels: int = 4,
        dropout: float = 0.3,
        deep_supervision: bool = True,
    ) -> None:
        super().__init__()
        check_dims(spatial_dims)
        if levels < 2:
            raise InputError(f"levels must be >= 2, got {levels}")
        if base_filters < 1:
            raise InputError(f"base_filters must be >= 1, got {base_filters}")
        if not 0.0 <= dropout < 1.0:
            raise InputError(f"dropout must lie in [0, 1), got {dropout}")
        d = spatial_dims
        f = [base_filters * 2**i for i in range(levels)]
        self.levels = levels
        #: inputs must be multiples of this (overrides the spec's divisor)
        self.size_divisor = 2 ** (levels - 1)
        #: channels of the features at the "stem" and "decoder" fusion points
        self.stem_channels = f[0]
        self.decoder_channels = f[0]
        self.deep_supervision = deep_supervision
        self.stem = conv(d, in_channels, f[0])
        self.down = nn.ModuleList(
            [nn.Identity()] + [conv(d, f[i - 1], f[i], stride=2) for i in range(1, levels)]
        )
        self.context = nn.ModuleList([_Context(d, f[i], dropout) for i in range(levels)])
        self.context_out = nn.ModuleList([_NormAct(d, f[i]) for i in range(levels)])
        # decoder: from the bottom level up
        self.up = nn.ModuleList([_Up(d, f[i], f[i - 1]) for i in range(levels - 1, 0, -1)])
        self.localize = nn.ModuleList(
            [_Localize(d, 2 * f[i - 1], f[i - 1]) for i in range(levels - 1, 1, -1)]
        )
        self.final = nn.Sequential(conv(d, 2 * f[0], 2 * f[0]), _NormAct(d, 2 * f[0]))
        self.head = conv(d, 2 * f[0], out_channels, 1)
        self.ds_heads = nn.ModuleList(
            [conv(d, f[i - 1], out_channels, 1) for i in range(levels - 1, 1, -1)]
            if deep_supervision
            else []
        )

    def forward_stem(self, x: torch.Tensor) -> torch.Tensor:
        """The first convolution: ``(N, in, *spatial)`` -> ``(N, base_filters, *spatial)``."""
        return self.stem(x)

    def forward_head(self, features: torch.Tensor, context: tuple) -> torch.Tensor:
        """The last stage: concatenate the level-1 skip, conv-norm-lrelu, 1x1 head, plus
        the upsampled deep-supervision outputs."""
        skip, ds = context
        logits = self.head(self.final(torch.cat([features, skip], dim=1)))
        if ds is not None:
            logits = logits + F.interpolate(ds, scale_factor=2, mode="nearest")
        return logits

    def _decode(self, out: torch.Tensor) -> tuple[torch.Tensor, tuple]:
        """Full-resolution decoder features before the last localisation stage, from the
        stem's output: ``(features (N, base_filters, *spatial), (level-1 skip, summed
        deep-supervision outputs))``."""
        skips = []
        for i in range(self.levels):
            out = self.context_out[i](self.context[i](self.down[i](out)))
            skips.append(out)
        out = skips[-1]
        ds = None
        last = len(self.up) - 1
        for j, up in enumerate(self.up):
            if j == last:
                return up(out), (skips[0], ds)
            out = self.localize[j](torch.cat([up(out), skips[-2 - j]], dim=1))
            if self.deep_supervision:
                seg = self.ds_heads[j](out)
                ds = seg if ds is None else seg + F.interpolate(ds, scale_factor=2, mode="nearest")
        raise AssertionError("unreachable: levels >= 2 gives at least one upsampling")


def build_unet3d(
    in_channels: int, out_channels: int, spatial_dims: int = 3, **options
) -> ResidualUNet:
    """Builder of the ``unet3d`` backbone (see :class:`ResidualUNet` for options)."""
    return ResidualUNet(in_channels, out_channels, spatial_dims, **options)
