"""Per-axis spectral operators behind the centred band split.

Everything the backends share lives here, so the torch.fft reference, the
matmul backend and the Triton kernels compute the same operator.

Definitions (one band axis of size ``n``, kept width ``k = int(n * beta)``,
``1 <= k < n``). Let ``X[f] = sum_t x[t] exp(-2 pi i f t / n)`` be the n-point
DFT. The band ``B`` is the set of frequencies ``|f| <= k / 2``:

* ``k`` odd: ``f = -(k-1)/2 .. (k-1)/2``, every bin with weight 1;
* ``k`` even: ``f = -k/2+1 .. k/2-1`` with weight 1, and the pair ``f = +-k/2``
  with weight ``1/sqrt(2)`` each. On a k-sample grid both bins alias to the
  single Nyquist bin, which can hold only the cosine (real) part of the pair;
  the ``1/sqrt(2)`` weights make the down- and up-sampling adjoint and their
  product an orthogonal projection. The sine part of the pair (invisible on
  the k-sample grid) stays in ``high``.

Down-sampling ``D`` (n -> k samples) keeps the band and evaluates the
band-limited interpolant on the coarse grid ``s * n / k``; scaled by ``k/n`` in
the spectrum so that a constant keeps its value::

    D[s, t] = 1/n * sum_{f in B} w_f cos(2 pi f (s/k - t/n))

Up-sampling ``U`` (k -> n samples) is spectral zero padding, ``U = (n/k) D^T``.
Then ``D U = I_k`` and ``P = U D`` is the orthogonal projection onto the band.
For several band axes the operators are Kronecker products of these per-axis
matrices (the band is a centred box in the shifted spectrum).

The two public operators and their adjoints follow (``c = prod_a k_a / n_a``)::

    split(x)        = (D x, x - U D x)
    fuse(low, high) = high - U (D high - low)
    split'(g_low, g_high) = fuse(c * g_low, g_high)      # vector-Jacobian product
    fuse'(g)              = (D g / c, g - U D g)          # = split(g), low scaled by 1/c
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from functools import lru_cache
from typing import Any

import torch
from torch._guards import detect_fake_mode

from fdseg_core.errors import InputError

__all__ = [
    "band_width",
    "low_band_shape",
    "low_band_shape_at",
    "band_indices",
    "downsample_matrix",
    "upsample_matrix",
    "adjoint_scale",
    "min_band_size",
    "reference_box",
    "reference_matrices",
]


def band_width(n: int, beta: float) -> int:
    """Kept width ``k = int(n * beta)`` on a band axis of size ``n``.

    Args:
        n: Size of the axis.
        beta: Relative width of the low band, in ``(0, 1)``.

    Returns:
        The number of low-band samples ``k`` (may be 0 when ``n * beta < 1``;
        callers validate that). ``floor`` rather than ``int``: equal for the
        positive sizes here, and it keeps a symbolic size (``torch.SymInt``, under
        ``torch.export`` with dynamic shapes) symbolic.
    """
    return math.floor(n * beta)


def min_band_size(beta: float) -> int:
    """The smallest axis size whose low band keeps a sample: the least ``n`` with
    ``band_width(n, beta) >= 1`` (10 for ``beta=0.1``: ``int(10 * 0.1) = 1``).

    Every check of a too-small input (the band operators, the network, the ONNX export's
    dynamic shapes, the planner) takes its bound from here.
    """
    if not 0.0 < beta < 1.0:
        raise InputError(f"beta must lie in (0, 1), got {beta}")
    n = max(1, math.ceil(1.0 / beta))
    while band_width(n, beta) < 1:  # 1 / beta rounded down by floating point
        n += 1
    while n > 1 and band_width(n - 1, beta) >= 1:
        n -= 1
    return n


def low_band_shape(
    shape: Sequence[Any], dims: Sequence[int], widths: Sequence[Any]
) -> tuple[Any, ...]:
    """The shape of the low band: ``shape`` with the kept width ``k`` on each band dim.

    Args:
        shape: Shape of the full-size tensor ``(N, C, *spatial)``.
        dims: Band dims (indices into ``shape``).
        widths: Kept width ``k`` per band dim, in the order of ``dims``.

    Returns:
        The low band's shape (sizes may be symbolic, as given).
    """
    out = list(shape)
    for d, k in zip(dims, widths, strict=True):
        out[d] = k
    return tuple(out)


def low_band_shape_at(shape: Sequence[Any], dims: Sequence[int], beta: float) -> tuple[Any, ...]:
    """:func:`low_band_shape` with ``k = band_width(n, beta)`` on each band dim of size ``n``."""
    return low_band_shape(shape, dims, [band_width(shape[d], beta) for d in dims])


def _symbolic(*sizes: Any) -> bool:
    """Whether any size is a ``torch.SymInt`` (tracing with dynamic shapes)."""
    return any(isinstance(v, torch.SymInt) for v in sizes)


def _dirichlet(phi: torch.Tensor, count: Any) -> torch.Tensor:
    """``sum_{j=0}^{count-1} exp(2 pi i j phi)`` up to its phase: ``sin(pi c phi) / sin(pi phi)``,
    with its limit ``count`` where ``phi`` is an integer (here only ``phi = 0``)."""
    den = torch.sin(math.pi * phi)
    small = den.abs() < 1e-12
    ratio = torch.sin(math.pi * count * phi) / torch.where(small, torch.ones_like(den), den)
    return torch.where(small, torch.full_like(den, 1.0) * count, ratio)


def _phase(n: Any, k: Any, device: Any) -> torch.Tensor:
    """``phi[s, t] = s / k - t / n`` in float64, shape ``(k, n)``."""
    s = torch.arange(k, dtype=torch.float64, device=device).unsqueeze(1) / k
    t = torch.arange(n, dtype=torch.float64, device=device).unsqueeze(0) / n
    return s - t


def _traced_downsample(n: Any, k: Any, dtype: torch.dtype, device: Any) -> torch.Tensor:
    """``D`` in closed form from tensor ops on the sizes, so that a trace with symbolic
    sizes (``torch.export``, ONNX export with dynamic shapes) builds it inside the graph:
    the sum over ``|f| <= (k-1)/2`` is a Dirichlet kernel, and for even ``k`` the
    ``+-k/2`` pair adds ``sqrt(2) cos(pi k phi)`` (module docstring)."""
    phi = _phase(n, k, device)
    width = 2 * ((k - 1) // 2) + 1  # bins |f| <= (k-1)/2
    out = _dirichlet(phi, width)
    even = 1 - k % 2
    out = out + even * math.sqrt(2.0) * torch.cos(math.pi * k * phi)
    return (out / n).to(dtype)


def band_indices(n: int, k: int) -> tuple[list[int], list[int], int | None]:
    """DFT bins of the centred band in the n-point and k-point FFT orders.

    Args:
        n: Size of the full axis.
        k: Kept width, ``1 <= k < n``.

    Returns:
        ``(full_bins, coarse_bins, nyquist)``: the bins ``|f| < k/2`` as indices
        into the n-point spectrum and, in the same order, into the k-point
        spectrum; ``nyquist`` is ``k // 2`` when ``k`` is even (the coarse bin
        that receives the ``+-k/2`` pair, full bins ``k//2`` and ``n - k//2``),
        else ``None``.
    """
    m = (k - 1) // 2  # highest frequency with weight 1
    full = list(range(0, m + 1)) + list(range(n - m, n))
    coarse = list(range(0, m + 1)) + list(range(k - m, k))
    return full, coarse, (k // 2 if k % 2 == 0 else None)


def _tracing() -> bool:
    """Whether tensors made now are a tracer's (fake) tensors: under ``torch.export``,
    ``torch.compile`` or an active fake mode. Such tensors must never enter the caches,
    or later eager calls would get a fake matrix."""
    return (
        torch.compiler.is_exporting()
        or torch.compiler.is_compiling()
        or detect_fake_mode() is not None
    )


@lru_cache(maxsize=256)
def _downsample_float64(n: int, k: int) -> torch.Tensor:
    s = torch.arange(k, dtype=torch.float64).unsqueeze(1)
    t = torch.arange(n, dtype=torch.float64).unsqueeze(0)
    phase = s / k - t / n  # (k, n)
    out = torch.ones(k, n, dtype=torch.float64)
    for f in range(1, (k - 1) // 2 + 1):
        out += 2.0 * torch.cos(2.0 * math.pi * f * phase)
    if k % 2 == 0:
        out += math.sqrt(2.0) * torch.cos(math.pi * k * phase)
    out /= n
    out.requires_grad_(False)
    return out


def _build(n: int, k: int, dtype: torch.dtype, device: str, up: bool, cached: bool):
    d = (_downsample_float64 if cached else _downsample_float64.__wrapped__)(n, k)
    m = (d.t() * (n / k)) if up else d
    return m.to(dtype=dtype, device=device).contiguous()


@lru_cache(maxsize=256)
def _cached_matrix(n: int, k: int, dtype: torch.dtype, device: str, up: bool) -> torch.Tensor:
    return _build(n, k, dtype, device, up, True)


def _check_width(n: Any, k: Any) -> None:
    if not 1 <= k < n:
        raise InputError(f"band width k={k} must satisfy 1 <= k < n={n}")


def _matrix(
    n: Any, k: Any, dtype: torch.dtype, device: torch.device | str, up: bool
) -> torch.Tensor:
    """``D`` (or, with ``up``, ``U``) after checking ``1 <= k < n``: built in the graph
    for symbolic sizes, from the cache otherwise, or afresh (and not cached) under a
    tracer."""
    _check_width(n, k)
    if _symbolic(n, k):
        if up:
            return (_traced_downsample(n, k, torch.float64, device).t() * (n / k)).to(dtype)
        return _traced_downsample(n, k, dtype, device)
    device = str(torch.device(device))
    if _tracing():
        return _build(n, k, dtype, device, up, False)
    return _cached_matrix(n, k, dtype, device, up)


def downsample_matrix(
    n: int, k: int, *, dtype: torch.dtype = torch.float64, device: torch.device | str = "cpu"
) -> torch.Tensor:
    """The real ``(k, n)`` matrix ``D`` of band-limited down-sampling.

    Args:
        n: Size of the full axis.
        k: Kept width, ``1 <= k < n``.
        dtype: Floating dtype of the result (computed in float64, then cast).
        device: Device of the result.

    Returns:
        Tensor of shape ``(k, n)``; cached per ``(n, k, dtype, device)``, do not
        modify it in place.
    """
    return _matrix(n, k, dtype, device, up=False)


def upsample_matrix(
    n: int, k: int, *, dtype: torch.dtype = torch.float64, device: torch.device | str = "cpu"
) -> torch.Tensor:
    """The real ``(n, k)`` matrix ``U = (n/k) D^T`` of spectral zero-padding.

    Args:
        n: Size of the full axis.
        k: Kept width, ``1 <= k < n``.
        dtype: Floating dtype of the result.
        device: Device of the result.

    Returns:
        Tensor of shape ``(n, k)``; cached, do not modify it in place.
    """
    return _matrix(n, k, dtype, device, up=True)


def adjoint_scale(sizes: tuple[int, ...], widths: tuple[int, ...]) -> float:
    """``c = prod_a k_a / n_a``: relates ``D^T`` and ``U`` (``D^T = c U`` over all band axes).

    Args:
        sizes: Full sizes ``n_a`` of the band axes.
        widths: Kept widths ``k_a``.

    Returns:
        The product of the ratios.
    """
    c = 1.0
    for n, k in zip(sizes, widths, strict=True):
        c *= k / n
    return c


def reference_box(n: int, k: int) -> slice:
    """The paper code's box on one axis: ``[int(n/2 - k/2), int(n/2 + k/2))``.

    Args:
        n: Axis size.
        k: Kept width.

    Returns:
        The slice of the *unshifted* spectrum that the paper's code calls "low".
    """
    start = int(n / 2 - k / 2)
    return slice(start, start + k)


@lru_cache(maxsize=128)
def _reference_complex128(n: int, k: int) -> tuple[torch.Tensor, torch.Tensor]:
    box = reference_box(n, k)
    # A = F_k^-1 S F_n: the box of the unshifted n-point spectrum, inverted on k points
    a = torch.fft.ifft(torch.fft.fft(torch.eye(n, dtype=torch.complex128), dim=0)[box], dim=0)
    # V = F_n^-1 S^T F_k: a k-point spectrum pasted into the box, inverted on n points
    spec = torch.zeros(n, k, dtype=torch.complex128)
    spec[box] = torch.fft.fft(torch.eye(k, dtype=torch.complex128), dim=0)
    v = torch.fft.ifft(spec, dim=0)
    return a, v


def _reference_build(
    n: int, k: int, dtype: torch.dtype, device: str, cached: bool
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
    a, v = (_reference_complex128 if cached else _reference_complex128.__wrapped__)(n, k)
    parts = (a.real, a.imag, v.real, v.imag)
    return tuple(p.to(dtype=dtype, device=device).contiguous() for p in parts)  # type: ignore[return-value]


@lru_cache(maxsize=256)
def _reference_matrix_cache(
    n: int, k: int, dtype: torch.dtype, device: str
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
    return _reference_build(n, k, dtype, device, True)


def _reference_cached(
    n: int, k: int, dtype: torch.dtype, device: str
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
    """The reference matrices from the cache, or built afresh (not cached) under a tracer."""
    if _tracing():
        return _reference_build(n, k, dtype, device, False)
    return _reference_matrix_cache(n, k, dtype, device)


def _traced_reference(
    n: Any, k: Any, dtype: torch.dtype, device: Any
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
    """The reference matrices in closed form (see :func:`_traced_downsample`):
    ``A[s, t] = 1/k sum_{j<k} exp(2 pi i (j phi - b t / n))`` with ``phi = s/k - t/n`` and
    ``b`` the box start, a geometric sum ``exp(i pi (k-1) phi) sin(pi k phi) / sin(pi phi)``;
    ``V[t, s] = (k/n) conj(A[s, t])``."""
    start = (n - k) // 2  # int(n/2 - k/2) for n > k
    phi = _phase(n, k, device)
    t = torch.arange(n, dtype=torch.float64, device=device).unsqueeze(0)
    angle = math.pi * (k - 1) * phi - 2.0 * math.pi * start * t / n
    magnitude = _dirichlet(phi, k) / k
    a_re, a_im = magnitude * torch.cos(angle), magnitude * torch.sin(angle)
    v_re, v_im = a_re.t() * (k / n), -a_im.t() * (k / n)
    return tuple(p.to(dtype) for p in (a_re, a_im, v_re, v_im))  # type: ignore[return-value]


def reference_matrices(
    n: int, k: int, *, dtype: torch.dtype = torch.float64, device: torch.device | str = "cpu"
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
    """The per-axis operators of ``layout="reference"`` (the paper's public code), as
    real and imaginary parts.

    The code cuts the box :func:`reference_box` out of the *unshifted* n-point
    spectrum. Along one axis its "low" image is ``A x`` with
    ``A = F_k^-1 S F_n`` (``S`` selects the box, ``F`` are DFT matrices) and the
    spectrum it zeroes is ``P x`` with ``P = V A``, ``V = F_n^-1 S^T F_k``. Over
    several band axes both are Kronecker products of these matrices, so the
    paper's operators are::

        split(x)        = (Re(A x), x - Re(V A x))
        fuse(low, high) = high - Re(V (A high - low))

    the same structure as the centred operators with complex matrices.

    Args:
        n: Size of the full axis.
        k: Kept width, ``1 <= k < n``.
        dtype: Real dtype of the results (computed in float64, then cast).
        device: Device of the results.

    Returns:
        ``(Re A, Im A, Re V, Im V)``, shapes ``(k, n)`` and ``(n, k)``; cached for
        concrete sizes (do not modify them), built from tensor ops for symbolic ones.
    """
    _check_width(n, k)
    if dtype.is_complex:
        raise InputError(f"reference matrices come as real parts, got dtype {dtype}")
    if _symbolic(n, k):
        return _traced_reference(n, k, dtype, device)
    return _reference_cached(n, k, dtype, str(torch.device(device)))
