"""Forward launcher of the centred band fusion: ``out = high - U (D high - low)``.

Three layers, as in Liger-Kernel: the ``@triton.jit`` kernels (shared with the
split, :mod:`fdseg_kernels._common` and :mod:`fdseg_kernels.band_fused`), this host
launcher :func:`band_fuse_forward`, and the autograd function
:class:`fdseg_kernels.autograd.BandFuseFunction` whose backward is the split's
launcher (``fuse'(g) = (D g / c, g - U D g)``, see :mod:`fdseg_core.bands.operators`).
"""

from __future__ import annotations

import torch

from fdseg_kernels._common import project

__all__ = ["band_fuse_forward"]


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
