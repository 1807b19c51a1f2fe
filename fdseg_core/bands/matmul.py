"""The ``"matmul"`` backend: the band operators as truncated-DFT matmuls.

The centred box is separable and low rank: along each band axis the projection
onto the band has rank ``k``, and because the band is symmetric its per-axis
down-/up-sampling operators are *real* ``(k, n)`` / ``(n, k)`` matrices
(:mod:`fdseg_core.bands.operators`). Applying them with plain real matmuls
avoids every full-size complex FFT and every complex copy of the volume: the only
full-size tensor written is the output.

Both ops share one core, ``small = D(a) - b`` then ``out = a - U(small)``. Their
vector-Jacobian products are each other (see ``operators``); the autograd formula
lives with the custom ops (:mod:`fdseg_core.bands.ops`), which call the plain
functions here.

The paper code's unshifted box (``layout="reference"``) is just as separable and
low rank; its per-axis operators are complex ``(k, n)`` / ``(n, k)`` matrices
(:func:`~fdseg_core.bands.operators.reference_matrices`), applied as real and
imaginary parts. The first down-sampling is one real matmul with the real and
imaginary rows stacked, the steps on the small tensor are pairs of real matmuls, and
the last up-sampling is again one real ``baddbmm`` (``[Re V, -Im V]`` on
``[Re t; Im t]``) that writes the output once. Gradients come from autograd.

The matrices are cached per size; under a trace with symbolic sizes (``torch.export``
with dynamic shapes, ONNX export) they are built from tensor ops inside the graph.
"""

from __future__ import annotations

import math

import torch

from fdseg_core.bands.operators import (
    downsample_matrix,
    reference_matrices,
    upsample_matrix,
)

__all__ = ["split", "fuse", "split_reference", "fuse_reference"]

_LOW_PRECISION = (torch.float16, torch.bfloat16)


def _compute_dtype(dtype: torch.dtype) -> torch.dtype:
    return torch.float32 if dtype in _LOW_PRECISION else dtype


def _apply_along(t: torch.Tensor, matrix: torch.Tensor, dim: int) -> torch.Tensor:
    """Multiply ``matrix`` ``(m, n)`` along ``dim`` (size ``n``) of ``t``."""
    shape = t.shape
    n = shape[dim]
    pre = math.prod(shape[:dim])
    post = math.prod(shape[dim + 1 :])
    out_shape = (*shape[:dim], matrix.shape[0], *shape[dim + 1 :])
    if post == 1:
        return (t.reshape(pre, n) @ matrix.t()).reshape(out_shape)
    return torch.matmul(matrix, t.reshape(pre, n, post)).reshape(out_shape)


def _down(a: torch.Tensor, dims: tuple[int, ...], widths: tuple[int, ...]) -> torch.Tensor:
    for d, k in zip(dims, widths, strict=True):
        a = _apply_along(a, downsample_matrix(a.shape[d], k, dtype=a.dtype, device=a.device), d)
    return a


def _up(small: torch.Tensor, dims: tuple[int, ...], sizes: tuple[int, ...]) -> torch.Tensor:
    for d, n in zip(dims, sizes, strict=True):
        u = upsample_matrix(n, small.shape[d], dtype=small.dtype, device=small.device)
        small = _apply_along(small, u, d)
    return small


def _subtract_along(a: torch.Tensor, u: torch.Tensor, t: torch.Tensor, dim: int) -> torch.Tensor:
    """``a - u t`` along ``dim``: ``u`` ``(n, m)``, ``t`` shaped like ``a`` but of size
    ``m`` along ``dim``; one ``addmm`` or ``baddbmm`` that writes the output once."""
    n, m = u.shape
    pre = math.prod(a.shape[:dim])
    post = math.prod(a.shape[dim + 1 :])
    if post == 1:
        out = torch.addmm(a.reshape(pre, n), t.reshape(pre, m), u.t(), alpha=-1.0)
    else:
        out = torch.baddbmm(
            a.reshape(pre, n, post), u.expand(pre, n, m), t.reshape(pre, m, post), alpha=-1.0
        )
    return out.reshape(a.shape)


def _subtract_up(a: torch.Tensor, small: torch.Tensor, dims: tuple[int, ...]) -> torch.Tensor:
    """``a - U(small)``, the last axis fused into the subtraction that writes the output."""
    sizes = tuple(a.shape[d] for d in dims)
    t = _up(small, dims[:-1], sizes[:-1])
    d = dims[-1]
    u = upsample_matrix(sizes[-1], small.shape[d], dtype=a.dtype, device=a.device)
    return _subtract_along(a, u, t, d)


def _split_forward(x: torch.Tensor, dims: tuple[int, ...], widths: tuple[int, ...]):
    low = _down(x, dims, widths)
    return low, _subtract_up(x, low, dims)


def _fuse_forward(
    low: torch.Tensor, high: torch.Tensor, dims: tuple[int, ...], widths: tuple[int, ...]
) -> torch.Tensor:
    return _subtract_up(high, _down(high, dims, widths) - low, dims)


def split(
    x: torch.Tensor, dims: tuple[int, ...], widths: tuple[int, ...]
) -> tuple[torch.Tensor, torch.Tensor]:
    """Centred band split with per-axis real matmuls (no autograd here: the custom op
    :func:`fdseg_core.bands.ops.band_split_op` registers it).

    Args:
        x: Real tensor ``(N, C, *spatial)`` (validated by the caller).
        dims: Band dims, increasing.
        widths: Kept width ``k`` per band dim.

    Returns:
        ``(low, high)`` with x's dtype; float16/bfloat16 compute in float32.
    """
    work = _compute_dtype(x.dtype)
    low, high = _split_forward(x.to(work).contiguous(), dims, widths)
    return low.to(x.dtype), high.to(x.dtype)


def fuse(
    low: torch.Tensor,
    high: torch.Tensor,
    dims: tuple[int, ...],
    widths: tuple[int, ...],
    *,
    low_scale: float = 1.0,
) -> torch.Tensor:
    """Centred band fusion with per-axis real matmuls.

    Args:
        low: Real tensor, high's shape with each band dim of size ``k``.
        high: Real tensor ``(N, C, *spatial)``.
        dims: Band dims, increasing.
        widths: Kept width ``k`` per band dim.
        low_scale: ``s`` in ``high - U (D high - s low)`` (the transposed fusion
            uses ``c = prod k / n``).

    Returns:
        ``high - U (D high - s low)`` with high's dtype.
    """
    work = _compute_dtype(high.dtype)
    lo = low.to(work)
    if low_scale != 1.0:
        lo = lo * low_scale
    return _fuse_forward(lo.contiguous(), high.to(work).contiguous(), dims, widths).to(high.dtype)


# ---- layout="reference": the paper's unshifted box, with complex per-axis matrices ----
# Complex tensors are carried as (real, imaginary) pairs of real tensors, so that the
# path runs on every backend that runs real matmuls (ONNX export included).


def _complex_along(
    re: torch.Tensor, im: torch.Tensor, m_re: torch.Tensor, m_im: torch.Tensor, dim: int
) -> tuple[torch.Tensor, torch.Tensor]:
    """``(M_re + i M_im)(re + i im)`` along ``dim``, as two real tensors."""
    return (
        _apply_along(re, m_re, dim) - _apply_along(im, m_im, dim),
        _apply_along(im, m_re, dim) + _apply_along(re, m_im, dim),
    )


def _matrices(n, k, dtype, device, transposed: bool):
    """``(Re A, Im A, Re V, Im V)``, or with ``transposed`` those of the transposed
    operators, ``(A, V) -> (V^T, A^T)``."""
    a_re, a_im, v_re, v_im = reference_matrices(n, k, dtype=dtype, device=device)
    if transposed:
        return v_re.t(), v_im.t(), a_re.t(), a_im.t()
    return a_re, a_im, v_re, v_im


def _reference_small(
    a: torch.Tensor, dims: tuple[int, ...], widths: tuple[int, ...], transposed: bool = False
) -> tuple[torch.Tensor, torch.Tensor]:
    """``A a`` over every band dim, ``a`` real, as ``(Re, Im)``.

    The first axis is one real matmul with ``[Re A; Im A]`` stacked (``2k`` rows), so
    the full-size input is read once and no complex copy of it is made.
    """
    d0, k0 = dims[0], widths[0]
    a_re, a_im, _, _ = _matrices(a.shape[d0], k0, a.dtype, a.device, transposed)
    stacked = _apply_along(a, torch.cat([a_re, a_im]), d0)
    re, im = stacked.narrow(d0, 0, k0), stacked.narrow(d0, k0, k0)
    for d, k in zip(dims[1:], widths[1:], strict=True):
        m_re, m_im, _, _ = _matrices(re.shape[d], k, a.dtype, a.device, transposed)
        re, im = _complex_along(re, im, m_re, m_im, d)
    return re, im


def _reference_residual(
    a: torch.Tensor,
    re: torch.Tensor,
    im: torch.Tensor,
    dims: tuple[int, ...],
    transposed: bool = False,
) -> torch.Tensor:
    """``a - Re(V (re + i im))`` over every band dim; the last axis is one real
    ``baddbmm`` with ``[Re V, -Im V]`` on ``[re; im]`` that writes the output once."""
    for d in dims[:-1]:
        _, _, v_re, v_im = _matrices(a.shape[d], re.shape[d], a.dtype, a.device, transposed)
        re, im = _complex_along(re, im, v_re, v_im, d)
    d = dims[-1]
    _, _, v_re, v_im = _matrices(a.shape[d], re.shape[d], a.dtype, a.device, transposed)
    u = torch.cat([v_re, -v_im], dim=1)  # (n, 2k)
    return _subtract_along(a, u, torch.cat([re, im], dim=d), d)


def split_reference(
    x: torch.Tensor, dims: tuple[int, ...], widths: tuple[int, ...], *, transposed: bool = False
) -> tuple[torch.Tensor, torch.Tensor]:
    """The paper code's split (unshifted box) with per-axis matmuls, no full-size FFT.

    ``low = Re(A x)``, ``high = x - Re(V A x)`` with the complex per-axis matrices of
    :func:`~fdseg_core.bands.operators.reference_matrices`, carried as real and
    imaginary parts; equal to the torch.fft backend's ``layout="reference"`` up to
    float rounding. Gradients come from autograd through the real matmuls.

    Args:
        x: Real tensor ``(N, C, *spatial)`` (validated by the caller).
        dims: Band dims, increasing.
        widths: Box width ``k`` per band dim.
        transposed: The transposed operators, ``(A, V) -> (V^T, A^T)`` (the fusion's
            vector-Jacobian product).

    Returns:
        ``(low, high)`` with x's dtype; float16/bfloat16 compute in float32.
    """
    work = _compute_dtype(x.dtype)
    a = x.to(work)
    re, im = _reference_small(a, dims, widths, transposed)
    high = _reference_residual(a, re, im, dims, transposed)
    return re.to(x.dtype), high.to(x.dtype)


def fuse_reference(
    low: torch.Tensor,
    high: torch.Tensor,
    dims: tuple[int, ...],
    widths: tuple[int, ...],
    *,
    transposed: bool = False,
) -> torch.Tensor:
    """The paper code's fusion (``fftn(low)`` pasted into the unshifted box of
    ``fftn(high)``, real part) with per-axis matmuls: ``high - Re(V (A high - low))``.

    Args:
        low: Real tensor, high's shape with each band dim of size ``k``.
        high: Real tensor ``(N, C, *spatial)``.
        dims: Band dims, increasing.
        widths: Box width ``k`` per band dim.
        transposed: The transposed operators (the split's vector-Jacobian product).

    Returns:
        Tensor shaped like ``high`` with its dtype.
    """
    work = _compute_dtype(high.dtype)
    a = high.to(work)
    re, im = _reference_small(a, dims, widths, transposed)
    return _reference_residual(a, re - low.to(work), im, dims, transposed).to(high.dtype)
