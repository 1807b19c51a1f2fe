"""The centred band fusion with the Triton kernels: ``out = high - U (D high - low)``.

Two layers, as in Liger-Kernel: the ``@triton.jit`` kernels (shared with the split,
:mod:`fdseg_kernels._common` and :mod:`fdseg_kernels.band_fused`) and these host
launchers. There is no autograd here: the one differentiable path is the custom op
``fdseg::band_fuse`` (:mod:`fdseg_core.bands.ops`), whose backward calls the split's
launcher (``fuse'(g) = (D g / c, g - U D g)``, see :mod:`fdseg_core.bands.operators`)
with the same kernel design.
"""

from __future__ import annotations

import torch

from fdseg_core.bands.checks import check_low_matches
from fdseg_core.choices import DEFAULT_KERNEL
from fdseg_kernels._common import check_band_args, project, refuse_autograd

__all__ = ["band_fuse_forward", "band_fuse_triton"]


def band_fuse_forward(
    low: torch.Tensor,
    high: torch.Tensor,
    dims: tuple[int, ...],
    widths: tuple[int, ...],
    low_scale: float = 1.0,
    *,
    impl: str = DEFAULT_KERNEL,
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
        impl: One of :data:`fdseg_core.choices.KERNELS` (see ``band_split_forward``).

    Returns:
        Tensor shaped like ``high`` in its dtype.
    """
    _, out = project(
        high.contiguous(), dims, widths, b=low.contiguous(), b_scale=low_scale, impl=impl
    )
    return out


def band_fuse_triton(
    low: torch.Tensor,
    high: torch.Tensor,
    dims: tuple[int, ...],
    widths: tuple[int, ...],
    *,
    impl: str = DEFAULT_KERNEL,
) -> torch.Tensor:
    """Fuse bands (layout ``"centered"``): ``low``'s spectrum replaces ``high``'s band.

    Computes ``high - U (D high - low)``, so that
    ``band_fuse_triton(*band_split_triton(x, dims, widths), dims, widths) == x``
    up to rounding. Float16/bfloat16 inputs are computed with float32
    accumulation and cast back; float32 dots use ``tf32x3`` on the GPU (~1e-6 relative)
    and exact products in float64 (see ``_launch.dot_precision``). Forward only: for
    gradients use ``fdseg_core.bands.band_fuse(..., backend="triton")``.

    Args:
        low: Tensor shaped like ``high`` with ``k`` on each band dim, same dtype and device.
        high: Real tensor ``(N, C, X, Y, Z)`` or ``(N, C, X, Y)``: float16, bfloat16,
            float32 or float64, on a CUDA device (or any device under ``TRITON_INTERPRET=1``).
        dims: Band dims (1 to 3 distinct spatial dims; negative allowed).
        widths: Kept width ``k`` per band dim, ``1 <= k < n``.
        impl: Kernel design, as in :func:`fdseg_kernels.band_split_triton`.

    Returns:
        Tensor shaped like ``high`` in its dtype.

    Raises:
        TypeError: Non-tensor inputs, unsupported or mismatched dtypes, non-int dims/widths.
        ValueError: Bad rank, dims, widths, shapes or kernel design, a device the kernels
            cannot run on, or an input that requires a gradient.
    """
    dims, widths = check_band_args("high", high, dims, widths)
    if not isinstance(low, torch.Tensor):
        raise TypeError(f"low must be a torch.Tensor, got {type(low).__name__}")
    check_low_matches(low, high, dims, widths)
    refuse_autograd("band_fuse_triton", low, high)
    return band_fuse_forward(low, high, dims, widths, impl=impl)
