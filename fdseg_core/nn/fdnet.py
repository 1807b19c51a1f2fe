"""The frequency-disentangled network around any registered backbone."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from fdseg_core.bands import band_fuse, band_split, band_width
from fdseg_core.plugins import BackboneSpec, get_backbone

__all__ = ["FrequencyDisentangledNet", "FUSIONS"]

FUSIONS = ("none", "early", "late")


def _conv(spatial_dims: int, cin: int, cout: int, kernel: int = 3, bias: bool = False):
    cls = nn.Conv3d if spatial_dims == 3 else nn.Conv2d
    return cls(cin, cout, kernel, padding=kernel // 2, bias=bias)


class FrequencyDisentangledNet(nn.Module):
    """Frequency-disentangled segmentation (Fu et al., arXiv 2302.12980) around a backbone.

    The input is split into its low band (resampled to a small grid) and the rest
    (:func:`~fdseg_core.bands.band_split`) inside ``forward``, on the model's device,
    differentiably. Two stems learn features from each; the features are fused in the
    frequency domain (:func:`~fdseg_core.bands.band_fuse`: the low features' spectrum
    replaces the band of the high features' spectrum).

    * ``fusion="none"``: the plain backbone (the baseline).
    * ``fusion="early"``: high stem (conv3x3) on ``high``, low stem (conv3x3) on ``low``
      at its low resolution, ``band_fuse``, then the backbone with
      ``in_channels=stem_channels``. The paper's early-fusion model fuses right after
      its first convolutions (``conv3d_c1_1`` on the high image, ``conv3d_c1_low`` on
      the low image) and continues with the U-Net.
    * ``fusion="late"``: the backbone runs on ``high`` and outputs ``stem_channels``
      feature maps (its last layer is a 1x1 projection, so these are linear maps of its
      last decoder features); they are fused with the low stem's features by
      ``band_fuse``, and a head (conv3x3-leaky ReLU, then 1x1 conv) makes the
      logits. The paper's late-fusion model fuses the full-resolution decoder features
      before its last localisation stage (conv-norm-lrelu and the 1x1 heads). The head
      has no instance norm: on the backbone's projected output, one made the late model
      unable to fit even a single batch (docs/network.md). Using the
      backbone's output as features needs nothing from a plugin beyond the
      :class:`~fdseg_core.plugins.BackboneSpec` contract, so every backbone works.

    Inputs of any size are padded (edge replication) up to the backbone's size
    divisor before the split, and the logits are cropped back.

    Args:
        backbone: Registered backbone name or a :class:`BackboneSpec`.
        in_channels: Image channels.
        out_channels: Classes (logits, no final activation).
        spatial_dims: 2 or 3.
        fusion: ``"none"``, ``"early"`` or ``"late"``.
        beta: Relative width of the low band.
        dims: Band dims of the input tensor; ``None``: the first two spatial dims, ``(2, 3)``.
        layout: ``"centered"`` (the paper's text) or ``"reference"`` (its public code).
        backend: Band operator backend (``"auto"``, ``"torch"``, ``"matmul"``, ``"triton"``).
        stem_channels: Channels of both stems (the paper: 8, its base filters).
        **backbone_options: Passed to the backbone builder.

    Shapes:
        ``(N, in_channels, *spatial)`` -> ``(N, out_channels, *spatial)``.

    Raises:
        ValueError: Bad options, an unknown backbone, or (in ``forward``) an input too
            small for ``k = int(n * beta) >= 1`` on a band dim.
    """

    def __init__(
        self,
        backbone: str | BackboneSpec,
        in_channels: int,
        out_channels: int,
        *,
        spatial_dims: int = 3,
        fusion: str = "early",
        beta: float = 0.1,
        dims: Sequence[int] | None = None,
        layout: str = "centered",
        backend: str = "auto",
        stem_channels: int = 8,
        **backbone_options: Any,
    ) -> None:
        super().__init__()
        if fusion not in FUSIONS:
            raise ValueError(f"fusion must be one of {list(FUSIONS)}, got {fusion!r}")
        if spatial_dims not in (2, 3):
            raise ValueError(f"spatial_dims must be 2 or 3, got {spatial_dims!r}")
        if not 0.0 < float(beta) < 1.0:
            raise ValueError(f"beta must lie in (0, 1), got {beta!r}")
        if layout not in ("centered", "reference"):
            raise ValueError(f"layout must be 'centered' or 'reference', got {layout!r}")
        if (
            isinstance(stem_channels, bool)
            or not isinstance(stem_channels, int)
            or stem_channels < 1
        ):
            raise ValueError(f"stem_channels must be a positive integer, got {stem_channels!r}")
        self.spec = get_backbone(backbone)
        self.fusion = fusion
        self.beta = float(beta)
        self.dims = tuple(dims) if dims is not None else (2, 3)
        self.layout = layout
        self.backend = backend
        self.spatial_dims = spatial_dims
        d = spatial_dims
        if fusion == "none":
            self.backbone = self.spec.build(in_channels, out_channels, d, **backbone_options)
        elif fusion == "early":
            self.high_stem = _conv(d, in_channels, stem_channels)
            self.low_stem = _conv(d, in_channels, stem_channels)
            self.backbone = self.spec.build(stem_channels, out_channels, d, **backbone_options)
        else:
            self.low_stem = _conv(d, in_channels, stem_channels)
            self.backbone = self.spec.build(in_channels, stem_channels, d, **backbone_options)
            # no instance norm here: after the backbone's 1x1 projection it stalled
            # training (docs/network.md, "Why the late head has no norm")
            self.head = nn.Sequential(
                _conv(d, stem_channels, stem_channels),
                nn.LeakyReLU(0.01),
                _conv(d, stem_channels, out_channels, 1, bias=True),
            )
        self.size_divisor = int(getattr(self.backbone, "size_divisor", self.spec.size_divisor))

    def _bands(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        return band_split(x, self.beta, dims=self.dims, layout=self.layout, backend=self.backend)

    def _fuse(self, low: torch.Tensor, high: torch.Tensor) -> torch.Tensor:
        # under autocast the two branches can end in different dtypes (CUDA float16 AMP:
        # the stem's convolution gives float16, a backbone whose last op autocasts to
        # float32, e.g. a trilinear upsampling, gives float32): fuse in the wider one
        if low.dtype != high.dtype:
            common = torch.promote_types(low.dtype, high.dtype)
            low, high = low.to(common), high.to(common)
        return band_fuse(
            low, high, self.beta, dims=self.dims, layout=self.layout, backend=self.backend
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if x.ndim != self.spatial_dims + 2:
            raise ValueError(
                f"expected input (N, C, {'D, H, W' if self.spatial_dims == 3 else 'H, W'})"
                f", got shape {tuple(x.shape)}"
            )
        spatial = x.shape[2:]
        m = self.size_divisor
        pad = [(-s) % m for s in spatial]
        if any(pad):
            flat = [p for extra in reversed(pad) for p in (0, extra)]
            x = F.pad(x, flat, mode="replicate")
        if self.fusion != "none":
            for d in self.dims:
                if band_width(x.shape[d], self.beta) < 1:
                    raise ValueError(
                        f"input size {x.shape[d]} on dim {d} keeps no low-band sample at "
                        f"beta={self.beta}; need a size >= {int(1 / self.beta) + 1}"
                    )
        if self.fusion == "none":
            out = self.backbone(x)
        elif self.fusion == "early":
            low, high = self._bands(x)
            out = self.backbone(self._fuse(self.low_stem(low), self.high_stem(high)))
        else:
            low, high = self._bands(x)
            out = self.head(self._fuse(self.low_stem(low), self.backbone(high)))
        if any(pad):
            out = out[(slice(None), slice(None), *(slice(0, s) for s in spatial))]
        return out
