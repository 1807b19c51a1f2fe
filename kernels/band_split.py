"""Forward launcher of the centred band split: ``(low, high) = (D x, x - U D x)``.

Three layers, as in Liger-Kernel: the ``@triton.jit`` kernels (shared with the
fusion, :mod:`fdseg_kernels._common` and :mod:`fdseg_kernels.band_fused`), this host
launcher :func:`band_split_forward`, and the autograd function
:class:`fdseg_kernels.autograd.BandSplitFunction` whose backward is the fusion's
launcher (``split'(g_low, g_high) = fuse(c * g_low, g_high)``, see
:mod:`fdseg_core.bands.operators`).
"""

from __future__ import annotations

import torch

from fdseg_kernels._common import project

__all__ = ["band_split_forward"]


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
