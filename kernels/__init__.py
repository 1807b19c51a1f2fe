"""fdseg_kernels: Triton kernels for the band operators (folder ``kernels/``).

Importing this package imports neither Triton nor the kernel modules: the public
functions below load :mod:`fdseg_kernels.band_split` / :mod:`fdseg_kernels.band_fuse`
(and with them ``triton``) on their first call. Whether the kernels can run is
decided per call from the tensors' device and the ``TRITON_INTERPRET``
environment variable as it is at that moment.

See ``kernels/README.md`` for the design note.
"""

from __future__ import annotations

import importlib.util
import os
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    import torch

__all__ = [
    "band_fuse_triton",
    "band_split_triton",
    "interpreter_enabled",
    "triton_available",
    "triton_runs_on",
]

_TRUE = frozenset({"1", "true", "on", "yes"})


def triton_available() -> bool:
    """Whether the ``triton`` package can be imported (checked without importing it)."""
    try:
        return importlib.util.find_spec("triton") is not None
    except (ImportError, ValueError):  # a broken install, or sys.modules["triton"] = None
        return False


def interpreter_enabled() -> bool:
    """Whether ``TRITON_INTERPRET`` is set to a true value (``1``/``true``/``on``/``yes``) now.

    Read at every call, never cached: Triton's own parsing of the variable is the same.
    """
    return os.environ.get("TRITON_INTERPRET", "").strip().lower() in _TRUE


def triton_runs_on(device: torch.device | str) -> bool:
    """Whether the kernels can run on ``device``.

    Args:
        device: The device of the tensors.

    Returns:
        ``True`` for a CUDA device when Triton is installed, and for any device
        when Triton is installed and ``TRITON_INTERPRET=1`` is set (Triton's
        interpreter runs the kernels with numpy on the CPU).
    """
    import torch

    if not triton_available():
        return False
    if interpreter_enabled():
        return True
    return torch.device(device).type == "cuda"


def band_split_triton(
    x: torch.Tensor, dims: tuple[int, ...], widths: tuple[int, ...], *, impl: str = "per_axis"
) -> tuple[torch.Tensor, torch.Tensor]:
    """Centred band split ``(low, high) = (D x, x - U D x)`` with the Triton kernels.

    Loads :mod:`fdseg_kernels.band_split` (and ``triton``) on first use.

    Args:
        x: Real tensor ``(N, C, D, H, W)`` or ``(N, C, H, W)`` (float16/bfloat16/
            float32/float64) on CUDA, or any device under ``TRITON_INTERPRET=1``.
        dims: Band dims (1 to 3 distinct spatial dims).
        widths: Kept width ``k`` per band dim, ``1 <= k < n``.
        impl: ``"per_axis"`` (default), ``"fused"`` (two-pass kernels where two
            adjacent band dims allow them) or ``"auto"``.

    Returns:
        ``(low, high)`` in x's dtype: ``low`` with ``k`` on each band dim, ``high``
        shaped like ``x``; differentiable.

    Raises:
        TypeError: Not a tensor, or an unsupported dtype.
        ValueError: Bad rank, dims or widths, or a device the kernels cannot run on.
    """
    from fdseg_kernels.band_split import band_split_triton as run

    return run(x, dims, widths, impl=impl)


def band_fuse_triton(
    low: torch.Tensor,
    high: torch.Tensor,
    dims: tuple[int, ...],
    widths: tuple[int, ...],
    *,
    impl: str = "per_axis",
) -> torch.Tensor:
    """Centred band fusion ``high - U (D high - low)`` with the Triton kernels.

    Loads :mod:`fdseg_kernels.band_fuse` (and ``triton``) on first use.

    Args:
        low: Tensor shaped like ``high`` with ``k`` on each band dim, same dtype and device.
        high: Real tensor ``(N, C, D, H, W)`` or ``(N, C, H, W)``.
        dims: Band dims (1 to 3 distinct spatial dims).
        widths: Kept width ``k`` per band dim, ``1 <= k < n``.
        impl: Kernel design, as in :func:`band_split_triton`.

    Returns:
        Tensor shaped like ``high`` in its dtype, differentiable in both inputs.

    Raises:
        TypeError: Non-tensor inputs, unsupported or mismatched dtypes.
        ValueError: Bad rank, dims, widths or shapes, or a device the kernels cannot run on.
    """
    from fdseg_kernels.band_fuse import band_fuse_triton as run

    return run(low, high, dims, widths, impl=impl)
