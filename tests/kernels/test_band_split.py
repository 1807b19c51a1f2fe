"""band_split_triton (forward and backward) against the torch.fft backend and a dense reference."""

from __future__ import annotations

import pytest
import torch

from fdseg_core.bands import band_split

pytest.importorskip("triton", reason="the Triton kernels need the optional 'triton' package")

from fdseg_kernels import band_split_triton  # noqa: E402

pytestmark = pytest.mark.triton

LOW_PRECISION = [torch.float16, torch.bfloat16]


def _torch_split(x: torch.Tensor, case) -> tuple[torch.Tensor, torch.Tensor]:
    return band_split(x.double(), case.beta, dims=case.given_dims, backend="torch")


def test_split_forward_matches_torch_backend_and_dense_reference(case, dense, assert_matches):
    x = torch.randn(case.shape, generator=torch.Generator().manual_seed(0))
    low, high = band_split_triton(x, case.given_dims, case.widths)
    ref_low, ref_high = _torch_split(x, case)
    assert low.shape == case.low_shape
    assert_matches(low, ref_low, torch.float32)
    assert_matches(high, ref_high, torch.float32)
    dense_low, dense_high = dense.split(x, case.dims, case.widths)
    assert_matches(low, dense_low, torch.float32)
    assert_matches(high, dense_high, torch.float32)


def test_split_backward_matches_torch_backend(case, assert_matches, triton_split):
    gen = torch.Generator().manual_seed(1)
    x = torch.randn(case.shape, generator=gen)
    g_low = torch.randn(case.low_shape, generator=gen)
    g_high = torch.randn(case.shape, generator=gen)
    xt = x.clone().requires_grad_()
    low, high = triton_split(xt, case.given_dims, case.widths)
    (got,) = torch.autograd.grad((low, high), xt, (g_low, g_high))
    xr = x.double().requires_grad_()
    ref_low, ref_high = _torch_split(xr, case)
    (ref,) = torch.autograd.grad((ref_low, ref_high), xr, (g_low.double(), g_high.double()))
    assert_matches(got, ref, torch.float32)


@pytest.mark.parametrize("dtype", LOW_PRECISION, ids=["f16", "bf16"])
@pytest.mark.parametrize(
    ("shape", "dims", "beta"),
    [((2, 3, 17, 20, 9), (2, 3), 0.2), ((2, 3, 21, 19), (3,), 0.3)],
    ids=["3d-dims23", "2d-dims3"],
)
def test_split_low_precision_matches_float64_reference(
    shape, dims, beta, dtype, assert_matches, triton_split
):
    gen = torch.Generator().manual_seed(2)
    x = torch.randn(shape, generator=gen).to(dtype)
    widths = tuple(int(shape[d] * beta) for d in dims)
    xt = x.clone().requires_grad_()
    low, high = triton_split(xt, dims, widths)
    ref_x = x.double().requires_grad_()
    ref_low, ref_high = band_split(ref_x, beta, dims=dims, backend="torch")
    assert_matches(low, ref_low, dtype)
    assert_matches(high, ref_high, dtype)
    g_low = torch.randn(low.shape, generator=gen).to(dtype)
    g_high = torch.randn(shape, generator=gen).to(dtype)
    (got,) = torch.autograd.grad((low, high), xt, (g_low, g_high))
    (ref,) = torch.autograd.grad((ref_low, ref_high), ref_x, (g_low.double(), g_high.double()))
    assert_matches(got, ref, dtype)


def test_split_float64_matches_dense_reference(dense, assert_matches):
    x = torch.randn(2, 2, 13, 18, 7, dtype=torch.float64)
    low, high = band_split_triton(x, (2, 4), (3, 2))
    ref_low, ref_high = dense.split(x, (2, 4), (3, 2))
    assert_matches(low, ref_low, torch.float64)
    assert_matches(high, ref_high, torch.float64)


@pytest.mark.parametrize(
    "make",
    [
        lambda t: t.transpose(2, 4).contiguous().transpose(2, 4),
        lambda t: torch.randn(2, 3, 17, 40, 9)[:, :, :, ::2, :].copy_(t),
        lambda t: t.contiguous(memory_format=torch.channels_last_3d),
    ],
    ids=["transposed", "strided", "channels-last"],
)
def test_split_accepts_non_contiguous_input(make):
    x = torch.randn(2, 3, 17, 20, 9)
    y = make(x)
    assert not y.is_contiguous()
    want = band_split_triton(x, (2, 3), (3, 4))
    got = band_split_triton(y, (2, 3), (3, 4))
    for g, w in zip(got, want, strict=True):
        torch.testing.assert_close(g, w, rtol=0, atol=0)


@pytest.mark.parametrize("which", ["low", "high"])
def test_split_gradient_of_one_output_only(which, assert_matches, triton_split):
    x = torch.randn(2, 2, 15, 12, 6)
    xt = x.clone().requires_grad_()
    out = dict(zip(("low", "high"), triton_split(xt, (2, 3), (4, 3)), strict=True))
    w = torch.randn(out[which].shape)
    (got,) = torch.autograd.grad((out[which] * w).sum(), xt)
    xr = x.double().requires_grad_()
    ref = dict(zip(("low", "high"), band_split(xr, 0.3, dims=(2, 3), backend="torch"), strict=True))
    (want,) = torch.autograd.grad((ref[which] * w.double()).sum(), xr)
    assert_matches(got, want, torch.float32)


def test_split_double_backward_matches_torch_backend(assert_matches, triton_split):
    gen = torch.Generator().manual_seed(3)
    x = torch.randn(1, 2, 11, 10, 5, generator=gen)
    v = torch.randn(1, 2, 11, 10, 5, generator=gen)

    def second(fn, xx, vv):
        low, high = fn(xx)
        (g,) = torch.autograd.grad((low**2).sum() + (high**2).sum(), xx, create_graph=True)
        return torch.autograd.grad((g * vv).sum(), xx)[0]

    got = second(lambda t: triton_split(t, (2, 3), (4, 4)), x.clone().requires_grad_(), v)
    want = second(
        lambda t: band_split(t, 0.4, dims=(2, 3), backend="torch"),
        x.double().requires_grad_(),
        v.double(),
    )
    assert_matches(got, want, torch.float32)


def test_split_backend_triton_dispatch_matches_torch_backend(assert_matches):
    x = torch.randn(2, 1, 20, 14, 6)
    low, high = band_split(x, 0.25, dims=(2, 4), backend="triton")
    ref_low, ref_high = band_split(x.double(), 0.25, dims=(2, 4), backend="torch")
    assert_matches(low, ref_low, torch.float32)
    assert_matches(high, ref_high, torch.float32)


def test_split_empty_batch_gives_empty_outputs():
    low, high = band_split_triton(torch.zeros(0, 2, 10, 12), (2, 3), (2, 3))
    assert low.shape == (0, 2, 2, 3) and high.shape == (0, 2, 10, 12)


@pytest.mark.parametrize(
    ("x", "dims", "widths", "error", "match"),
    [
        ([[1.0]], (2,), (1,), TypeError, "must be a torch.Tensor"),
        (torch.zeros(1, 1, 8, 8, dtype=torch.int32), (2,), (1,), TypeError, "dtype torch.int32"),
        (torch.zeros(1, 1, 8, 8, dtype=torch.complex64), (2,), (1,), TypeError, "complex64"),
        (torch.zeros(1, 8, 8), (2,), (1,), ValueError, "2 or 3 spatial dims"),
        (torch.zeros(1, 1, 8, 8), (1,), (1,), ValueError, "spatial dims"),
        (torch.zeros(1, 1, 8, 8), (2, -2), (1, 1), ValueError, "distinct"),
        (torch.zeros(1, 1, 8, 8), (2, 3), (1,), ValueError, "same length"),
        (torch.zeros(1, 1, 8, 8), (2,), (8,), ValueError, "1 <= k < n=8"),
        (torch.zeros(1, 1, 8, 8), (2,), (0,), ValueError, "1 <= k < n=8"),
        (torch.zeros(1, 1, 8, 8), (2.0,), (1,), TypeError, "ints"),
        (torch.zeros(1, 1, 8, 8), 2, (1,), TypeError, "tuples of ints"),
    ],
    ids=[
        "list",
        "int-dtype",
        "complex",
        "rank3",
        "channel-dim",
        "repeated-dim",
        "length-mismatch",
        "k-equals-n",
        "k-zero",
        "float-dim",
        "int-dims",
    ],
)
def test_split_invalid_arguments_raise(x, dims, widths, error, match):
    with pytest.raises(error, match=match):
        band_split_triton(x, dims, widths)


def test_split_on_cpu_without_interpreter_raises(monkeypatch):
    monkeypatch.delenv("TRITON_INTERPRET")
    with pytest.raises(ValueError, match="need a CUDA tensor.*TRITON_INTERPRET=1"):
        band_split_triton(torch.zeros(1, 1, 8, 8), (2,), (2,))
