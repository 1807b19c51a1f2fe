"""The band split and fusion written the way a user would from the paper's text.

This is the *peer* that the benchmarks (``benchmarks/``, ``fdseg bench``) measure
every backend against: full complex ``fftn`` over all spatial dims, ``fftshift``,
a copy of the centred box (the low spectrum), a mask that zeroes the box (the
high spectrum), and two ``ifftn`` back to image space, keeping the real part.
It is not used for training; its outputs match the ``"centered"`` layout up to
the normalisation of ``low`` and the weighting of the even-``k`` Nyquist pair.
"""

from __future__ import annotations

import torch

from fdseg_core.bands.api import validate_fuse, validate_split
from fdseg_core.bands.operators import band_width
from fdseg_core.choices import DEFAULT_BAND_DIMS, DEFAULT_BETA

__all__ = ["paper_band_split", "paper_band_fuse"]


def _box(x_ndim: int, sizes: tuple[int, ...], dims: tuple[int, ...], beta: float):
    index = [slice(None)] * x_ndim
    for d in dims:
        n = sizes[d]
        k = band_width(n, beta)
        start = n // 2 - k // 2
        index[d] = slice(start, start + k)
    return tuple(index)


def paper_band_split(
    x: torch.Tensor, beta: float = DEFAULT_BETA, *, dims: tuple[int, ...] = DEFAULT_BAND_DIMS
) -> tuple[torch.Tensor, torch.Tensor]:
    """Paper-style split: ``fftn`` + ``fftshift``, box copy, mask, two ``ifftn``.

    Args:
        x: Real tensor ``(N, C, *spatial)``.
        beta: Relative box width.
        dims: Band dims.

    Returns:
        ``(low, high)`` as real tensors (low: band dims of size ``k``).
    """
    dims, _ = validate_split(x, beta, dims)
    spatial = tuple(range(2, x.ndim))
    spec = torch.fft.fftshift(torch.fft.fftn(x, dim=spatial), dim=dims)
    box = _box(x.ndim, tuple(x.shape), dims, beta)
    low_spec = spec[box].clone()
    mask = torch.ones_like(spec.real)
    mask[box] = 0
    high_spec = spec * mask
    low = torch.fft.ifftn(torch.fft.ifftshift(low_spec, dim=dims), dim=spatial).real
    high = torch.fft.ifftn(torch.fft.ifftshift(high_spec, dim=dims), dim=spatial).real
    return low, high


def paper_band_fuse(
    low: torch.Tensor,
    high: torch.Tensor,
    beta: float = DEFAULT_BETA,
    *,
    dims: tuple[int, ...] = DEFAULT_BAND_DIMS,
) -> torch.Tensor:
    """Paper-style fusion: paste the shifted spectrum of ``low`` into the centre of ``high``'s.

    Args:
        low: Real tensor, high's shape with band dims of size ``k``.
        high: Real tensor ``(N, C, *spatial)``.
        beta: Relative box width.
        dims: Band dims.

    Returns:
        Real tensor shaped like ``high``.
    """
    dims, _ = validate_fuse(low, high, beta, dims)
    spatial = tuple(range(2, high.ndim))
    spec = torch.fft.fftshift(torch.fft.fftn(high, dim=spatial), dim=dims)
    low_spec = torch.fft.fftshift(torch.fft.fftn(low, dim=spatial), dim=dims)
    box = _box(high.ndim, tuple(high.shape), dims, beta)
    mask = torch.ones_like(spec.real)
    mask[box] = 0
    pasted = torch.zeros_like(spec)
    pasted[box] = low_spec
    merged = spec * mask + pasted
    return torch.fft.ifftn(torch.fft.ifftshift(merged, dim=dims), dim=spatial).real
