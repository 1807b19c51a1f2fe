"""The frequency-disentangled network around any registered backbone."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from fdseg_core.bands import band_fuse, band_split, band_width, low_band_shape_at, min_band_size
from fdseg_core.bands.dispatch import check_names
from fdseg_core.choices import BANDS as INPUT_BANDS
from fdseg_core.choices import (
    DEFAULT_BAND_DIMS,
    DEFAULT_BETA,
    DEFAULT_KERNEL,
    FUSION_AT,
    FUSIONS,
    LAYOUTS,
)
from fdseg_core.errors import InputError
from fdseg_core.plugins import BackboneSpec, check_fusion_point, get_backbone

# The choices of the constructor, defined once in fdseg_core.choices and re-exported here:
# FUSIONS, FUSION_AT (where fusion happens: the backbone's fusion points or the generic
# stems and head) and INPUT_BANDS (who splits the input: the model, or the data pipeline
# once per volume, the input then holding ``[U(low), high]`` channels).
__all__ = ["FrequencyDisentangledNet", "FUSIONS", "FUSION_AT", "INPUT_BANDS"]


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
    * ``fusion="early"``, at the backbone's ``"stem"`` fusion point (when it declares
      one; ``docs/network.md``): the backbone's own first convolution runs on
      ``high``, a low stem (conv3x3, no bias) on ``low`` at its low resolution,
      ``band_fuse``, then the rest of the backbone. This is the paper's early model
      (``conv3d_c1_1`` on the high image, ``conv3d_c1_low`` on the low image, fused,
      then the U-Net). Generic (backbones without the point, or
      ``fusion_at="generic"``): high and low stems of ``stem_channels`` channels, fused,
      then the whole backbone with ``in_channels=stem_channels``.
    * ``fusion="late"``, at the backbone's ``"decoder"`` fusion point: the backbone
      runs on ``high`` up to its last full-resolution decoder features, which are
      fused with the low stem's features, then its own last stage makes the logits:
      the paper's late model. Generic: the backbone outputs ``stem_channels`` maps (a
      1x1 projection of its last decoder features), they are fused with the low
      stem's, and a head (conv3x3-leaky ReLU, then 1x1 conv) makes the logits. The
      generic head has no instance norm: on the backbone's projected output, one made
      the late model unable to fit even a single batch (docs/network.md).

    Inputs of any size are padded (edge replication) up to the backbone's size
    divisor before the split, and the logits are cropped back.

    Args:
        backbone: Registered backbone name or a :class:`BackboneSpec`.
        in_channels: Image channels.
        out_channels: Classes (logits, no final activation).
        spatial_dims: 2 or 3.
        fusion: ``"none"``, ``"early"`` or ``"late"`` (the default here: the class
            builds a frequency-disentangled network unless told otherwise).
            ``fdseg train``'s default is a separate, measured choice
            (:attr:`fdseg_core.train.TrainConfig.fusion`).
        beta: Relative width of the low band.
        dims: Band dims of the input tensor; ``None``: the first two spatial dims, ``(2, 3)``.
        layout: ``"centered"`` (the paper's text) or ``"reference"`` (its public code).
        backend: Band operator backend (``"auto"``, ``"torch"``, ``"matmul"``, ``"triton"``).
        kernel: Design of the Triton kernels when they serve the band operators
            (``"per_axis"``, ``"fused"``: two-pass, or ``"auto"``); the same numbers up
            to rounding.
        stem_channels: Channels of the generic stems and head (the paper: 8, its base
            filters); at a backbone's fusion point the low stem has the channels of the
            features fused there instead.
        fusion_at: ``"auto"`` (the backbone's fusion points when declared) or
            ``"generic"``.
        input_bands: ``"model"`` (split inside ``forward``) or ``"volume"``: the data
            pipeline split the whole volume and the input holds ``2 * in_channels``
            channels, ``U(low)`` (the low band at full resolution) then ``high``
            (:func:`fdseg_core.data.volume_bands`); the low stem then gets ``U(low)``
            averaged onto the band grid of the input (``adaptive_avg_pool``).
        **backbone_options: Passed to the backbone builder.

    Attributes:
        fused_at: Where the bands are fused: ``None`` (baseline), ``"input stems"``,
            ``"stem"``, ``"decoder"`` or ``"output head"``.

    Shapes:
        ``(N, in_channels, *spatial)`` (``2 * in_channels`` with
        ``input_bands="volume"``) -> ``(N, out_channels, *spatial)``.

    Raises:
        ValueError: Bad options, an unknown backbone, a backbone that declares a fusion
            point it does not implement, or (in ``forward``) an input too small for
            ``k = int(n * beta) >= 1`` on a band dim.
    """

    def __init__(
        self,
        backbone: str | BackboneSpec,
        in_channels: int,
        out_channels: int,
        *,
        spatial_dims: int = 3,
        fusion: str = "late",
        beta: float = DEFAULT_BETA,
        dims: Sequence[int] | None = None,
        layout: str = "centered",
        backend: str = "auto",
        kernel: str = DEFAULT_KERNEL,
        stem_channels: int = 8,
        fusion_at: str = "auto",
        input_bands: str = "model",
        **backbone_options: Any,
    ) -> None:
        super().__init__()
        if fusion not in FUSIONS:
            raise InputError(f"fusion must be one of {list(FUSIONS)}, got {fusion!r}")
        if spatial_dims not in (2, 3):
            raise InputError(f"spatial_dims must be 2 or 3, got {spatial_dims!r}")
        if not 0.0 < float(beta) < 1.0:
            raise InputError(f"beta must lie in (0, 1), got {beta!r}")
        if layout not in LAYOUTS:
            raise InputError(f"layout must be 'centered' or 'reference', got {layout!r}")
        if (
            isinstance(stem_channels, bool)
            or not isinstance(stem_channels, int)
            or stem_channels < 1
        ):
            raise InputError(f"stem_channels must be a positive integer, got {stem_channels!r}")
        if fusion_at not in FUSION_AT:
            raise InputError(f"fusion_at must be one of {list(FUSION_AT)}, got {fusion_at!r}")
        if input_bands not in INPUT_BANDS:
            raise InputError(f"input_bands must be one of {list(INPUT_BANDS)}, got {input_bands!r}")
        if input_bands == "volume" and fusion == "none":
            raise InputError("input_bands='volume' needs a fusion ('early' or 'late'), got 'none'")
        self.spec = get_backbone(backbone)
        self.fusion = fusion
        self.beta = float(beta)
        self.dims = tuple(dims) if dims is not None else DEFAULT_BAND_DIMS
        self.layout = layout
        check_names(layout, backend, kernel)
        self.backend = backend
        self.kernel = kernel
        self.spatial_dims = spatial_dims
        self.in_channels = in_channels
        self.input_bands = input_bands
        d = spatial_dims
        point = {"early": "stem", "late": "decoder"}.get(fusion)
        native = fusion_at == "auto" and point in self.spec.fusion_points
        if fusion == "none":
            self.backbone = self.spec.build(in_channels, out_channels, d, **backbone_options)
            self.fused_at = None
        elif native:
            self.backbone = self.spec.build(in_channels, out_channels, d, **backbone_options)
            channels = check_fusion_point(self.backbone, self.spec, point)
            self.low_stem = _conv(d, in_channels, channels)
            self.fused_at = point
        elif fusion == "early":
            self.high_stem = _conv(d, in_channels, stem_channels)
            self.low_stem = _conv(d, in_channels, stem_channels)
            self.backbone = self.spec.build(stem_channels, out_channels, d, **backbone_options)
            self.fused_at = "input stems"
        else:
            self.low_stem = _conv(d, in_channels, stem_channels)
            self.backbone = self.spec.build(in_channels, stem_channels, d, **backbone_options)
            # no instance norm here: after the backbone's 1x1 projection it stalled
            # training (docs/network.md, "Why the generic late head has no norm")
            self.head = nn.Sequential(
                _conv(d, stem_channels, stem_channels),
                nn.LeakyReLU(0.01),
                _conv(d, stem_channels, out_channels, 1, bias=True),
            )
            self.fused_at = "output head"
        divisor = getattr(self.backbone, "size_divisor", self.spec.size_divisor)
        # one divisor for every axis, or (nnU-Net's anisotropic plans) one per axis
        self.size_divisor: int | tuple[int, ...] = (
            tuple(int(m) for m in divisor) if isinstance(divisor, tuple | list) else int(divisor)
        )

    def _bands(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        if self.input_bands == "volume":
            c = self.in_channels
            low_full, high = x[:, :c], x[:, c:]
            grid = list(low_band_shape_at(x.shape, self.dims, self.beta)[2:])
            pool = F.adaptive_avg_pool3d if self.spatial_dims == 3 else F.adaptive_avg_pool2d
            return pool(low_full, grid), high
        return band_split(
            x,
            self.beta,
            dims=self.dims,
            layout=self.layout,
            backend=self.backend,
            kernel=self.kernel,
        )

    def _fuse(self, low: torch.Tensor, high: torch.Tensor) -> torch.Tensor:
        # under autocast the two branches can end in different dtypes (CUDA float16 AMP:
        # the stem's convolution gives float16, a backbone whose last op autocasts to
        # float32, e.g. a trilinear upsampling, gives float32): fuse in the wider one
        if low.dtype != high.dtype:
            common = torch.promote_types(low.dtype, high.dtype)
            low, high = low.to(common), high.to(common)
        return band_fuse(
            low,
            high,
            self.beta,
            dims=self.dims,
            layout=self.layout,
            backend=self.backend,
            kernel=self.kernel,
        )

    def _check_input(self, x: torch.Tensor) -> None:
        if x.ndim != self.spatial_dims + 2:
            raise InputError(
                f"expected input (N, C, {'X, Y, Z' if self.spatial_dims == 3 else 'X, Y'})"
                f", got shape {tuple(x.shape)}"
            )
        expected = 2 * self.in_channels if self.input_bands == "volume" else None
        if expected is not None and x.shape[1] != expected:
            raise InputError(
                f"input_bands='volume' expects {expected} channels ([U(low), high] of "
                f"{self.in_channels} image channels), got {x.shape[1]}"
            )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        self._check_input(x)
        spatial = x.shape[2:]
        m = self.size_divisor
        divisors = m if isinstance(m, tuple) else (m,) * len(spatial)
        pad = [(-s) % d for s, d in zip(spatial, divisors, strict=True)]
        if any(pad):
            flat = [p for extra in reversed(pad) for p in (0, extra)]
            x = F.pad(x, flat, mode="replicate")
        if self.fusion != "none":
            for d in self.dims:
                if band_width(x.shape[d], self.beta) < 1:
                    raise InputError(
                        f"input size {x.shape[d]} on dim {d} keeps no low-band sample at "
                        f"beta={self.beta}; need a size >= {min_band_size(self.beta)}"
                    )
        if self.fusion == "none":
            out = self.backbone(x)
        else:
            low, high = self._bands(x)
            low = self.low_stem(low)
            if self.fused_at == "stem":
                fused = self._fuse(low, self.backbone.forward_stem(high))
                out = self.backbone.forward_body(fused)
            elif self.fused_at == "decoder":
                features, context = self.backbone.forward_features(high)
                out = self.backbone.forward_head(self._fuse(low, features), context)
            elif self.fused_at == "input stems":
                out = self.backbone(self._fuse(low, self.high_stem(high)))
            else:
                out = self.head(self._fuse(low, self.backbone(high)))
        if any(pad):
            out = _crop(out, tuple(spatial), tuple(x.shape[2:]))
        return out


def _crop(out: Any, spatial: tuple[int, ...], padded: tuple[int, ...]) -> Any:
    """Crop logits back to the unpadded input; a list of deep-supervision outputs (at
    lower resolutions too) is cropped output by output, in proportion."""
    if isinstance(out, list | tuple):
        return type(out)(_crop(o, spatial, padded) for o in out)
    keep = [-(-s * o // p) for s, o, p in zip(spatial, out.shape[2:], padded, strict=True)]
    return out[(slice(None), slice(None), *(slice(0, k) for k in keep))]
