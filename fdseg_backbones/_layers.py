"""Small layer factories shared by the built-in backbones (one code path for 2D and 3D)."""

from __future__ import annotations

from torch import nn

from fdseg_core.errors import InputError

__all__ = ["conv", "norm", "dropout", "check_dims", "FusionPointsMixin"]


def check_dims(spatial_dims: int) -> None:
    if spatial_dims not in (2, 3):
        raise InputError(f"spatial_dims must be 2 or 3, got {spatial_dims!r}")


def conv(
    spatial_dims: int, cin: int, cout: int, kernel: int = 3, stride: int = 1, bias: bool = False
) -> nn.Module:
    cls = nn.Conv3d if spatial_dims == 3 else nn.Conv2d
    return cls(cin, cout, kernel_size=kernel, stride=stride, padding=kernel // 2, bias=bias)


def norm(spatial_dims: int, channels: int) -> nn.Module:
    cls = nn.InstanceNorm3d if spatial_dims == 3 else nn.InstanceNorm2d
    return cls(channels, affine=True)


def dropout(spatial_dims: int, p: float) -> nn.Module:
    if p <= 0:
        return nn.Identity()
    return (nn.Dropout3d if spatial_dims == 3 else nn.Dropout2d)(p)


class FusionPointsMixin:
    """``forward(x) = forward_head(*_decode(forward_stem(x)))``: a U-Net split at its first
    convolution (the ``"stem"`` fusion point) and before its last decoder stage (the
    ``"decoder"`` point). A backbone defines ``forward_stem``, ``_decode(features) ->
    (decoder_features, context)`` and ``forward_head``; this class composes them."""

    def forward_body(self, features):
        """Everything after the first convolution, to the logits."""
        return self.forward_head(*self._decode(features))

    def forward_features(self, x):
        """``(decoder_features, context)`` of an input (see ``forward_head``)."""
        return self._decode(self.forward_stem(x))

    def forward(self, x):
        return self.forward_head(*self.forward_features(x))
