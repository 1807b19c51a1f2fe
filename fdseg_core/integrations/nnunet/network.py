"""nnU-Net's planned networks wrapped in fdseg's band split and fusion."""

from __future__ import annotations

from collections.abc import Sequence

from torch import nn

from fdseg_core.choices import DEFAULT_BAND_DIMS, DEFAULT_BETA, FUSION_POINTS
from fdseg_core.errors import InputError
from fdseg_core.nn import FrequencyDisentangledNet, PlannedUNet
from fdseg_core.plugins import BackboneSpec

__all__ = ["NnUNetFrequencyDisentangledNet", "band_dims_for", "wrap_planned_network"]


def band_dims_for(spacing: Sequence[float]) -> tuple[int, ...]:
    """The band dims of a network input ``(N, C, *spatial)`` for nnU-Net's voxel spacing.

    The low band is a box over the in-plane axes. nnU-Net transposes each case so that
    its axis of largest spacing comes first; the in-plane axes are then the two of
    smallest spacing. With isotropic spacing (or in 2D) they are the first two spatial
    axes, fdseg's default.

    Args:
        spacing: The configuration's spacing, one per spatial axis in the network's
            (transposed) axis order.
    """
    spacing = [float(s) for s in spacing]
    if len(spacing) == 2 or max(spacing) <= min(spacing) * (1 + 1e-6):
        return DEFAULT_BAND_DIMS
    order = sorted(range(len(spacing)), key=lambda i: (spacing[i], i))
    return tuple(sorted(2 + i for i in order[:2]))


class NnUNetFrequencyDisentangledNet(FrequencyDisentangledNet):
    """:class:`~fdseg_core.nn.FrequencyDisentangledNet` around an nnU-Net planned U-Net,
    with the ``decoder`` attribute nnU-Net's trainer switches deep supervision on.

    With deep supervision the output is the decoder's list of logits (largest first),
    as nnU-Net's own network returns it.
    """

    @property
    def decoder(self) -> nn.Module:
        return self.backbone.decoder


def wrap_planned_network(
    network: nn.Module,
    *,
    fusion: str,
    beta: float = DEFAULT_BETA,
    layout: str = "centered",
    dims: Sequence[int] | None = None,
    backend: str = "auto",
) -> NnUNetFrequencyDisentangledNet:
    """An nnU-Net planned network with fdseg's band split and fusion.

    ``fusion="none"`` keeps the network as it is (same parameters, same outputs);
    ``"early"`` fuses at its first stage, ``"late"`` at its last full-resolution decoder
    features (:class:`~fdseg_core.nn.PlannedUNet`).

    Args:
        network: What nnU-Net's ``get_network_from_plans`` built (``PlainConvUNet`` or
            ``ResidualEncoderUNet``), with the channels, classes and deep supervision
            it was asked for.
        fusion: ``"none"``, ``"early"`` or ``"late"``.
        beta: Relative width of the low band.
        layout: ``"centered"`` or ``"reference"``.
        dims: Band dims of the input (``None``: the first two spatial dims; see
            :func:`band_dims_for`).
        backend: Band operator backend.

    Raises:
        ValueError: An architecture without fusion points (the message names it), or
            bad band options.
    """
    adapted = PlannedUNet(network)
    first = adapted.net.encoder.stages[0]
    in_channels = _input_channels(adapted, first)
    spec = BackboneSpec(
        name="nnunet_planned",
        builder=lambda i, o, d: adapted,
        spatial_dims=(2, 3),
        fusion_points=FUSION_POINTS,
        description=f"nnU-Net's planned {type(network).__name__}",
    )
    conv_dims = 3 if isinstance(_first_conv(first), nn.Conv3d) else 2
    classes = int(_first_conv(adapted.net.decoder.seg_layers[-1]).out_channels)
    return NnUNetFrequencyDisentangledNet(
        spec,
        in_channels,
        classes,
        spatial_dims=conv_dims,
        fusion=fusion,
        beta=beta,
        dims=dims,
        layout=layout,
        backend=backend,
    )


def _first_conv(module: nn.Module) -> nn.Module:
    for m in module.modules():
        if isinstance(m, nn.Conv2d | nn.Conv3d):
            return m
    raise InputError(f"{type(module).__name__} has no convolution")


def _input_channels(adapted: PlannedUNet, first_stage: nn.Module) -> int:
    encoder = adapted.net.encoder
    start = encoder.stem if getattr(encoder, "stem", None) is not None else first_stage
    return int(_first_conv(start).in_channels)
