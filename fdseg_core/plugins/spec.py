"""The contract a backbone plugin fulfils: :class:`BackboneSpec`."""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from typing import Any

from torch import nn

__all__ = ["BackboneSpec", "BackboneBuilder"]

#: ``builder(in_channels, out_channels, spatial_dims, **options) -> nn.Module``
BackboneBuilder = Callable[..., nn.Module]

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
    package: str | None = None
    version: str | None = None

    def validate(self) -> BackboneSpec:
        """Check every field; return ``self`` (with ``spatial_dims`` as a sorted tuple).

        Raises:
            ValueError: A field does not satisfy the contract (the message names it).
        """
        if not isinstance(self.name, str) or not _NAME.match(self.name):
            raise ValueError(f"BackboneSpec.name must match [a-z][a-z0-9_-]*, got {self.name!r}")
        if not callable(self.builder):
            raise ValueError(
                f"BackboneSpec {self.name!r}: builder must be callable, "
                f"got {type(self.builder).__name__}"
            )
        dims = self.spatial_dims
        if isinstance(dims, int):
            dims = (dims,)
        try:
            dims = tuple(sorted(set(dims)))
        except TypeError:
            raise ValueError(
                f"BackboneSpec {self.name!r}: spatial_dims must be a subset of "
                f"(2, 3), got {self.spatial_dims!r}"
            ) from None
        if not dims or any(d not in (2, 3) for d in dims):
            raise ValueError(
                f"BackboneSpec {self.name!r}: spatial_dims must be a non-empty "
                f"subset of (2, 3), got {self.spatial_dims!r}"
            )
        if (
            isinstance(self.size_divisor, bool)
            or not isinstance(self.size_divisor, int)
            or self.size_divisor < 1
        ):
            raise ValueError(
                f"BackboneSpec {self.name!r}: size_divisor must be a positive "
                f"integer, got {self.size_divisor!r}"
            )
        if not isinstance(self.description, str) or "\n" in self.description:
            raise ValueError(f"BackboneSpec {self.name!r}: description must be one line of text")
        if not isinstance(self.default_options, dict):
            raise ValueError(f"BackboneSpec {self.name!r}: default_options must be a dict")
        return replace(self, spatial_dims=dims) if dims != self.spatial_dims else self

    def build(
        self, in_channels: int, out_channels: int, spatial_dims: int = 3, **options: Any
    ) -> nn.Module:
        """Build the module (default options first, then ``options``).

        Raises:
            ValueError: Unsupported ``spatial_dims`` or channel counts, or a builder
                that does not return an ``nn.Module``.
        """
        if spatial_dims not in self.spatial_dims:
            raise ValueError(
                f"backbone {self.name!r} supports spatial_dims "
                f"{list(self.spatial_dims)}, got {spatial_dims}"
            )
        for label, value in (("in_channels", in_channels), ("out_channels", out_channels)):
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise ValueError(f"{label} must be a positive integer, got {value!r}")
        merged = {**self.default_options, **options}
        module = self.builder(in_channels, out_channels, spatial_dims, **merged)
        if not isinstance(module, nn.Module):
            raise ValueError(
                f"backbone {self.name!r} builder returned {type(module).__name__}, not an nn.Module"
            )
        return module
