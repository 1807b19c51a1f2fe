"""The differentiable Triton band operators: both autograd functions and their public,
validated entry points.

Each operator's vector-Jacobian product is the other one (see
:mod:`fdseg_core.bands.operators`, ``c = prod k / n``)::

    split'(g_low, g_high) = fuse(c * g_low, g_high)
    fuse'(g)              = (D g / c, g - U D g)     # = split(g), low scaled by 1/c

so :class:`BandSplitFunction` and :class:`BandFuseFunction` live together here, above
the two forward launchers (:mod:`fdseg_kernels.band_split`,
:mod:`fdseg_kernels.band_fuse`) they both call. Backward passes use the forward's
kernel design (``impl``) and are themselves differentiable.
"""

from __future__ import annotations

import torch

from fdseg_core.bands.checks import check_low_matches
from fdseg_core.bands.operators import adjoint_scale, low_band_shape
from fdseg_kernels._common import check_band_args
from fdseg_kernels.band_fuse import band_fuse_forward
from fdseg_kernels.band_split import band_split_forward

__all__ = ["BandFuseFunction", "BandSplitFunction", "band_fuse_triton", "band_split_triton"]


class BandSplitFunction(torch.autograd.Function):
    """Differentiable split; the backward runs the fusion's kernels (and is differentiable)."""

    @staticmethod
    def forward(ctx, x, dims, widths, impl="per_axis"):  # type: ignore[override]
        ctx.dims, ctx.widths, ctx.impl = dims, widths, impl
        ctx.shape = tuple(x.shape)
        return band_split_forward(x, dims, widths, impl=impl)

    @staticmethod
    def backward(ctx, g_low, g_high):  # type: ignore[override]
        c = adjoint_scale(tuple(ctx.shape[d] for d in ctx.dims), ctx.widths)
        if g_high is None:
            g_high = g_low.new_zeros(ctx.shape)
        if g_low is None:
            g_low = g_high.new_zeros(low_band_shape(ctx.shape, ctx.dims, ctx.widths))
        # fuse(c * g_low, g_high): the scale is fused into the kernel's epilogue
        g = BandFuseFunction.apply(g_low, g_high, ctx.dims, ctx.widths, c, ctx.impl)
        return g, None, None, None


class BandFuseFunction(torch.autograd.Function):
    """Differentiable fusion; the backward runs the split's kernels (and is differentiable)."""

    @staticmethod
    def forward(ctx, low, high, dims, widths, low_scale=1.0, impl="per_axis"):  # type: ignore[override]
        ctx.dims, ctx.widths, ctx.low_scale, ctx.impl = dims, widths, low_scale, impl
        ctx.sizes = tuple(high.shape[d] for d in dims)
        return band_fuse_forward(low, high, dims, widths, low_scale, impl=impl)

    @staticmethod
    def backward(ctx, g):  # type: ignore[override]
        c = adjoint_scale(ctx.sizes, ctx.widths)
        g_small, g_high = BandSplitFunction.apply(g, ctx.dims, ctx.widths, ctx.impl)
        return g_small * (ctx.low_scale / c), g_high, None, None, None, None


def band_split_triton(
    x: torch.Tensor, dims: tuple[int, ...], widths: tuple[int, ...], *, impl: str = "per_axis"
) -> tuple[torch.Tensor, torch.Tensor]:
    """Split ``x`` into its low and high band (layout ``"centered"``) with Triton kernels.

    ``low = D x`` is the band-limited resampling of ``x`` to ``k`` samples on every
    band dim; ``high = x - U D x``. Float16/bfloat16 inputs are computed with
    float32 accumulation and cast back; float32 dots use ``tf32x3`` on the GPU
    (~1e-6 relative) and exact products in float64 (see ``_launch.dot_precision``).

    Args:
        x: Real tensor ``(N, C, D, H, W)`` or ``(N, C, H, W)``: float16, bfloat16,
            float32 or float64, on a CUDA device (or any device under
            ``TRITON_INTERPRET=1``). Non-contiguous tensors are copied.
        dims: Band dims (1 to 3 distinct spatial dims; negative allowed).
        widths: Kept width ``k`` per band dim, ``1 <= k < n``.
        impl: Kernel design: ``"per_axis"`` (one launch per axis and direction; the
            default, measured on an H100), ``"fused"`` (two launches, 3.02 X bytes,
            where two adjacent band dims allow it) or ``"auto"`` (= fused where it
            applies). Backward uses the same design.

    Returns:
        ``(low, high)``: ``low`` shaped like ``x`` with ``k`` on each band dim,
        ``high`` shaped like ``x``; both in x's dtype, differentiable.

    Raises:
        TypeError: ``x`` is not a tensor of a supported dtype; non-int dims/widths.
        ValueError: Bad rank, dims, widths, or a device the kernels cannot run on.
    """
    dims, widths = check_band_args("x", x, dims, widths)
    return BandSplitFunction.apply(x, dims, widths, impl)


def _check_low(low: object, high: torch.Tensor, dims, widths) -> torch.Tensor:
    if not isinstance(low, torch.Tensor):
        raise TypeError(f"low must be a torch.Tensor, got {type(low).__name__}")
    check_low_matches(low, high, dims, widths)
    return low


def band_fuse_triton(
    low: torch.Tensor,
    high: torch.Tensor,
    dims: tuple[int, ...],
    widths: tuple[int, ...],
    *,
    impl: str = "per_axis",
) -> torch.Tensor:
    """Fuse bands (layout ``"centered"``): ``low``'s spectrum replaces ``high``'s band.

    Computes ``high - U (D high - low)``, so that
    ``band_fuse_triton(*band_split_triton(x, dims, widths), dims, widths) == x``
    up to rounding. Float16/bfloat16 inputs are computed with float32
    accumulation and cast back; float32 dots use ``tf32x3`` on the GPU (~1e-6 relative)
    and exact products in float64 (see ``_launch.dot_precision``).

    Args:
        low: Tensor shaped like ``high`` with ``k`` on each band dim, same dtype and device.
        high: Real tensor ``(N, C, D, H, W)`` or ``(N, C, H, W)``: float16, bfloat16,
            float32 or float64, on a CUDA device (or any device under ``TRITON_INTERPRET=1``).
        dims: Band dims (1 to 3 distinct spatial dims; negative allowed).
        widths: Kept width ``k`` per band dim, ``1 <= k < n``.
        impl: Kernel design, as in :func:`band_split_triton`.

    Returns:
        Tensor shaped like ``high`` in its dtype, differentiable in both inputs.

    Raises:
        TypeError: Non-tensor inputs, unsupported or mismatched dtypes, non-int dims/widths.
        ValueError: Bad rank, dims, widths or shapes, or a device the kernels cannot run on.
    """
    dims, widths = check_band_args("high", high, dims, widths)
    low = _check_low(low, high, dims, widths)
    return BandFuseFunction.apply(low, high, dims, widths, 1.0, impl)
