"""band_fuse_triton (forward and backward) against the torch.fft backend and a dense reference."""

from __future__ import annotations

import pytest
import torch

from fdseg_core.bands import band_fuse

pytest.importorskip("triton", reason="the Triton kernels need the optional 'triton' package")

from fdseg_kernels import band_fuse_triton, band_split_triton  # noqa: E402

pytestmark = pytest.mark.triton


def _inputs(case, seed: int, dtype: torch.dtype = torch.float32):
    gen = torch.Generator().manual_seed(seed)
    low = torch.randn(case.low_shape, generator=gen).to(dtype)
    high = torch.randn(case.shape, generator=gen).to(dtype)
    return low, high


def _torch_fuse(low, high, case):
    return band_fuse(low, high, case.beta, dims=case.given_dims, backend="torch")


def test_fuse_forward_matches_torch_backend_and_dense_reference(case, dense, assert_matches):
    low, high = _inputs(case, 0)
    out = band_fuse_triton(low, high, case.given_dims, case.widths)
    assert_matches(out, _torch_fuse(low.double(), high.double(), case), torch.float32)
    assert_matches(out, dense.fuse(low, high, case.dims, case.widths), torch.float32)


def test_fuse_backward_matches_torch_backend(case, assert_matches, triton_fuse):
    low, high = _inputs(case, 1)
    g = torch.randn(case.shape, generator=torch.Generator().manual_seed(2))
    lt, ht = low.clone().requires_grad_(), high.clone().requires_grad_()
    got_low, got_high = torch.autograd.grad(
        triton_fuse(lt, ht, case.given_dims, case.widths), (lt, ht), g
    )
    lr, hr = low.double().requires_grad_(), high.double().requires_grad_()
    ref_low, ref_high = torch.autograd.grad(_torch_fuse(lr, hr, case), (lr, hr), g.double())
    assert_matches(got_low, ref_low, torch.float32)
    assert_matches(got_high, ref_high, torch.float32)


def test_fuse_inverts_split(case, assert_matches):
    x = torch.randn(case.shape, generator=torch.Generator().manual_seed(3))
    low, high = band_split_triton(x, case.given_dims, case.widths)
    assert_matches(band_fuse_triton(low, high, case.given_dims, case.widths), x, torch.float32)


@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16], ids=["f16", "bf16"])
@pytest.mark.parametrize(
    ("shape", "dims", "beta"),
    [((2, 3, 17, 20, 9), (2, 4), 0.25), ((3, 2, 21, 19), (2, 3), 0.3)],
    ids=["3d-dims24", "2d-dims23"],
)
def test_fuse_low_precision_matches_float64_reference(
    shape, dims, beta, dtype, assert_matches, triton_fuse
):
    gen = torch.Generator().manual_seed(4)
    widths = tuple(int(shape[d] * beta) for d in dims)
    low_shape = list(shape)
    for d, k in zip(dims, widths, strict=True):
        low_shape[d] = k
    low = torch.randn(low_shape, generator=gen).to(dtype)
    high = torch.randn(shape, generator=gen).to(dtype)
    g = torch.randn(shape, generator=gen).to(dtype)
    lt, ht = low.clone().requires_grad_(), high.clone().requires_grad_()
    out = triton_fuse(lt, ht, dims, widths)
    lr, hr = low.double().requires_grad_(), high.double().requires_grad_()
    ref = band_fuse(lr, hr, beta, dims=dims, backend="torch")
    assert_matches(out, ref, dtype)
    got_low, got_high = torch.autograd.grad(out, (lt, ht), g)
    ref_low, ref_high = torch.autograd.grad(ref, (lr, hr), g.double())
    assert_matches(got_low, ref_low, dtype)
    assert_matches(got_high, ref_high, dtype)


def test_fuse_float64_matches_dense_reference(dense, assert_matches):
    gen = torch.Generator().manual_seed(5)
    low = torch.randn(2, 1, 3, 18, 2, dtype=torch.float64, generator=gen)
    high = torch.randn(2, 1, 13, 18, 7, dtype=torch.float64, generator=gen)
    out = band_fuse_triton(low, high, (2, 4), (3, 2))
    assert_matches(out, dense.fuse(low, high, (2, 4), (3, 2)), torch.float64)


def test_fuse_accepts_non_contiguous_inputs():
    gen = torch.Generator().manual_seed(6)
    low = torch.randn(2, 3, 4, 3, 9, generator=gen)
    high = torch.randn(2, 3, 17, 20, 9, generator=gen)
    low_nc = low.transpose(1, 4).contiguous().transpose(1, 4)
    high_nc = torch.randn(2, 3, 17, 20, 18, generator=gen)[..., ::2].copy_(high)
    assert not low_nc.is_contiguous() and not high_nc.is_contiguous()
    want = band_fuse_triton(low, high, (2, 3), (4, 3))
    got = band_fuse_triton(low_nc, high_nc, (2, 3), (4, 3))
    torch.testing.assert_close(got, want, rtol=0, atol=0)


def test_fuse_double_backward_matches_torch_backend(assert_matches, triton_fuse):
    gen = torch.Generator().manual_seed(7)
    low = torch.randn(1, 2, 4, 4, 5, generator=gen)
    high = torch.randn(1, 2, 11, 10, 5, generator=gen)
    v_low = torch.randn(1, 2, 4, 4, 5, generator=gen)
    v_high = torch.randn(1, 2, 11, 10, 5, generator=gen)

    def second(fn, lo, hi, vl, vh):
        g_lo, g_hi = torch.autograd.grad((fn(lo, hi) ** 2).sum(), (lo, hi), create_graph=True)
        return torch.autograd.grad((g_lo * vl).sum() + (g_hi * vh).sum(), (lo, hi))

    got = second(
        lambda a, b: triton_fuse(a, b, (2, 3), (4, 4)),
        low.clone().requires_grad_(),
        high.clone().requires_grad_(),
        v_low,
        v_high,
    )
    want = second(
        lambda a, b: band_fuse(a, b, 0.4, dims=(2, 3), backend="torch"),
        low.double().requires_grad_(),
        high.double().requires_grad_(),
        v_low.double(),
        v_high.double(),
    )
    for g, w in zip(got, want, strict=True):
        assert_matches(g, w, torch.float32)


def test_fuse_backend_triton_dispatch_matches_torch_backend(assert_matches):
    gen = torch.Generator().manual_seed(8)
    low = torch.randn(2, 1, 5, 14, 1, generator=gen)
    high = torch.randn(2, 1, 20, 14, 6, generator=gen)
    out = band_fuse(low, high, 0.25, dims=(2, 4), backend="triton")
    ref = band_fuse(low.double(), high.double(), 0.25, dims=(2, 4), backend="torch")
    assert_matches(out, ref, torch.float32)


@pytest.mark.parametrize(
    ("low", "high", "error", "match"),
    [
        ("low", torch.zeros(1, 1, 8, 8), TypeError, "low must be a torch.Tensor"),
        (torch.zeros(1, 1, 3, 2), torch.zeros(1, 1, 8, 8), ValueError, r"expected \(1, 1, 2, 2\)"),
        (
            torch.zeros(1, 1, 2, 2, dtype=torch.float64),
            torch.zeros(1, 1, 8, 8),
            TypeError,
            "low has dtype torch.float64 but high has dtype torch.float32",
        ),
        (torch.zeros(1, 1, 2, 2), torch.zeros(1, 1, 8, 8, dtype=torch.int64), TypeError, "int64"),
    ],
    ids=["low-not-tensor", "low-shape", "dtype-mismatch", "int-high"],
)
def test_fuse_invalid_arguments_raise(low, high, error, match):
    with pytest.raises(error, match=match):
        band_fuse_triton(low, high, (2, 3), (2, 2))


def test_fuse_on_cpu_without_interpreter_raises(monkeypatch):
    monkeypatch.delenv("TRITON_INTERPRET")
    with pytest.raises(ValueError, match="need a CUDA tensor"):
        band_fuse_triton(torch.zeros(1, 1, 2, 8), torch.zeros(1, 1, 8, 8), (2,), (2,))
