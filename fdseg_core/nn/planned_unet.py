"""Fusion points for nnU-Net's planned U-Nets.

nnU-Net v2 builds its networks from a plans file with ``dynamic_network_architectures``:
``PlainConvUNet`` (the default plans) and ``ResidualEncoderUNet`` (the ResEnc plans).
Both are an ``encoder`` (an optional ``stem``, then ``stages``, each stage's output a
skip) and a ``UNetDecoder`` (per level a transposed convolution, concatenation with the
skip, a stage, and a 1x1 segmentation layer; deep supervision returns every level's
segmentation, largest first). :class:`PlannedUNet` gives such a network fdseg's two
fusion points without changing a weight:

* ``"stem"`` (early fusion): the encoder's stem and first stage, at full resolution;
  the fused features then become the first skip and the input of the second stage.
* ``"decoder"`` (late fusion): the output of the last transposed convolution (the
  last full-resolution decoder features, before the last stage); the fused features
  are concatenated with the first skip and go through the last stage and its
  segmentation layer.

The adapter reads the network's attributes only, so it needs no import of
``dynamic_network_architectures``; a network without them is refused with one line
naming its class.
"""

from __future__ import annotations

import math
from typing import Any

import torch
from torch import nn

from fdseg_core.errors import InputError

__all__ = ["PLANNED_ARCHITECTURES", "PlannedUNet", "planned_unet_supported"]

#: The nnU-Net architectures whose structure :class:`PlannedUNet` knows.
PLANNED_ARCHITECTURES: tuple[str, ...] = ("PlainConvUNet", "ResidualEncoderUNet")


def planned_unet_supported(network: nn.Module) -> str | None:
    """``None`` when :class:`PlannedUNet` can wrap ``network``, else why not (one line)."""
    name = type(network).__name__
    encoder = getattr(network, "encoder", None)
    decoder = getattr(network, "decoder", None)
    needed = (
        hasattr(encoder, "stages")
        and hasattr(encoder, "strides")
        and hasattr(encoder, "output_channels")
        and all(hasattr(decoder, a) for a in ("stages", "transpconvs", "seg_layers"))
        and hasattr(decoder, "deep_supervision")
    )
    if not needed:
        return (
            f"the architecture {name} has no fusion points: fdseg knows "
            f"{', '.join(PLANNED_ARCHITECTURES)} (an encoder with stages and skips, a "
            "UNetDecoder)"
        )
    first = [int(s) for s in encoder.strides[0]]
    if any(s != 1 for s in first):
        return (
            f"the architecture {name} downsamples in its first stage (strides {first}): "
            "there is no full-resolution stage to fuse at"
        )
    return None


class PlannedUNet(nn.Module):
    """An nnU-Net planned U-Net with the ``"stem"`` and ``"decoder"`` fusion points.

    ``forward`` is the network's own; the four fusion-point methods split it in two at
    each point, with the same modules and weights (``forward_body(forward_stem(x))``
    and ``forward_head(*forward_features(x))`` equal ``forward(x)``).

    Args:
        network: A ``PlainConvUNet`` or ``ResidualEncoderUNet`` (any module with the
            same encoder/decoder structure).

    Attributes:
        net: The wrapped network (its state-dict keys get the prefix ``net.``).
        stem_channels: Channels of the first stage's output.
        decoder_channels: Channels of the last transposed convolution's output.
        size_divisor: Product of the encoder's strides, per axis (an int when every axis
            has the same): the spatial sizes the network takes are multiples of it.

    Raises:
        ValueError: A network without that structure (the message names its class).
    """

    def __init__(self, network: nn.Module) -> None:
        super().__init__()
        reason = planned_unet_supported(network)
        if reason is not None:
            raise InputError(reason)
        self.net = network
        encoder = network.encoder
        self.stem_channels = int(encoder.output_channels[0])
        self.decoder_channels = int(encoder.output_channels[0])
        per_axis = zip(*[[int(s) for s in st] for st in encoder.strides], strict=True)
        divisors = tuple(math.prod(axis) for axis in per_axis)
        self.size_divisor: int | tuple[int, ...] = (
            divisors[0] if len(set(divisors)) == 1 else divisors
        )

    @property
    def decoder(self) -> nn.Module:
        """The network's decoder (nnU-Net switches deep supervision on it)."""
        return self.net.decoder

    def forward(self, x: torch.Tensor) -> Any:
        return self.net(x)

    def forward_stem(self, x: torch.Tensor) -> torch.Tensor:
        """The encoder's stem (when it has one) and first stage: ``(N, stem_channels,
        *spatial)`` at the input's resolution."""
        encoder = self.net.encoder
        if getattr(encoder, "stem", None) is not None:
            x = encoder.stem(x)
        return encoder.stages[0](x)

    def forward_body(self, first: torch.Tensor) -> Any:
        """The rest of the encoder from the first stage's (fused) output, which is also
        the first skip, then the decoder."""
        skips = [first]
        x = first
        for stage in self.net.encoder.stages[1:]:
            x = stage(x)
            skips.append(x)
        return self.net.decoder(skips)

    def forward_features(self, x: torch.Tensor) -> tuple[torch.Tensor, tuple]:
        """The encoder and every decoder level but the last, then the last transposed
        convolution: ``(features (N, decoder_channels, *spatial), (first skip, the
        deep-supervision outputs so far))``."""
        decoder = self.net.decoder
        skips = self.net.encoder(x)
        low_res = skips[-1]
        seg_outputs = []
        last = len(decoder.stages) - 1
        for s in range(last):
            y = decoder.transpconvs[s](low_res)
            y = decoder.stages[s](torch.cat((y, skips[-(s + 2)]), 1))
            if decoder.deep_supervision:
                seg_outputs.append(decoder.seg_layers[s](y))
            low_res = y
        return decoder.transpconvs[last](low_res), (skips[0], seg_outputs)

    def forward_head(self, features: torch.Tensor, context: tuple) -> Any:
        """The last decoder stage and its segmentation layer: the logits, or with deep
        supervision every level's, largest first (as the decoder returns them)."""
        skip, seg_outputs = context
        decoder = self.net.decoder
        y = decoder.stages[-1](torch.cat((features, skip), 1))
        outputs = [*seg_outputs, decoder.seg_layers[-1](y)]
        return outputs[::-1] if decoder.deep_supervision else outputs[-1]
