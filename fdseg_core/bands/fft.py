"""The ``"torch"`` backend: band operators written with ``torch.fft``, for clarity.

This is the reference of truth that every other backend is tested against, for
both layouts (``"reference"``: the paper's public code).
Gradients come from torch's own autograd through the FFTs.
"""

from __future__ import annotations

import math

import torch

from fdseg_core.bands.operators import band_indices, reference_box

__all__ = [
    "split_centered",
    "fuse_centered",
    "split_reference",
    "fuse_reference",
    "reference_box",
]


def _crop_spectrum(spec: torch.Tensor, dim: int, n: int, k: int) -> torch.Tensor:
    """Keep the centred band of an n-point spectrum as a k-point spectrum (scaled by k/n)."""
    full, coarse, nyq = band_indices(n, k)
    idx = torch.tensor(full, device=spec.device)
    kept = spec.index_select(dim, idx)
    if nyq is not None:
        pair = spec.narrow(dim, nyq, 1) + spec.narrow(dim, n - nyq, 1)
        m = (k - 1) // 2
        kept = torch.cat(
            [kept.narrow(dim, 0, m + 1), pair / math.sqrt(2.0), kept.narrow(dim, m + 1, m)], dim
        )
    return kept * (k / n)


def _pad_spectrum(spec: torch.Tensor, dim: int, n: int, k: int) -> torch.Tensor:
    """Zero-pad a k-point spectrum to n points (scaled by n/k): the adjoint of the crop."""
    full, coarse, nyq = band_indices(n, k)
    shape = list(spec.shape)
    shape[dim] = n
    out = spec.new_zeros(shape)
    src = spec.index_select(dim, torch.tensor(coarse, device=spec.device))
    out = out.index_copy(dim, torch.tensor(full, device=spec.device), src)
    if nyq is not None:
        half = spec.narrow(dim, nyq, 1) / math.sqrt(2.0)
        out = out.index_copy(
            dim, torch.tensor([nyq, n - nyq], device=spec.device), torch.cat([half, half], dim)
        )
    return out * (n / k)


def _crop(spec: torch.Tensor, dims: tuple[int, ...], widths: tuple[int, ...]) -> torch.Tensor:
    for d, k in zip(dims, widths, strict=True):
        spec = _crop_spectrum(spec, d, spec.shape[d], k)
    return spec


def _pad(
    spec: torch.Tensor, dims: tuple[int, ...], sizes: tuple[int, ...], widths: tuple[int, ...]
) -> torch.Tensor:
    for d, n, k in zip(dims, sizes, widths, strict=True):
        spec = _pad_spectrum(spec, d, n, k)
    return spec


def split_centered(
    x: torch.Tensor, dims: tuple[int, ...], widths: tuple[int, ...]
) -> tuple[torch.Tensor, torch.Tensor]:
    """Centred band split with full FFTs: ``low = D x``, ``high = x - U D x``.

    Args:
        x: Real tensor ``(N, C, *spatial)``.
        dims: Band dims (validated by the caller).
        widths: Kept width ``k`` per band dim.

    Returns:
        ``(low, high)``: low has each band dim of size ``k``; high has x's shape.
    """
    sizes = tuple(x.shape[d] for d in dims)
    spec = torch.fft.fftn(x, dim=dims)
    low_spec = _crop(spec, dims, widths)
    low = torch.fft.ifftn(low_spec, dim=dims).real
    band = _pad(low_spec, dims, sizes, widths)
    high = torch.fft.ifftn(spec - band, dim=dims).real
    return low, high


def fuse_centered(
    low: torch.Tensor, high: torch.Tensor, dims: tuple[int, ...], widths: tuple[int, ...]
) -> torch.Tensor:
    """Centred band fusion: the spectrum of ``low`` replaces the band of ``high``'s spectrum.

    Args:
        low: Real tensor, high's shape with each band dim of size ``k``.
        high: Real tensor ``(N, C, *spatial)``.
        dims: Band dims.
        widths: Kept width ``k`` per band dim.

    Returns:
        ``high - U D high + U low``, shaped like ``high``.
    """
    sizes = tuple(high.shape[d] for d in dims)
    spec = torch.fft.fftn(high, dim=dims)
    own_band = _pad(_crop(spec, dims, widths), dims, sizes, widths)
    new_band = _pad(torch.fft.fftn(low, dim=dims), dims, sizes, widths)
    return torch.fft.ifftn(spec - own_band + new_band, dim=dims).real


def _box_index(
    ndim: int, dims: tuple[int, ...], sizes: tuple[int, ...], widths: tuple[int, ...]
) -> tuple[slice, ...]:
    index = [slice(None)] * ndim
    for d, n, k in zip(dims, sizes, widths, strict=True):
        index[d] = reference_box(n, k)
    return tuple(index)


def _outside_box(
    ndim: int,
    dims: tuple[int, ...],
    sizes: tuple[int, ...],
    widths: tuple[int, ...],
    dtype: torch.dtype,
    device: torch.device,
) -> torch.Tensor:
    """Broadcastable 0/1 mask: 0 inside the paper's box, 1 elsewhere."""
    shape = [1] * ndim
    for d, n in zip(dims, sizes, strict=True):
        shape[d] = n
    mask = torch.ones(shape, dtype=dtype, device=device)
    mask[_box_index(ndim, dims, sizes, widths)] = 0
    return mask


def split_reference(
    x: torch.Tensor, dims: tuple[int, ...], widths: tuple[int, ...], *, transposed: bool = False
) -> tuple[torch.Tensor, torch.Tensor]:
    """The paper's public code: a box cut from the middle of the unshifted spectrum.

    The FFT is not shifted, so the box holds the highest frequencies of the
    band dims; raw (unnormalised) spectra are inverted and the real part kept.

    Args:
        x: Real tensor ``(N, C, *spatial)``.
        dims: Band dims.
        widths: Box width ``k`` per band dim.
        transposed: The transposed operators (``fftn`` and ``ifftn`` swap roles: the
            DFT matrices are symmetric), the fusion's vector-Jacobian product.

    Returns:
        ``(low, high)`` as the paper's training loop computes them.
    """
    forward, inverse = _transforms(transposed)
    sizes = tuple(x.shape[d] for d in dims)
    spec = forward(x, dim=dims)
    box = _box_index(x.ndim, dims, sizes, widths)
    low = inverse(spec[box], dim=dims).real
    mask = _outside_box(x.ndim, dims, sizes, widths, x.dtype, x.device)
    high = inverse(spec * mask, dim=dims).real
    return low, high


def fuse_reference(
    low: torch.Tensor,
    high: torch.Tensor,
    dims: tuple[int, ...],
    widths: tuple[int, ...],
    *,
    transposed: bool = False,
) -> torch.Tensor:
    """The paper's public code: paste the raw spectrum of ``low`` into the unshifted box.

    Args:
        low: Real tensor, high's shape with each band dim of size ``k``.
        high: Real tensor ``(N, C, *spatial)``.
        dims: Band dims.
        widths: Box width ``k`` per band dim.
        transposed: The transposed operators (``fftn`` and ``ifftn`` swapped), the
            split's vector-Jacobian product.

    Returns:
        The real part of the inverse FFT of the merged spectrum.
    """
    forward, inverse = _transforms(transposed)
    sizes = tuple(high.shape[d] for d in dims)
    spec = forward(high, dim=dims)
    box = _box_index(high.ndim, dims, sizes, widths)
    # out-of-place paste so that autograd sees both inputs
    pasted = torch.zeros_like(spec)
    pasted[box] = forward(low, dim=dims)
    keep = _outside_box(high.ndim, dims, sizes, widths, high.dtype, high.device)
    return inverse(spec * keep + pasted, dim=dims).real


def _transforms(transposed: bool):
    """``(fftn, ifftn)``, swapped for the transposed operators."""
    if transposed:
        return torch.fft.ifftn, torch.fft.fftn
    return torch.fft.fftn, torch.fft.ifftn
