"""fdseg_kernels: Triton kernels for the band operators (folder ``kernels/``).

Importing this package imports neither Triton nor the kernel modules: the public
functions below load their launcher module (and with it ``triton``) on their first
call. Whether the kernels can run is decided per call from the tensors' device
and the ``TRITON_INTERPRET`` environment variable as it is at that moment.

Modules, top to bottom (a module imports only modules below it):

* this package: :func:`band_split_triton` / :func:`band_fuse_triton` (loading their
  module on first use) and the checks of :mod:`~fdseg_kernels._env`;
* :mod:`~fdseg_kernels.band_split`, :mod:`~fdseg_kernels.band_fuse`: the launchers,
  validated and raw (forward only);
* :mod:`~fdseg_kernels._common`: the per-axis kernel, the choice of kernel design per
  call (``impl=``) and the argument checks;
* :mod:`~fdseg_kernels.band_fused`: the two-pass kernels;
* :mod:`~fdseg_kernels._launch`: compute dtype, dot precision, device context;
* :mod:`~fdseg_kernels._env`: Triton's presence, the interpreter switch, the device.

There is no autograd in this package: the kernels' one differentiable path is the
custom ops of :mod:`fdseg_core.bands.ops` (``band_split(..., backend="triton",
kernel=...)``), whose backward passes call these launchers with the same design.

Outside the package they import only :mod:`fdseg_core.bands.operators`,
:mod:`fdseg_core.bands.checks` and :mod:`fdseg_core.choices`. See ``kernels/README.md``
for the design note.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from fdseg_kernels._env import interpreter_enabled, triton_available, triton_runs_on

if TYPE_CHECKING:
    import torch

__all__ = [
    "band_fuse_triton",
    "band_split_triton",
    "interpreter_enabled",
    "triton_available",
    "triton_runs_on",
]


def band_split_triton(
    x: torch.Tensor, dims: tuple[int, ...], widths: tuple[int, ...], *, impl: str = "per_axis"
) -> tuple[torch.Tensor, torch.Tensor]:
    """Centred band split ``(low, high) = (D x, x - U D x)`` with the Triton kernels.

    Loads :mod:`fdseg_kernels.band_split` (and ``triton``) on first use. Forward only:
    for gradients use ``fdseg_core.bands.band_split(..., backend="triton", kernel=impl)``.

    Args:
        x: Real tensor ``(N, C, X, Y, Z)`` or ``(N, C, X, Y)`` (float16/bfloat16/
            float32/float64) on CUDA, or any device under ``TRITON_INTERPRET=1``.
        dims: Band dims (1 to 3 distinct spatial dims).
        widths: Kept width ``k`` per band dim, ``1 <= k < n``.
        impl: ``"per_axis"`` (default), ``"fused"`` (two-pass kernels where two
            adjacent band dims allow them) or ``"auto"``.

    Returns:
        ``(low, high)`` in x's dtype: ``low`` with ``k`` on each band dim, ``high``
        shaped like ``x``.

    Raises:
        TypeError: Not a tensor, or an unsupported dtype.
        ValueError: Bad rank, dims, widths or design, a device the kernels cannot run
            on, or an input that requires a gradient.
    """
    # lazy: the kernel modules import triton, an optional extra
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

    Loads :mod:`fdseg_kernels.band_fuse` (and ``triton``) on first use. Forward only:
    for gradients use ``fdseg_core.bands.band_fuse(..., backend="triton", kernel=impl)``.

    Args:
        low: Tensor shaped like ``high`` with ``k`` on each band dim, same dtype and device.
        high: Real tensor ``(N, C, X, Y, Z)`` or ``(N, C, X, Y)``.
        dims: Band dims (1 to 3 distinct spatial dims).
        widths: Kept width ``k`` per band dim, ``1 <= k < n``.
        impl: Kernel design, as in :func:`band_split_triton`.

    Returns:
        Tensor shaped like ``high`` in its dtype.

    Raises:
        TypeError: Non-tensor inputs, unsupported or mismatched dtypes.
        ValueError: Bad rank, dims, widths, shapes or design, a device the kernels cannot
            run on, or an input that requires a gradient.
    """
    # lazy: the kernel modules import triton, an optional extra
    from fdseg_kernels.band_fuse import band_fuse_triton as run

    return run(low, high, dims, widths, impl=impl)
