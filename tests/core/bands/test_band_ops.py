"""Properties of band_split / band_fuse (centred layout) for every CPU backend."""

from __future__ import annotations

import math

import pytest
import torch

from fdseg_core.bands import band_fuse, band_split, band_width

BACKENDS = ["torch", "matmul"]

# (shape, dims, beta): odd and even sizes, k odd and even, 2D and 3D, several dims
CASES = [
    pytest.param((2, 3, 20, 17, 9), (2, 3), 0.2, id="3d-even-odd-k4k3"),
    pytest.param((1, 2, 33, 20, 7), (2, 4), 0.25, id="3d-dims24-k8k1"),
    pytest.param((2, 1, 21, 19), (2, 3), 0.3, id="2d-odd-k6k5"),
    pytest.param((1, 1, 12, 13, 14), (2, 3, 4), 0.5, id="3d-all-dims"),
    pytest.param((1, 2, 12, 13, 14), (3,), 0.3, id="3d-single-dim"),
    pytest.param((1, 1, 10, 11, 4), (2, 3), 0.1, id="3d-k1"),
    pytest.param((3, 2, 16, 16), (-1,), 0.25, id="2d-negative-dim"),
]


def _norm_dims(dims, ndim):
    return tuple(sorted(d % ndim for d in dims))


def _freqs(n: int) -> torch.Tensor:
    """Signed frequency of each bin of an n-point FFT."""
    return torch.fft.fftfreq(n, d=1.0 / n).round().to(torch.int64)


def _band_mask(shape, dims, beta, inside: bool) -> torch.Tensor:
    """Boolean mask over the spectrum: bins with |f| < k/2 on every band dim (inside),
    or with |f| > k/2 on at least one band dim (outside)."""
    mask = torch.ones(shape, dtype=torch.bool) if inside else torch.zeros(shape, dtype=torch.bool)
    for d in dims:
        n = shape[d]
        k = band_width(n, beta)
        f = _freqs(n).abs().to(torch.float64)
        view = [1] * len(shape)
        view[d] = n
        if inside:
            mask = mask & (f < k / 2).reshape(view)
        else:
            mask = mask | (f > k / 2).reshape(view)
    return mask


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("dtype", [torch.float32, torch.float64], ids=["f32", "f64"])
@pytest.mark.parametrize(("shape", "dims", "beta"), CASES)
class TestCentredProperties:
    def test_shapes_dtype_and_device(self, shape, dims, beta, dtype, backend):
        x = torch.randn(shape, dtype=dtype)
        low, high = band_split(x, beta, dims=dims, backend=backend)
        nd = _norm_dims(dims, len(shape))
        expected = [s if i not in nd else band_width(s, beta) for i, s in enumerate(shape)]
        assert tuple(low.shape) == tuple(expected)
        assert high.shape == x.shape
        assert low.dtype == high.dtype == dtype
        fused = band_fuse(low, high, beta, dims=dims, backend=backend)
        assert fused.shape == x.shape and fused.dtype == dtype

    def test_fuse_of_split_recovers_input(self, shape, dims, beta, dtype, backend):
        x = torch.randn(shape, dtype=dtype)
        low, high = band_split(x, beta, dims=dims, backend=backend)
        tol = 1e-4 if dtype == torch.float32 else 1e-11
        torch.testing.assert_close(
            band_fuse(low, high, beta, dims=dims, backend=backend), x, atol=tol, rtol=0
        )

    def test_low_part_is_band_limited(self, shape, dims, beta, dtype, backend):
        x = torch.randn(shape, dtype=torch.float64)
        nd = _norm_dims(dims, len(shape))
        _, high = band_split(x, beta, dims=dims, backend=backend)
        spec = torch.fft.fftn(x - high, dim=nd)
        outside = _band_mask(shape, nd, beta, inside=False)
        assert outside.any()
        assert spec[outside].abs().max().item() < 1e-9
        # ... and the low part is not trivially zero
        assert (x - high).abs().max() > 1e-3

    def test_high_has_no_energy_inside_band(self, shape, dims, beta, dtype, backend):
        x = torch.randn(shape, dtype=torch.float64)
        nd = _norm_dims(dims, len(shape))
        _, high = band_split(x, beta, dims=dims, backend=backend)
        spec = torch.fft.fftn(high, dim=nd)
        inside = _band_mask(shape, nd, beta, inside=True)
        assert spec[inside].abs().max().item() < 1e-9
        assert spec[~inside].abs().max().item() > 1e-3

    def test_constant_volume_keeps_its_value(self, shape, dims, beta, dtype, backend):
        x = torch.full(shape, -2.5, dtype=dtype)
        low, high = band_split(x, beta, dims=dims, backend=backend)
        tol = 1e-5 if dtype == torch.float32 else 1e-12
        torch.testing.assert_close(low, torch.full_like(low, -2.5), atol=tol, rtol=0)
        torch.testing.assert_close(high, torch.zeros_like(high), atol=tol, rtol=0)

    def test_backends_agree_with_torch_fft(self, shape, dims, beta, dtype, backend):
        x = torch.randn(shape, dtype=torch.float64)
        ref_low, ref_high = band_split(x, beta, dims=dims, backend="torch")
        low, high = band_split(x, beta, dims=dims, backend=backend)
        torch.testing.assert_close(low, ref_low, atol=1e-12, rtol=0)
        torch.testing.assert_close(high, ref_high, atol=1e-12, rtol=0)
        other_low = torch.randn_like(ref_low)
        torch.testing.assert_close(
            band_fuse(other_low, x, beta, dims=dims, backend=backend),
            band_fuse(other_low, x, beta, dims=dims, backend="torch"),
            atol=1e-12,
            rtol=0,
        )


def _axis_signal(shape, dim, values):
    view = [1] * len(shape)
    view[dim] = len(values)
    return values.reshape(view).expand(shape).clone()


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize(("n", "beta", "f0"), [(40, 0.2, 3), (41, 0.2, 2), (30, 0.3, 4)])
def test_in_band_cosine_is_resampled_exactly(n, beta, f0, backend):
    k = band_width(n, beta)
    assert f0 < k / 2
    shape = (1, 1, n, 6, 5)
    t = torch.arange(n, dtype=torch.float64)
    x = _axis_signal(shape, 2, torch.cos(2 * math.pi * f0 * t / n + 0.3))
    low, high = band_split(x, beta, dims=(2,), backend=backend)
    s = torch.arange(k, dtype=torch.float64)
    expected = _axis_signal(low.shape, 2, torch.cos(2 * math.pi * f0 * s / k + 0.3))
    torch.testing.assert_close(low, expected, atol=1e-12, rtol=0)
    torch.testing.assert_close(high, torch.zeros_like(high), atol=1e-12, rtol=0)


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize(("n", "beta", "f0"), [(40, 0.2, 5), (41, 0.2, 9), (30, 0.3, 15)])
def test_out_of_band_cosine_goes_to_high(n, beta, f0, backend):
    k = band_width(n, beta)
    assert f0 > k / 2
    shape = (2, 1, 7, n)
    t = torch.arange(n, dtype=torch.float64)
    x = _axis_signal(shape, 3, torch.cos(2 * math.pi * f0 * t / n))
    low, high = band_split(x, beta, dims=(3,), backend=backend)
    torch.testing.assert_close(low, torch.zeros_like(low), atol=1e-12, rtol=0)
    torch.testing.assert_close(high, x, atol=1e-12, rtol=0)


@pytest.mark.parametrize("backend", BACKENDS)
def test_box_band_in_two_dims_is_separable(backend):
    """cos along H in band times cos along W out of band: entirely high; both in band: low."""
    shape = (1, 1, 30, 40, 3)
    a = torch.cos(2 * math.pi * 1 * torch.arange(30, dtype=torch.float64) / 30)
    b_in = torch.cos(2 * math.pi * 1 * torch.arange(40, dtype=torch.float64) / 40)
    b_out = torch.cos(2 * math.pi * 9 * torch.arange(40, dtype=torch.float64) / 40)
    x_in = _axis_signal(shape, 2, a) * _axis_signal(shape, 3, b_in)
    x_mixed = _axis_signal(shape, 2, a) * _axis_signal(shape, 3, b_out)
    _, high_in = band_split(x_in, 0.2, dims=(2, 3), backend=backend)
    low_mixed, high_mixed = band_split(x_mixed, 0.2, dims=(2, 3), backend=backend)
    assert high_in.abs().max() < 1e-12
    assert low_mixed.abs().max() < 1e-12
    torch.testing.assert_close(high_mixed, x_mixed, atol=1e-12, rtol=0)


@pytest.mark.parametrize("backend", BACKENDS)
def test_even_k_nyquist_pair_cosine_to_low_sine_to_high(backend):
    """k even: the cosine at |f| = k/2 is representable on the k-grid, the sine is not."""
    n, beta = 40, 0.2  # k = 8, Nyquist pair at f = +-4
    k = band_width(n, beta)
    t = torch.arange(n, dtype=torch.float64)
    shape = (1, 1, n, 3, 2)
    cos = _axis_signal(shape, 2, torch.cos(math.pi * k * t / n))
    sin = _axis_signal(shape, 2, torch.sin(math.pi * k * t / n))
    low_c, high_c = band_split(cos, beta, dims=(2,), backend=backend)
    low_s, high_s = band_split(sin, beta, dims=(2,), backend=backend)
    s = torch.arange(k, dtype=torch.float64)
    # weight 1/sqrt(2) per bin of the pair: the k-grid sees (-1)^s / sqrt(2)
    expected = _axis_signal(low_c.shape, 2, torch.cos(math.pi * s) / math.sqrt(2.0))
    torch.testing.assert_close(low_c, expected, atol=1e-12, rtol=0)
    torch.testing.assert_close(high_c, torch.zeros_like(high_c), atol=1e-12, rtol=0)
    torch.testing.assert_close(low_s, torch.zeros_like(low_s), atol=1e-12, rtol=0)
    torch.testing.assert_close(high_s, sin, atol=1e-12, rtol=0)


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize(
    ("shape", "dims", "beta"),
    [
        ((1, 2, 11, 10, 3), (2, 3), 0.2),
        ((2, 1, 9, 12), (3,), 0.25),
        ((1, 1, 8, 7, 6), (2, 3, 4), 0.3),
    ],
    ids=["3d", "2d", "3d-all"],
)
def test_gradcheck_float64(shape, dims, beta, backend):
    x = torch.randn(shape, dtype=torch.float64, requires_grad=True)
    assert torch.autograd.gradcheck(lambda t: band_split(t, beta, dims=dims, backend=backend), (x,))
    low, high = band_split(x.detach(), beta, dims=dims, backend="torch")
    lo = torch.randn_like(low).requires_grad_()
    hi = torch.randn_like(high).requires_grad_()
    assert torch.autograd.gradcheck(
        lambda a, b: band_fuse(a, b, beta, dims=dims, backend=backend), (lo, hi)
    )


def test_matmul_backward_is_twice_differentiable():
    x = torch.randn(1, 1, 10, 9, 3, dtype=torch.float64, requires_grad=True)
    assert torch.autograd.gradgradcheck(lambda t: band_split(t, 0.3, backend="matmul"), (x,))


def test_gradient_of_one_output_only():
    """A loss on ``low`` alone (no gradient flowing into ``high``) still differentiates."""
    x = torch.randn(1, 2, 20, 20, 4, dtype=torch.float64, requires_grad=True)
    for backend in BACKENDS:
        low, _ = band_split(x, 0.2, backend=backend)
        (g,) = torch.autograd.grad(low.square().sum(), x)
        x2 = x.detach().clone().requires_grad_()
        low2, _ = band_split(x2, 0.2, backend="torch")
        (g2,) = torch.autograd.grad(low2.square().sum(), x2)
        torch.testing.assert_close(g, g2, atol=1e-12, rtol=0)


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16], ids=["f16", "bf16"])
def test_low_precision_inputs_keep_dtype_and_match_float32(dtype, backend):
    x = torch.randn(1, 2, 20, 20, 5)
    low, high = band_split(x.to(dtype), 0.2, backend=backend)
    ref_low, ref_high = band_split(x.to(dtype).float(), 0.2, backend="torch")
    assert low.dtype == high.dtype == dtype
    tol = 1e-2 if dtype == torch.float16 else 5e-2
    torch.testing.assert_close(low.float(), ref_low, atol=tol, rtol=tol)
    torch.testing.assert_close(high.float(), ref_high, atol=tol, rtol=tol)
    fused = band_fuse(low, high, 0.2, backend=backend)
    assert fused.dtype == dtype


def test_auto_backend_matches_explicit_backends_on_cpu():
    x = torch.randn(1, 1, 20, 21, 6, dtype=torch.float64)
    auto = band_split(x, 0.2)
    ref = band_split(x, 0.2, backend="torch")
    for a, b in zip(auto, ref, strict=True):
        torch.testing.assert_close(a, b, atol=1e-12, rtol=0)
