"""Centred band fusion with Triton kernels: ``out = high - U (D high - low)``.

Three layers, as in Liger-Kernel: the ``@triton.jit`` kernel (shared with the
split, :func:`fdseg_kernels._common._band_apply_kernel`), the host launcher
:func:`band_fuse_forward`, and the autograd function :class:`BandFuseFunction`
whose backward is the split's launcher (``fuse'(g) = (D g / c, g - U D g)``,
see :mod:`fdseg_core.bands.operators`).
"""

from __future__ import annotations

import torch

from fdseg_core.bands.operators import adjoint_scale
from fdseg_kernels._common import check_band_args, project

__all__ = ["BandFuseFunction", "band_fuse_forward", "band_fuse_triton"]


def band_fuse_forward(
    low: torch.Tensor,
    high: torch.Tensor,
    dims: tuple[int, ...],
    widths: tuple[int, ...],
    low_scale: float = 1.0,
    *,
    impl: str = "per_axis",
) -> torch.Tensor:
    """Launch the kernels of a fusion, ``high - U (D high - s * low)`` (no autograd).

    Kernel launches (band dims ``d_1 < ... < d_m``): down-sampling of ``high``
    along ``d_1 .. d_m`` with ``- s * low`` fused into the last one, up-sampling
    along ``d_m .. d_2``, and the last up-sampling along ``d_1`` fused with
    ``high -`` and the write of the output.

    Args:
        low: Tensor, high's shape with ``k`` on each band dim (validated).
        high: Tensor ``(N, C, *spatial)``.
        dims: Band dims, increasing.
        widths: Kept width ``k`` per band dim.
        low_scale: ``s`` (the split's backward passes ``c = prod k / n``).
        impl: ``"per_axis"``, ``"fused"`` or ``"auto"`` (see ``band_split_forward``).

    Returns:
        Tensor shaped like ``high`` in its dtype.
    """
    _, out = project(
        high.contiguous(), dims, widths, b=low.contiguous(), b_scale=low_scale, impl=impl
    )
    return out


class BandFuseFunction(torch.autograd.Function):
    """Differentiable fusion; the backward runs the split's kernels (and is differentiable)."""

    @staticmethod
    def forward(ctx, low, high, dims, widths, low_scale=1.0, impl="per_axis"):  # type: ignore[override]
        ctx.dims, ctx.widths, ctx.low_scale, ctx.impl = dims, widths, low_scale, impl
        ctx.sizes = tuple(high.shape[d] for d in dims)
        return band_fuse_forward(low, high, dims, widths, low_scale, impl=impl)

    @staticmethod
    def backward(ctx, g):  # type: ignore[override]
        from fdseg_kernels.band_split import BandSplitFunction

        c = adjoint_scale(ctx.sizes, ctx.widths)
        g_small, g_high = BandSplitFunction.apply(g, ctx.dims, ctx.widths, ctx.impl)
        return g_small * (ctx.low_scale / c), g_high, None, None, None, None


def _check_low(low: object, high: torch.Tensor, dims, widths) -> torch.Tensor:
    from fdseg_core.bands.api import check_low_matches

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
    and exact products in float64 (see ``_common.dot_precision``).

    Args:
        low: Tensor shaped like ``high`` with ``k`` on each band dim, same dtype and device.
        high: Real tensor ``(N, C, D, H, W)`` or ``(N, C, H, W)``: float16, bfloat16,
            float32 or float64, on a CUDA device (or any device under ``TRITON_INTERPRET=1``).
        dims: Band dims (1 to 3 distinct spatial dims; negative allowed).
        widths: Kept width ``k`` per band dim, ``1 <= k < n``.
        impl: Kernel design, as in ``band_split_triton``.

    Returns:
        Tensor shaped like ``high`` in its dtype, differentiable in both inputs.

    Raises:
        TypeError: Non-tensor inputs, unsupported or mismatched dtypes, non-int dims/widths.
        ValueError: Bad rank, dims, widths or shapes, or a device the kernels cannot run on.
    """
    dims, widths = check_band_args("high", high, dims, widths)
    low = _check_low(low, high, dims, widths)
    return BandFuseFunction.apply(low, high, dims, widths, 1.0, impl)
