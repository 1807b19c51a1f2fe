"""Shape checks shared by the public band operators and the Triton kernels.

Low in the layering (it imports only :mod:`fdseg_core.bands.operators`), so that the
kernels (:mod:`fdseg_kernels`) validate their inputs with the same messages as
:func:`fdseg_core.bands.band_fuse` without importing the public API above them.
"""

from __future__ import annotations

import torch

from fdseg_core.bands.operators import low_band_shape
from fdseg_core.errors import InputError

__all__ = ["check_low_matches"]


def check_low_matches(
    low: torch.Tensor, high: torch.Tensor, dims: tuple[int, ...], widths: tuple[int, ...]
) -> None:
    """``low`` must be ``high``'s shape with ``widths`` on ``dims``, same device and dtype.

    Raises:
        ValueError: Shape or device mismatch (the message gives both shapes).
        TypeError: Dtype mismatch.
    """
    expected = low_band_shape(high.shape, dims, widths)
    if tuple(low.shape) != expected:
        raise InputError(
            f"low has shape {tuple(low.shape)}, expected {expected} "
            f"(high's shape {tuple(high.shape)} with k={list(widths)} on dims {list(dims)})"
        )
    if low.device != high.device:
        raise InputError(f"low is on {low.device} but high is on {high.device}")
    if low.dtype != high.dtype:
        raise TypeError(f"low has dtype {low.dtype} but high has dtype {high.dtype}")
