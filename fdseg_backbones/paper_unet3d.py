"""The network of the paper's public code (Fu et al., arXiv 2302.12980), layer for layer.

The public repository (github.com/GuanghuiFU/frequency_disentangled_learning,
``lib/medzoo/Unet3D_3.py`` and ``Unet3D_disentangle_{early,late}_fuse.py``) trains a
three-level variant of the residual U-Net of Isensee et al. (2017) as it appears in
MedicalZooPytorch. This module restates that network from reading the code (nothing is
copied), keeping its attribute names so that ``docs/network.md`` can map every layer,
and keeping its peculiarities, because they are what the paper's numbers were
obtained with:

* instance norms without affine parameters, leaky ReLU (slope 0.01), channel dropout
  ``p = 0.6`` after the second convolution of level 1 and between the two
  convolutions of levels 2 and 3;
* the level-2 and level-3 context blocks apply **one** norm-lrelu-conv module twice
  (shared weights), with the dropout in between;
* the bottom of the decoder concatenates the level-3 context with itself;
* two 1x1 heads (``conv3d_l4`` and ``ds3_1x1_conv3d``) read the same features and
  are summed (the only "deep supervision" left in the three-level network);
* convolutions have no bias; upsampling is nearest-neighbour.

Fusion points (:data:`fdseg_core.plugins.FUSION_POINTS`), where the paper's two
frequency-disentangled models fuse: ``"stem"`` is ``conv3d_c1_1`` (the early model
runs it on the high band, ``conv3d_c1_low`` on the low band, and fuses right after);
``"decoder"`` is the output of ``norm_lrelu_upscale_conv_norm_lrelu_l3`` at full
resolution (the late model fuses it with ``conv3d_c1_low(low)``, then concatenates
``context_1`` and runs ``conv_norm_lrelu_l4`` and the heads). The paper's
early/late modules also build level-4/5 layers that their ``forward`` never calls;
they are not built here (``docs/network.md`` counts them).
"""

from __future__ import annotations

import torch
from torch import nn

from fdseg_backbones._layers import FusionPointsMixin, check_dims, conv
from fdseg_core.errors import InputError

__all__ = ["PaperUNet3D", "build_paper_unet3d"]


def _norm(dims: int, channels: int) -> nn.Module:
    # the paper's nn.InstanceNorm3d(c): no affine parameters, no running statistics
    return (nn.InstanceNorm3d if dims == 3 else nn.InstanceNorm2d)(channels)


def _lrelu() -> nn.Module:
    return nn.LeakyReLU(0.01)


class PaperUNet3D(FusionPointsMixin, nn.Module):
    """``UNet3D_3`` of the paper's public code (three levels, base 8 filters).

    Args:
        in_channels: Input channels.
        out_channels: Classes (logits, no final activation).
        spatial_dims: 3 (the paper), or 2 with the same layers in 2D.
        base_filters: Filters of level 1 (the paper: 8); 2x and 4x at levels 2 and 3.
        dropout: Channel dropout probability (the paper: 0.6).

    Shapes:
        ``(N, in_channels, *spatial)`` -> ``(N, out_channels, *spatial)``, spatial
        sizes multiples of 4.
    """

    def __init__(
        self,
        in_channels: int,
        out_channels: int,
        spatial_dims: int = 3,
        *,
        base_filters: int = 8,
        dropout: float = 0.6,
    ) -> None:
        super().__init__()
        check_dims(spatial_dims)
        if base_filters < 1:
            raise InputError(f"base_filters must be >= 1, got {base_filters}")
        if not 0.0 <= dropout < 1.0:
            raise InputError(f"dropout must lie in [0, 1), got {dropout}")
        d, f = spatial_dims, base_filters
        self.size_divisor = 4
        self.stem_channels = f
        self.decoder_channels = f
        self.lrelu = _lrelu()
        drop = nn.Dropout3d if d == 3 else nn.Dropout2d
        self.dropout3d = drop(dropout) if dropout > 0 else nn.Identity()

        def norm_lrelu_conv(c: int) -> nn.Sequential:
            return nn.Sequential(_norm(d, c), _lrelu(), conv(d, c, c))

        def conv_norm_lrelu(c: int) -> nn.Sequential:
            return nn.Sequential(conv(d, c, c), _norm(d, c), _lrelu())

        def norm_lrelu_upscale_conv_norm_lrelu(cin: int, cout: int) -> nn.Sequential:
            return nn.Sequential(
                _norm(d, cin),
                _lrelu(),
                nn.Upsample(scale_factor=2, mode="nearest"),
                conv(d, cin, cout),
                _norm(d, cout),
                _lrelu(),
            )

        # level 1 (full resolution)
        self.conv3d_c1_1 = conv(d, in_channels, f)
        self.conv3d_c1_2 = conv(d, f, f)
        self.lrelu_conv_c1 = nn.Sequential(_lrelu(), conv(d, f, f))
        self.inorm3d_c1 = _norm(d, f)
        # level 2 (1/2)
        self.conv3d_c2 = conv(d, f, 2 * f, stride=2)
        self.norm_lrelu_conv_c2 = norm_lrelu_conv(2 * f)  # applied twice
        self.inorm3d_c2 = _norm(d, 2 * f)
        # level 3 (1/4)
        self.conv3d_c3 = conv(d, 2 * f, 4 * f, stride=2)
        self.norm_lrelu_conv_c3 = norm_lrelu_conv(4 * f)  # applied twice
        self.inorm3d_c3 = _norm(d, 4 * f)
        # localisation pathway
        self.conv_norm_lrelu_l2 = conv_norm_lrelu(8 * f)
        self.conv3d_l2 = conv(d, 8 * f, 4 * f, 1)
        self.norm_lrelu_upscale_conv_norm_lrelu_l2 = norm_lrelu_upscale_conv_norm_lrelu(
            4 * f, 2 * f
        )
        self.conv_norm_lrelu_l3 = conv_norm_lrelu(4 * f)
        self.conv3d_l3 = conv(d, 4 * f, 2 * f, 1)
        self.norm_lrelu_upscale_conv_norm_lrelu_l3 = norm_lrelu_upscale_conv_norm_lrelu(2 * f, f)
        self.conv_norm_lrelu_l4 = conv_norm_lrelu(2 * f)
        self.conv3d_l4 = conv(d, 2 * f, out_channels, 1)
        self.ds3_1x1_conv3d = conv(d, 2 * f, out_channels, 1)

    def _context(self, out: torch.Tensor, down: nn.Module, block: nn.Module, norm: nn.Module):
        out = down(out)
        residual = out
        out = block(self.dropout3d(block(out)))  # one module, applied twice
        return self.lrelu(norm(out + residual))

    def forward_stem(self, x: torch.Tensor) -> torch.Tensor:
        """``conv3d_c1_1``: ``(N, in, *spatial)`` -> ``(N, base_filters, *spatial)``."""
        return self.conv3d_c1_1(x)

    def forward_head(self, features: torch.Tensor, context_1: torch.Tensor) -> torch.Tensor:
        """The last stage: concatenate ``context_1``, ``conv_norm_lrelu_l4``, and the sum
        of the two 1x1 heads."""
        out = self.conv_norm_lrelu_l4(torch.cat([features, context_1], dim=1))
        return self.conv3d_l4(out) + self.ds3_1x1_conv3d(out)

    def _decode(self, out: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """``(features, context_1)`` from ``conv3d_c1_1``'s output: the full-resolution
        decoder features (output of ``norm_lrelu_upscale_conv_norm_lrelu_l3``,
        ``base_filters`` channels) and the level-1 context the last stage concatenates."""
        # level 1 context: residual around lrelu-conv-dropout-lrelu-conv
        residual_1 = out
        out = self.conv3d_c1_2(self.lrelu(out))
        out = self.lrelu_conv_c1(self.dropout3d(out)) + residual_1
        context_1 = self.lrelu(out)
        out = self.lrelu(self.inorm3d_c1(out))
        context_2 = self._context(out, self.conv3d_c2, self.norm_lrelu_conv_c2, self.inorm3d_c2)
        context_3 = self._context(
            context_2, self.conv3d_c3, self.norm_lrelu_conv_c3, self.inorm3d_c3
        )
        out = torch.cat([context_3, context_3], dim=1)  # the code concatenates it with itself
        out = self.conv3d_l2(self.conv_norm_lrelu_l2(out))
        out = self.norm_lrelu_upscale_conv_norm_lrelu_l2(out)
        out = torch.cat([out, context_2], dim=1)
        out = self.conv3d_l3(self.conv_norm_lrelu_l3(out))
        return self.norm_lrelu_upscale_conv_norm_lrelu_l3(out), context_1


def build_paper_unet3d(
    in_channels: int, out_channels: int, spatial_dims: int = 3, **options
) -> PaperUNet3D:
    """Builder of the ``paper_unet3d`` backbone (see :class:`PaperUNet3D`)."""
    return PaperUNet3D(in_channels, out_channels, spatial_dims, **options)
