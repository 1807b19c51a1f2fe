"""The centred band split with the Triton kernels: ``(low, high) = (D x, x - U D x)``.

Two layers, as in Liger-Kernel: the ``@triton.jit`` kernels (shared with the fusion,
:mod:`fdseg_kernels._common` and :mod:`fdseg_kernels.band_fused`) and these host
launchers. There is no autograd here: the one differentiable path is the custom op
``fdseg::band_split`` (:mod:`fdseg_core.bands.ops`), whose backward calls the fusion's
launcher (``split'(g_low, g_high) = fuse(c * g_low, g_high)``, see
:mod:`fdseg_core.bands.operators`) with the same kernel design.
"""

from __future__ import annotations

import torch

from fdseg_core.choices import DEFAULT_KERNEL
from fdseg_kernels._common import check_band_args, project, refuse_autograd

__all__ = ["band_split_forward", "band_split_triton"]


def band_split_forward(
    x: torch.Tensor, dims: tuple[int, ...], widths: tuple[int, ...], *, impl: str = DEFAULT_KERNEL
) -> tuple[torch.Tensor, torch.Tensor]:
    """Launch the kernels of a split (arguments already validated; no autograd).

    ``impl="per_axis"``, band dims ``d_1 < ... < d_m``: down-sampling along
    ``d_1 .. d_m`` (``low``), up-sampling along ``d_m .. d_2``, and the last
    up-sampling along ``d_1`` fused with ``x -`` and the write of ``high``.
    ``impl="fused"``: the two-pass kernels of :mod:`fdseg_kernels.band_fused` (two
    adjacent band dims; otherwise the per-axis kernels run). ``impl="auto"``: fused
    where it applies.

    Args:
        x: Tensor ``(N, C, *spatial)`` (made contiguous here).
        dims: Band dims, increasing.
        widths: Kept width ``k`` per band dim.
        impl: One of :data:`fdseg_core.choices.KERNELS`.

    Returns:
        ``(low, high)`` in x's dtype.
    """
    x = x.contiguous()
    small, high = project(x, dims, widths, impl=impl)
    return small.to(x.dtype), high


def band_split_triton(
    x: torch.Tensor,
    dims: tuple[int, ...],
    widths: tuple[int, ...],
    *,
    impl: str = DEFAULT_KERNEL,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Split ``x`` into its low and high band (layout ``"centered"``) with Triton kernels.

    ``low = D x`` is the band-limited resampling of ``x`` to ``k`` samples on every
    band dim; ``high = x - U D x``. Float16/bfloat16 inputs are computed with
    float32 accumulation and cast back; float32 dots use ``tf32x3`` on the GPU
    (~1e-6 relative) and exact products in float64 (see ``_launch.dot_precision``).
    Forward only: for gradients use ``fdseg_core.bands.band_split(..., backend="triton")``.

    Args:
        x: Real tensor ``(N, C, X, Y, Z)`` or ``(N, C, X, Y)``: float16, bfloat16,
            float32 or float64, on a CUDA device (or any device under
            ``TRITON_INTERPRET=1``). Non-contiguous tensors are copied.
        dims: Band dims (1 to 3 distinct spatial dims; negative allowed).
        widths: Kept width ``k`` per band dim, ``1 <= k < n``.
        impl: Kernel design: ``"per_axis"`` (one launch per axis and direction; the
            default, measured on an H100), ``"fused"`` (two launches, 3.02 X bytes,
            where two adjacent band dims allow it) or ``"auto"`` (= fused where it
            applies).

    Returns:
        ``(low, high)``: ``low`` shaped like ``x`` with ``k`` on each band dim,
        ``high`` shaped like ``x``; both in x's dtype.

    Raises:
        TypeError: ``x`` is not a tensor of a supported dtype; non-int dims/widths.
        ValueError: Bad rank, dims, widths, kernel design, a device the kernels cannot
            run on, or an input that requires a gradient.
    """
    dims, widths = check_band_args("x", x, dims, widths)
    refuse_autograd("band_split_triton", x)
    return band_split_forward(x, dims, widths, impl=impl)
