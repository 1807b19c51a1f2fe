"""The two-pass kernels (both band axes per launch) against the float64 references, under
Triton's interpreter: forward, backward and double backward of both ops, every dtype,
sizes beyond one block on every axis, and the per-axis fallback where they do not apply."""

from __future__ import annotations

import pytest
import torch

from fdseg_core.bands import band_fuse, band_split

pytest.importorskip("triton", reason="the Triton kernels need the optional 'triton' package")

from fdseg_kernels import band_split_triton  # noqa: E402
from fdseg_kernels._common import project  # noqa: E402
from fdseg_kernels.band_fused import fused_applicable, fused_band_project  # noqa: E402

pytestmark = pytest.mark.triton

FUSED_CASES = [
    pytest.param((2, 3, 17, 20, 18), (2, 3), 0.2, id="odd-k3k4-post18"),
    pytest.param((1, 2, 40, 33, 16), (2, 3), 0.1, id="k4k3-post16"),
    pytest.param((1, 1, 21, 130, 70), (2, 3), 0.1, id="multiblock-n2-130-post70"),
    pytest.param((1, 1, 11, 12, 10, 20), (2, 3), 0.2, id="4d-post200"),
    pytest.param((1, 2, 10, 11, 17), (2, 3), 0.1, id="k1k1"),
]


def _widths(shape, dims, beta):
    return tuple(int(shape[d] * beta) for d in dims)


@pytest.mark.parametrize(("shape", "dims", "beta"), FUSED_CASES)
@pytest.mark.parametrize("dtype", [torch.float64, torch.float32])
def test_fused_project_matches_the_dense_reference(shape, dims, beta, dtype, dense, assert_matches):
    widths = _widths(shape, dims, beta)  # the kernels take any view, 4 spatial dims too
    gen = torch.Generator().manual_seed(0)
    x = torch.randn(shape, generator=gen, dtype=torch.float64).to(dtype)
    assert fused_applicable(shape, dims)
    small, out = fused_band_project(x, dims, widths)
    ref_low, ref_high = dense.split(x, dims, widths)
    assert_matches(small, ref_low, dtype)
    assert_matches(out, ref_high, dtype)
    b = torch.randn(ref_low.shape, generator=gen, dtype=torch.float64).to(dtype)
    small, out = fused_band_project(x, dims, widths, b=b, b_scale=0.3)
    assert_matches(out, dense.fuse(0.3 * b.double(), x, dims, widths), dtype)


@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16], ids=["f16", "bf16"])
def test_fused_low_precision_matches_float64(dtype, dense, assert_matches):
    shape, dims = (2, 3, 17, 20, 18), (2, 3)
    widths = _widths(shape, dims, 0.2)
    x = torch.randn(shape, generator=torch.Generator().manual_seed(3)).to(dtype)
    low, high = band_split_triton(x, dims, widths, impl="fused")
    ref_low, ref_high = dense.split(x, dims, widths)
    assert_matches(low, ref_low, dtype)
    assert_matches(high, ref_high, dtype)


@pytest.mark.parametrize(("shape", "dims", "beta"), FUSED_CASES[:3])
def test_fused_backward_matches_the_torch_backend(shape, dims, beta, triton_split, triton_fuse):
    widths = _widths(shape, dims, beta)
    gen = torch.Generator().manual_seed(1)
    x = torch.randn(shape, generator=gen, dtype=torch.float64)
    low_shape = list(shape)
    for d, k in zip(dims, widths, strict=True):
        low_shape[d] = k
    g_low = torch.randn(low_shape, generator=gen, dtype=torch.float64)
    g_high = torch.randn(shape, generator=gen, dtype=torch.float64)
    xt = x.clone().requires_grad_()
    (got,) = torch.autograd.grad(triton_split(xt, dims, widths, impl="fused"), xt, (g_low, g_high))
    xr = x.clone().requires_grad_()
    (ref,) = torch.autograd.grad(
        band_split(xr, beta, dims=dims, backend="torch"), xr, (g_low, g_high)
    )
    torch.testing.assert_close(got, ref, atol=1e-10, rtol=1e-10)
    lo = g_low.clone().requires_grad_()
    hi = x.clone().requires_grad_()
    out = triton_fuse(lo, hi, dims, widths, impl="fused")
    got_lo, got_hi = torch.autograd.grad(out, (lo, hi), g_high)
    lo2, hi2 = g_low.clone().requires_grad_(), x.clone().requires_grad_()
    ref_out = band_fuse(lo2, hi2, beta, dims=dims, backend="torch")
    ref_lo, ref_hi = torch.autograd.grad(ref_out, (lo2, hi2), g_high)
    torch.testing.assert_close(got_lo, ref_lo, atol=1e-10, rtol=1e-10)
    torch.testing.assert_close(got_hi, ref_hi, atol=1e-10, rtol=1e-10)


def test_fused_double_backward_matches_the_torch_backend(triton_split):
    """Second derivatives through the kernels: ``d/dx <v, d/dx sum(high^2)>`` is
    ``2 J^T J v``, which runs the fused split and fusion in both directions."""
    dims, widths, beta = (2, 3), (2, 2), 0.2
    gen = torch.Generator().manual_seed(4)
    x = torch.randn(1, 1, 10, 10, 16, dtype=torch.float64, generator=gen)
    v = torch.randn(x.shape, dtype=torch.float64, generator=gen)
    results = []
    for split in (
        lambda t: triton_split(t, dims, widths, impl="fused"),
        lambda t: band_split(t, beta, dims=dims, backend="torch"),
    ):
        xt = x.clone().requires_grad_()
        _, high = split(xt)
        (g,) = torch.autograd.grad(high.square().sum(), xt, create_graph=True)
        (gg,) = torch.autograd.grad((g * v).sum(), xt)
        results.append(gg)
    torch.testing.assert_close(results[0], results[1], atol=1e-10, rtol=1e-10)
    assert results[0].abs().max() > 0.1


@pytest.mark.parametrize(
    ("shape", "dims"),
    [((2, 3, 21, 19), (2, 3)), ((1, 2, 17, 12, 10), (2, 4)), ((1, 1, 11, 12, 13), (2, 3, 4))],
    ids=["2d-post1", "not-adjacent", "three-dims"],
)
def test_fused_falls_back_to_the_per_axis_kernels_where_it_does_not_apply(shape, dims, dense):
    assert not fused_applicable(shape, dims)
    widths = _widths(shape, dims, 0.3)
    x = torch.randn(shape, dtype=torch.float64)
    small, out = project(x, dims, widths, impl="fused")
    ref_low, ref_high = dense.split(x, dims, widths)
    torch.testing.assert_close(small, ref_low, atol=1e-10, rtol=0)
    torch.testing.assert_close(out, ref_high, atol=1e-10, rtol=0)
    with pytest.raises(ValueError, match="impl must be one of"):
        project(x, dims, widths, impl="fastest")
