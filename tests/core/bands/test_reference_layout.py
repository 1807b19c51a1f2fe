"""layout="reference" reproduces the paper's public code (restated independently here)."""

from __future__ import annotations

import pytest
import torch

from fdseg_core.bands import band_fuse, band_split, resolve_backend

BACKENDS = ["torch", "matmul"]


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


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize(
    ("shape", "beta"),
    [((2, 1, 40, 40, 16), 0.1), ((1, 3, 33, 33, 5), 0.2), ((1, 1, 30, 30), 0.15)],
    ids=["paper-like", "odd", "2d"],
)
def test_reference_layout_matches_paper_code(shape, beta, backend):
    x = torch.randn(shape, dtype=torch.float64)
    low, high = band_split(x, beta, layout="reference", backend=backend)
    plow, phigh = _paper_split(x, beta)
    torch.testing.assert_close(low, plow, atol=1e-10, rtol=0)
    torch.testing.assert_close(high, phigh, atol=1e-10, rtol=0)
    feat_low = torch.randn_like(low)
    fused = band_fuse(feat_low, high, beta, layout="reference", backend=backend)
    torch.testing.assert_close(fused, _paper_merge(feat_low, high, beta), atol=1e-10, rtol=0)


def _rel(got: torch.Tensor, ref: torch.Tensor) -> float:
    return float((got - ref).detach().abs().max() / ref.detach().abs().max())


@pytest.mark.parametrize(
    ("shape", "beta", "dims"),
    [
        ((2, 2, 40, 40, 16), 0.1, (2, 3)),
        ((1, 3, 33, 31, 7), 0.2, (2, 3)),
        ((1, 2, 20, 18, 9), 0.3, (2, 3, 4)),
        ((1, 2, 20, 18, 9), 0.3, (3,)),
        ((1, 1, 30, 29), 0.15, (-1,)),
    ],
    ids=["paper-like", "odd", "three-dims", "one-dim", "2d-last"],
)
def test_matmul_reference_equals_torch_reference_with_gradients(shape, beta, dims):
    """The matmul backend's unshifted box: float64, 1e-10 relative to the torch.fft
    backend, outputs and the gradients of every input."""
    x = torch.randn(shape, dtype=torch.float64)
    outs, grads = {}, {}
    for backend in BACKENDS:
        xb = x.clone().requires_grad_(True)
        low, high = band_split(xb, beta, dims=dims, layout="reference", backend=backend)
        feat = torch.linspace(-1, 1, low.numel(), dtype=torch.float64).reshape(low.shape)
        feat.requires_grad_(True)
        fused = band_fuse(feat, high, beta, dims=dims, layout="reference", backend=backend)
        weights = torch.cos(torch.arange(fused.numel(), dtype=torch.float64)).reshape(fused.shape)
        loss = (fused * weights).sum() + (low**2).sum()
        gx, gf = torch.autograd.grad(loss, (xb, feat))
        outs[backend] = (low, high, fused)
        grads[backend] = (gx, gf)
    for got, ref in zip(outs["matmul"], outs["torch"], strict=True):
        assert _rel(got, ref) < 1e-10
    for got, ref in zip(grads["matmul"], grads["torch"], strict=True):
        assert _rel(got, ref) < 1e-10


@pytest.mark.parametrize("dtype", [torch.float32, torch.float16, torch.bfloat16])
def test_matmul_reference_keeps_low_precision_dtypes(dtype):
    x = torch.randn(1, 2, 40, 40, 4).to(dtype)
    low, high = band_split(x, 0.1, layout="reference", backend="matmul")
    ref_low, ref_high = band_split(x.double(), 0.1, layout="reference", backend="torch")
    assert low.dtype == high.dtype == dtype
    tol = {torch.float32: 1e-5, torch.float16: 2e-3, torch.bfloat16: 1e-2}[dtype]
    assert _rel(high.double(), ref_high) < tol and _rel(low.double(), ref_low) < tol


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


@pytest.mark.parametrize("backend", BACKENDS)
def test_reference_layout_is_differentiable(backend):
    x = torch.randn(1, 1, 10, 10, 3, dtype=torch.float64, requires_grad=True)

    def split(t):
        return band_split(t, 0.2, layout="reference", backend=backend)

    def fuse(a, b):
        return band_fuse(a, b, 0.2, layout="reference", backend=backend)

    assert torch.autograd.gradcheck(split, (x,))
    lo = torch.randn(1, 1, 2, 2, 3, dtype=torch.float64, requires_grad=True)
    assert torch.autograd.gradcheck(fuse, (lo, x))
    assert torch.autograd.gradgradcheck(fuse, (lo, x))


def test_reference_layout_auto_picks_matmul_and_rejects_triton():
    assert resolve_backend("auto", "reference", torch.device("cpu")) == "matmul"
    assert resolve_backend("torch", "reference", torch.device("cpu")) == "torch"
    with pytest.raises(ValueError, match="layout='centered' only"):
        band_split(torch.randn(1, 1, 20, 20), 0.1, layout="reference", backend="triton")
