"""The contract a backbone plugin fulfils: :class:`BackboneSpec`."""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from typing import Any

from torch import nn

from fdseg_core.choices import FUSION_POINTS as POINT_NAMES
from fdseg_core.errors import InputError

__all__ = ["BackboneSpec", "BackboneBuilder", "FUSION_POINTS", "check_fusion_point"]

#: ``builder(in_channels, out_channels, spatial_dims, **options) -> nn.Module``
BackboneBuilder = Callable[..., nn.Module]

#: Where a backbone lets :class:`~fdseg_core.nn.FrequencyDisentangledNet` fuse the bands,
#: and what its module must then provide (``forward`` must equal the composition):
#:
#: * ``"stem"`` (early fusion at the backbone's own first features): an int attribute
#:   ``stem_channels``, ``forward_stem(x) -> features`` ``(N, stem_channels, *spatial)``
#:   and ``forward_body(features) -> logits``;
#: * ``"decoder"`` (late fusion at the last full-resolution decoder features, before the
#:   last decoder stage, as the paper's late model): an int attribute
#:   ``decoder_channels``, ``forward_features(x) -> (features, context)`` with
#:   ``features`` ``(N, decoder_channels, *spatial)`` at the input's resolution and
#:   ``context`` anything the last stage needs (skip connections), and
#:   ``forward_head(features, context) -> logits``.
FUSION_POINTS: dict[str, tuple[str, ...]] = dict(
    zip(
        POINT_NAMES,  # ("stem", "decoder"), from fdseg_core.choices
        (
            ("stem_channels", "forward_stem", "forward_body"),
            ("decoder_channels", "forward_features", "forward_head"),
        ),
        strict=True,
    )
)

_NAME = re.compile(r"^[a-z][a-z0-9_\-]*$")


@dataclass(frozen=True)
class BackboneSpec:
    """A segmentation backbone that fdseg can build, possibly from a third-party package.

    Attributes:
        name: Unique name, lowercase (``[a-z][a-z0-9_-]*``), used as ``--backbone``.
        builder: ``builder(in_channels, out_channels, spatial_dims, **options)``
            returning an ``nn.Module`` that maps ``(N, in_channels, *spatial)`` to
            logits ``(N, out_channels, *spatial)`` without a final activation, for
            inputs whose spatial sizes are multiples of ``size_divisor``.
        spatial_dims: Supported numbers of spatial dims, a subset of ``(2, 3)``.
        size_divisor: Spatial sizes the module accepts are multiples of this;
            :class:`~fdseg_core.nn.FrequencyDisentangledNet` pads to it and crops back.
        description: One line for ``fdseg backbones``.
        default_options: Keyword options the builder gets unless overridden.
        fixed_size: Whether the module only accepts one input size, given by the
            ``img_size`` option (e.g. transformers with learned position embeddings).
        fusion_points: Where the module lets the bands be fused, a subset of
            :data:`FUSION_POINTS` (``"stem"``, ``"decoder"``); each adds methods the
            module must provide. Backbones without them are fused at their input
            (early) or output (late) by generic stems and heads.
        package: Providing distribution (filled in by the plugin manager).
        version: Its version (filled in by the plugin manager).
    """

    name: str
    builder: BackboneBuilder
    spatial_dims: tuple[int, ...] = (3,)
    size_divisor: int = 1
    description: str = ""
    default_options: dict[str, Any] = field(default_factory=dict)
    fixed_size: bool = False
    fusion_points: tuple[str, ...] = ()
    package: str | None = None
    version: str | None = None

    def validate(self) -> BackboneSpec:
        """Check every field; return ``self`` (with ``spatial_dims`` as a sorted tuple).

        Raises:
            ValueError: A field does not satisfy the contract (the message names it).
        """
        if not isinstance(self.name, str) or not _NAME.match(self.name):
            raise InputError(f"BackboneSpec.name must match [a-z][a-z0-9_-]*, got {self.name!r}")
        if not callable(self.builder):
            raise InputError(
                f"BackboneSpec {self.name!r}: builder must be callable, "
                f"got {type(self.builder).__name__}"
            )
        dims = self.spatial_dims
        if isinstance(dims, int):
            dims = (dims,)
        try:
            dims = tuple(sorted(set(dims)))
        except TypeError:
            raise InputError(
                f"BackboneSpec {self.name!r}: spatial_dims must be a subset of "
                f"(2, 3), got {self.spatial_dims!r}"
            ) from None
        if not dims or any(d not in (2, 3) for d in dims):
            raise InputError(
                f"BackboneSpec {self.name!r}: spatial_dims must be a non-empty "
                f"subset of (2, 3), got {self.spatial_dims!r}"
            )
        if (
            isinstance(self.size_divisor, bool)
            or not isinstance(self.size_divisor, int)
            or self.size_divisor < 1
        ):
            raise InputError(
                f"BackboneSpec {self.name!r}: size_divisor must be a positive "
                f"integer, got {self.size_divisor!r}"
            )
        if not isinstance(self.description, str) or "\n" in self.description:
            raise InputError(f"BackboneSpec {self.name!r}: description must be one line of text")
        if not isinstance(self.default_options, dict):
            raise InputError(f"BackboneSpec {self.name!r}: default_options must be a dict")
        points = self.fusion_points
        if isinstance(points, str) or not isinstance(points, tuple | list):
            raise InputError(
                f"BackboneSpec {self.name!r}: fusion_points must be a tuple of "
                f"{list(FUSION_POINTS)}, got {points!r}"
            )
        bad = [p for p in points if p not in FUSION_POINTS]
        if bad:
            raise InputError(
                f"BackboneSpec {self.name!r}: unknown fusion_points {bad}; "
                f"expected a subset of {list(FUSION_POINTS)}"
            )
        changes: dict[str, Any] = {}
        if dims != self.spatial_dims:
            changes["spatial_dims"] = dims
        if tuple(points) != self.fusion_points:
            changes["fusion_points"] = tuple(points)
        return replace(self, **changes) if changes else self

    def build(
        self, in_channels: int, out_channels: int, spatial_dims: int = 3, **options: Any
    ) -> nn.Module:
        """Build the module (default options first, then ``options``).

        Raises:
            ValueError: Unsupported ``spatial_dims`` or channel counts, or a builder
                that does not return an ``nn.Module``.
        """
        if spatial_dims not in self.spatial_dims:
            raise InputError(
                f"backbone {self.name!r} supports spatial_dims "
                f"{list(self.spatial_dims)}, got {spatial_dims}"
            )
        for label, value in (("in_channels", in_channels), ("out_channels", out_channels)):
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise InputError(f"{label} must be a positive integer, got {value!r}")
        merged = {**self.default_options, **options}
        module = self.builder(in_channels, out_channels, spatial_dims, **merged)
        if not isinstance(module, nn.Module):
            raise InputError(
                f"backbone {self.name!r} builder returned {type(module).__name__}, not an nn.Module"
            )
        return module


def check_fusion_point(module: nn.Module, spec: BackboneSpec, point: str) -> int:
    """Check that a built backbone provides what its ``point`` fusion needs.

    Args:
        module: The module the spec's builder returned.
        spec: Its specification (names the backbone in errors).
        point: ``"stem"`` or ``"decoder"``.

    Returns:
        The channels of the features fused there (``stem_channels`` or
        ``decoder_channels``).

    Raises:
        ValueError: The spec does not declare ``point``, or the module lacks an
            attribute or method it needs (the message names them).
    """
    if point not in spec.fusion_points:
        raise InputError(f"backbone {spec.name!r} does not declare the fusion point {point!r}")
    channels_attr, *methods = FUSION_POINTS[point]
    missing = [m for m in methods if not callable(getattr(module, m, None))]
    channels = getattr(module, channels_attr, None)
    if isinstance(channels, bool) or not isinstance(channels, int) or channels < 1:
        missing.insert(0, f"{channels_attr} (a positive int)")
    if missing:
        raise InputError(
            f"backbone {spec.name!r} declares fusion point {point!r} but its module "
            f"{type(module).__name__} lacks {missing}"
        )
    return channels
