"""layout="reference" reproduces the paper's public code (restated independently here)."""

from __future__ import annotations

import pytest
import torch

from fdseg_core.bands import band_fuse, band_split


def _paper_split(x: torch.Tensor, beta: float = 0.1):
    """Restatement of the paper's training loop + ``mask_tensor``: fftn over all
    spatial dims, no shift, box [int(w/2 - m/2), int(w/2 + m/2)) on the first two
    spatial dims, where w is the size of the first spatial dim."""
    spatial = tuple(range(2, x.ndim))
    spec = torch.fft.fftn(x, dim=spatial)
    w = x.shape[2]
    m = int(w * beta)
    a, b = int(w / 2 - m / 2), int(w / 2 + m / 2)
    low_spec = spec[:, :, a:b, a:b]
    mask = torch.zeros(x.shape)
    mask[:, :, a:b, a:b] = 1
    high_spec = spec * (1 - mask)
    low = torch.fft.ifftn(low_spec, dim=spatial).real
    high = torch.fft.ifftn(high_spec, dim=spatial).real
    return low, high


def _paper_merge(low: torch.Tensor, high: torch.Tensor, beta: float = 0.1):
    """Restatement of ``merge_low_high`` plus the fftn/ifftn around it in the models."""
    spatial = tuple(range(2, high.ndim))
    lf = torch.fft.fftn(low, dim=spatial)
    hf = torch.fft.fftn(high, dim=spatial).clone()
    w = high.shape[2]
    m = int(w * beta)
    a, b = int(w / 2 - m / 2), int(w / 2 + m / 2)
    hf[:, :, a:b, a:b] = lf
    return torch.fft.ifftn(hf, dim=spatial).real


@pytest.mark.parametrize(
    ("shape", "beta"),
    [((2, 1, 40, 40, 16), 0.1), ((1, 3, 33, 33, 5), 0.2), ((1, 1, 30, 30), 0.15)],
    ids=["paper-like", "odd", "2d"],
)
def test_reference_layout_matches_paper_code(shape, beta):
    x = torch.randn(shape, dtype=torch.float64)
    low, high = band_split(x, beta, layout="reference")
    plow, phigh = _paper_split(x, beta)
    torch.testing.assert_close(low, plow, atol=1e-10, rtol=0)
    torch.testing.assert_close(high, phigh, atol=1e-10, rtol=0)
    feat_low = torch.randn_like(low)
    fused = band_fuse(feat_low, high, beta, layout="reference")
    torch.testing.assert_close(fused, _paper_merge(feat_low, high, beta), atol=1e-10, rtol=0)


def test_reference_low_band_holds_the_highest_in_plane_frequencies():
    """The unshifted box is the middle of the spectrum: a Nyquist-rate checkerboard
    lands in the paper's "low" image, a constant lands in its "high" image."""
    n = 40
    t = torch.arange(n, dtype=torch.float64)
    checker = ((-1.0) ** t).reshape(1, 1, n, 1, 1) * ((-1.0) ** t).reshape(1, 1, 1, n, 1)
    checker = checker.expand(1, 1, n, n, 2).clone()
    low, high = band_split(checker, 0.1, layout="reference")
    assert high.abs().max() < 1e-9
    assert low.abs().max() > 1.0
    const = torch.ones(1, 1, n, n, 2, dtype=torch.float64)
    low_c, high_c = band_split(const, 0.1, layout="reference")
    assert low_c.abs().max() < 1e-9
    torch.testing.assert_close(high_c, const, atol=1e-9, rtol=0)


def test_reference_round_trip_is_not_identity_unlike_centered():
    x = torch.randn(1, 1, 40, 40, 4, dtype=torch.float64)
    ref = band_fuse(*band_split(x, 0.1, layout="reference"), 0.1, layout="reference")
    cen = band_fuse(*band_split(x, 0.1), 0.1)
    assert (ref - x).abs().max() > 1e-3
    assert (cen - x).abs().max() < 1e-10


def test_reference_layout_is_differentiable():
    x = torch.randn(1, 1, 10, 10, 3, dtype=torch.float64, requires_grad=True)
    assert torch.autograd.gradcheck(lambda t: band_split(t, 0.2, layout="reference"), (x,))
    lo = torch.randn(1, 1, 2, 2, 3, dtype=torch.float64, requires_grad=True)
    assert torch.autograd.gradcheck(lambda a, b: band_fuse(a, b, 0.2, layout="reference"), (lo, x))


def test_reference_layout_rejects_matmul_backend():
    with pytest.raises(ValueError, match="layout='centered' only"):
        band_split(torch.randn(1, 1, 20, 20), 0.1, layout="reference", backend="matmul")
