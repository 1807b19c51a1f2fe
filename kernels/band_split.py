"""Centred band split with Triton kernels: ``(low, high) = (D x, x - U D x)``.

Three layers, as in Liger-Kernel: the ``@triton.jit`` kernel (shared with the
fusion, :func:`fdseg_kernels._common._band_apply_kernel`), the host launcher
:func:`band_split_forward`, and the autograd function :class:`BandSplitFunction`
whose backward is the fusion's launcher (``split'(g_low, g_high) =
fuse(c * g_low, g_high)``, see :mod:`fdseg_core.bands.operators`).
"""

from __future__ import annotations

import torch

from fdseg_core.bands.operators import adjoint_scale
from fdseg_kernels._common import check_band_args, project

__all__ = ["BandSplitFunction", "band_split_forward", "band_split_triton"]


def band_split_forward(
    x: torch.Tensor, dims: tuple[int, ...], widths: tuple[int, ...], *, impl: str = "per_axis"
) -> tuple[torch.Tensor, torch.Tensor]:
    """Launch the kernels of a split (no autograd).

    ``impl="per_axis"``, band dims ``d_1 < ... < d_m``: down-sampling along
    ``d_1 .. d_m`` (``low``), up-sampling along ``d_m .. d_2``, and the last
    up-sampling along ``d_1`` fused with ``x -`` and the write of ``high``.
    ``impl="fused"``: the two-pass kernels of :mod:`fdseg_kernels.band_fused` (two
    adjacent band dims; otherwise the per-axis kernels run). ``impl="auto"``: fused
    where it applies.

    Args:
        x: Tensor ``(N, C, *spatial)`` (validated; made contiguous here).
        dims: Band dims, increasing.
        widths: Kept width ``k`` per band dim.
        impl: ``"per_axis"``, ``"fused"`` or ``"auto"``.

    Returns:
        ``(low, high)`` in x's dtype.
    """
    x = x.contiguous()
    small, high = project(x, dims, widths, impl=impl)
    return small.to(x.dtype), high


class BandSplitFunction(torch.autograd.Function):
    """Differentiable split; the backward runs the fusion's kernels (and is differentiable)."""

    @staticmethod
    def forward(ctx, x, dims, widths, impl="per_axis"):  # type: ignore[override]
        ctx.dims, ctx.widths, ctx.impl = dims, widths, impl
        ctx.shape = tuple(x.shape)
        return band_split_forward(x, dims, widths, impl=impl)

    @staticmethod
    def backward(ctx, g_low, g_high):  # type: ignore[override]
        from fdseg_kernels.band_fuse import BandFuseFunction

        c = adjoint_scale(tuple(ctx.shape[d] for d in ctx.dims), ctx.widths)
        if g_high is None:
            g_high = g_low.new_zeros(ctx.shape)
        if g_low is None:
            low_shape = list(ctx.shape)
            for d, k in zip(ctx.dims, ctx.widths, strict=True):
                low_shape[d] = k
            g_low = g_high.new_zeros(low_shape)
        # fuse(c * g_low, g_high): the scale is fused into the kernel's epilogue
        g = BandFuseFunction.apply(g_low, g_high, ctx.dims, ctx.widths, c, ctx.impl)
        return g, None, None, None


def band_split_triton(
    x: torch.Tensor, dims: tuple[int, ...], widths: tuple[int, ...], *, impl: str = "per_axis"
) -> tuple[torch.Tensor, torch.Tensor]:
    """Split ``x`` into its low and high band (layout ``"centered"``) with Triton kernels.

    ``low = D x`` is the band-limited resampling of ``x`` to ``k`` samples on every
    band dim; ``high = x - U D x``. Float16/bfloat16 inputs are computed with
    float32 accumulation and cast back; float32 dots use ``tf32x3`` on the GPU
    (~1e-6 relative) and exact products in float64 (see ``_common.dot_precision``).

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
