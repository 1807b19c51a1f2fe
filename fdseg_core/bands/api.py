"""Public band operators: validation, then the call into the custom ops.

The backend names and their per-call resolution live in :mod:`fdseg_core.bands.dispatch`,
the custom ops and their autograd in :mod:`fdseg_core.bands.ops`; ``BACKENDS`` and
``LAYOUTS`` come from :mod:`fdseg_core.choices` (re-exported here and by
:mod:`fdseg_core.bands`).
"""

from __future__ import annotations

import numbers
from collections.abc import Sequence
from typing import Literal

import torch

from fdseg_core.bands import matmul as _matmul
from fdseg_core.bands.checks import check_low_matches
from fdseg_core.bands.dispatch import available_backends, check_names, resolve_backend
from fdseg_core.bands.operators import band_width, min_band_size
from fdseg_core.bands.ops import band_fuse_op, band_split_op
from fdseg_core.choices import (
    BACKENDS,
    DEFAULT_BAND_DIMS,
    DEFAULT_BETA,
    DEFAULT_KERNEL,
    KERNELS,
    LAYOUTS,
)
from fdseg_core.errors import InputError

__all__ = [
    "BACKENDS",
    "KERNELS",
    "LAYOUTS",
    "Backend",
    "Kernel",
    "Layout",
    "available_backends",
    "band_fuse",
    "check_low_matches",
    "band_split",
    "resolve_backend",
    "validate_fuse",
    "validate_split",
]

Layout = Literal["centered", "reference"]
Backend = Literal["auto", "torch", "matmul", "triton"]
Kernel = Literal["per_axis", "fused", "auto"]


def _check_tensor(name: str, t: object) -> torch.Tensor:
    if not isinstance(t, torch.Tensor):
        raise TypeError(f"{name} must be a torch.Tensor, got {type(t).__name__}")
    if t.is_complex():
        raise TypeError(f"{name} must be real, got complex dtype {t.dtype}")
    if not t.is_floating_point():
        raise TypeError(f"{name} must have a floating dtype, got {t.dtype}")
    if t.ndim not in (4, 5):
        raise InputError(
            f"{name} must have shape (N, C, *spatial) with 2 or 3 spatial dims, "
            f"got {t.ndim} dims {tuple(t.shape)}"
        )
    return t


def _check_beta(beta: object) -> float:
    if isinstance(beta, bool) or not isinstance(beta, numbers.Real):
        raise TypeError(f"beta must be a real number in (0, 1), got {beta!r}")
    if not 0.0 < float(beta) < 1.0:
        raise InputError(f"beta must lie in (0, 1), got {beta!r}")
    return float(beta)


def _check_dims(dims: object, ndim: int) -> tuple[int, ...]:
    if isinstance(dims, int) and not isinstance(dims, bool):
        dims = (dims,)
    if not isinstance(dims, Sequence) or isinstance(dims, str) or len(dims) == 0:
        raise TypeError(f"dims must be a non-empty sequence of ints, got {dims!r}")
    out = []
    for d in dims:
        if isinstance(d, bool) or not isinstance(d, numbers.Integral):
            raise TypeError(f"dims must hold ints, got {d!r} in {dims!r}")
        norm = int(d) + ndim if d < 0 else int(d)
        if not 2 <= norm < ndim:
            raise InputError(
                f"dims={tuple(dims)!r}: dim {d} is not a spatial dim of a {ndim}-dim tensor "
                f"(spatial dims are {tuple(range(2, ndim))})"
            )
        out.append(norm)
    if len(set(out)) != len(out):
        raise InputError(f"dims={tuple(dims)!r} repeats a dim")
    return tuple(sorted(out))


def _widths(shape: torch.Size, dims: tuple[int, ...], beta: float) -> tuple[int, ...]:
    widths = []
    for d in dims:
        n = shape[d]
        k = band_width(n, beta)
        if k < 1:
            need = min_band_size(beta)
            raise InputError(
                f"beta={beta} keeps k=int({n} * {beta})=0 samples on dim {d} of size {n}; "
                f"dim {d} needs size >= {need} (k = int(n * beta) must be >= 1)"
            )
        widths.append(k)
    return tuple(widths)


def validate_split(
    x: object, beta: object, dims: object
) -> tuple[tuple[int, ...], tuple[int, ...]]:
    """Check the arguments of a split; return ``(band_dims, widths)``."""
    x = _check_tensor("x", x)
    beta = _check_beta(beta)
    band_dims = _check_dims(dims, x.ndim)
    return band_dims, _widths(x.shape, band_dims, beta)


def validate_fuse(
    low: object, high: object, beta: object, dims: object
) -> tuple[tuple[int, ...], tuple[int, ...]]:
    """Check the arguments of a fusion; return ``(band_dims, widths)``."""
    high = _check_tensor("high", high)
    low = _check_tensor("low", low)
    beta = _check_beta(beta)
    band_dims = _check_dims(dims, high.ndim)
    widths = _widths(high.shape, band_dims, beta)
    check_low_matches(low, high, band_dims, widths)
    return band_dims, widths


def band_split(
    x: torch.Tensor,
    beta: float = DEFAULT_BETA,
    *,
    dims: Sequence[int] = DEFAULT_BAND_DIMS,
    layout: Layout = "centered",
    backend: Backend = "auto",
    kernel: Kernel = DEFAULT_KERNEL,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Split a volume into its low- and high-frequency bands (Fu et al. 2023).

    With ``layout="centered"`` (the paper's description) and ``k = int(n * beta)``
    on every band dim of size ``n``:

    * ``low`` is the band-limited resampling of ``x`` onto a k-sample grid: the
      frequencies ``|f| <= k/2`` of the n-point DFT, scaled so that a constant
      volume keeps its value. For even ``k`` the pair ``f = +-k/2`` enters with
      weight ``1/sqrt(2)`` each, so ``low`` holds its cosine part and ``high``
      its sine part (see :mod:`fdseg_core.bands.operators`).
    * ``high = x - U(low)`` with ``U`` the spectral zero-padding back to ``n``
      samples: ``x`` without its low band.

    ``layout="reference"`` reproduces the paper's public code, whose FFT is not
    shifted: its "low" box is the *middle* of the unshifted spectrum (the highest
    in-plane frequencies), with raw unnormalised spectra (see ``docs/bands.md``).

    Args:
        x: Real tensor ``(N, C, X, Y, Z)`` or ``(N, C, X, Y)``, float16/32/64 or bfloat16.
        beta: Relative width of the low band, in ``(0, 1)``.
        dims: Tensor dims that carry the band (spatial dims; negative allowed).
            Other spatial dims keep all their frequencies.
        layout: ``"centered"`` or ``"reference"``.
        backend: ``"auto"``, ``"torch"`` (torch.fft reference), ``"matmul"``
            (truncated-DFT matmuls) or ``"triton"`` (fused GPU kernels).
        kernel: Design of the Triton kernels, used when the Triton backend serves the
            call (forward and backward): ``"per_axis"`` (one launch per axis and
            direction), ``"fused"`` (two-pass kernels where two adjacent band dims
            allow them, per-axis elsewhere) or ``"auto"`` (fused where it applies).

    Returns:
        ``(low, high)``: ``low`` has x's shape with each band dim of size ``k``;
        ``high`` has x's shape. Both real, with x's dtype and device, and
        differentiable with respect to ``x``.

    Raises:
        TypeError: ``x`` is not a real floating tensor, or bad argument types.
        ValueError: Bad rank, dims, beta, layout or backend, or ``k < 1``.

    Example:
        >>> x = torch.randn(1, 1, 40, 40, 16)
        >>> low, high = band_split(x, 0.1)
        >>> low.shape, high.shape
        (torch.Size([1, 1, 4, 4, 16]), torch.Size([1, 1, 40, 40, 16]))
    """
    band_dims, widths = validate_split(x, beta, dims)
    check_names(layout, backend, kernel)
    if torch.compiler.is_exporting():  # torch.export / ONNX: plain matmuls in the graph
        fn = _matmul.split_reference if layout == "reference" else _matmul.split
        return fn(x, band_dims, widths)
    return band_split_op(x, list(band_dims), list(widths), layout, backend, False, kernel)


def band_fuse(
    low: torch.Tensor,
    high: torch.Tensor,
    beta: float = DEFAULT_BETA,
    *,
    dims: Sequence[int] = DEFAULT_BAND_DIMS,
    layout: Layout = "centered",
    backend: Backend = "auto",
    kernel: Kernel = DEFAULT_KERNEL,
) -> torch.Tensor:
    """Fuse feature maps in the frequency domain: ``low``'s spectrum replaces ``high``'s band.

    With ``layout="centered"``: ``high - U(D(high)) + U(low)``, where ``D`` is the
    resampling used by :func:`band_split`; hence ``band_fuse(*band_split(x)) == x``
    up to float rounding. ``layout="reference"`` pastes ``fftn(low)`` into the
    unshifted box of ``fftn(high)`` as the paper's code does.

    Args:
        low: Real tensor, ``high``'s shape with each band dim of size ``k = int(n * beta)``.
        high: Real tensor ``(N, C, X, Y, Z)`` or ``(N, C, X, Y)``.
        beta: Relative width of the band, in ``(0, 1)``.
        dims: Band dims, as in :func:`band_split`.
        layout: ``"centered"`` or ``"reference"``.
        backend: ``"auto"``, ``"torch"``, ``"matmul"`` or ``"triton"``.
        kernel: Design of the Triton kernels, as in :func:`band_split`.

    Returns:
        Tensor shaped like ``high``, with its dtype and device, differentiable
        with respect to both inputs.

    Raises:
        TypeError: Non-tensor, complex or integer inputs, or mismatched dtypes.
        ValueError: Shapes that do not match, tensors on different devices, or
            bad beta, dims, layout or backend.
    """
    band_dims, widths = validate_fuse(low, high, beta, dims)
    check_names(layout, backend, kernel)
    if torch.compiler.is_exporting():  # torch.export / ONNX: plain matmuls in the graph
        fn = _matmul.fuse_reference if layout == "reference" else _matmul.fuse
        return fn(low, high, band_dims, widths)
    return band_fuse_op(low, high, list(band_dims), list(widths), layout, backend, False, kernel)
