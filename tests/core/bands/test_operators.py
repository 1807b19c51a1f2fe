"""The per-axis operators: adjointness, projection, closed forms."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from fdseg_core.bands import band_fuse, band_split
from fdseg_core.bands.operators import (
    adjoint_scale,
    band_indices,
    downsample_matrix,
    upsample_matrix,
)


@pytest.mark.parametrize(("n", "k"), [(10, 1), (10, 2), (17, 3), (20, 4), (33, 6), (160, 16)])
def test_down_after_up_is_identity_and_projection_is_orthogonal(n, k):
    d = downsample_matrix(n, k)
    u = upsample_matrix(n, k)
    assert d.shape == (k, n) and u.shape == (n, k)
    torch.testing.assert_close(d @ u, torch.eye(k, dtype=torch.float64), atol=1e-12, rtol=0)
    p = u @ d
    torch.testing.assert_close(p, p.T, atol=1e-12, rtol=0)
    torch.testing.assert_close(p @ p, p, atol=1e-12, rtol=0)
    assert round(torch.trace(p).item()) == k  # rank k


@pytest.mark.parametrize(("n", "k"), [(12, 3), (12, 4), (31, 6)])
def test_downsample_matrix_equals_dft_restatement(n, k):
    """D = IDFT_k . crop . DFT_n, built from numpy's FFT of the identity."""
    spec = np.fft.fft(np.eye(n), axis=0)  # (n freqs, n samples)
    full, coarse, nyq = band_indices(n, k)
    cropped = np.zeros((k, n), dtype=complex)
    cropped[coarse] = spec[full]
    if nyq is not None:
        cropped[nyq] = (spec[nyq] + spec[n - nyq]) / math.sqrt(2)
    expected = np.fft.ifft(cropped * (k / n), axis=0).real
    np.testing.assert_allclose(downsample_matrix(n, k).numpy(), expected, atol=1e-12)


def test_out_of_range_width_raises():
    with pytest.raises(ValueError, match="k=0 must satisfy 1 <= k < n=10"):
        downsample_matrix(10, 0)
    with pytest.raises(ValueError, match="k=10 must satisfy"):
        upsample_matrix(10, 10)


def test_adjoint_scale_relates_transpose_and_upsampling():
    d = downsample_matrix(20, 4)
    u = upsample_matrix(20, 4)
    torch.testing.assert_close(d.T, adjoint_scale((20,), (4,)) * u, atol=1e-12, rtol=0)


@settings(max_examples=25, deadline=None)
@given(
    sizes=st.lists(st.integers(min_value=3, max_value=19), min_size=2, max_size=3),
    beta=st.floats(min_value=0.34, max_value=0.95),
    batch=st.integers(1, 2),
    data=st.data(),
)
def test_random_shapes_round_trip_and_backends_agree(sizes, beta, batch, data):
    ndim = 2 + len(sizes)
    dims = data.draw(
        st.lists(st.sampled_from(range(2, ndim)), min_size=1, max_size=len(sizes), unique=True)
    )
    x = torch.randn(batch, 2, *sizes, dtype=torch.float64)
    low_t, high_t = band_split(x, beta, dims=dims, backend="torch")
    low_m, high_m = band_split(x, beta, dims=dims, backend="matmul")
    torch.testing.assert_close(low_m, low_t, atol=1e-11, rtol=0)
    torch.testing.assert_close(high_m, high_t, atol=1e-11, rtol=0)
    torch.testing.assert_close(
        band_fuse(low_m, high_m, beta, dims=dims, backend="matmul"), x, atol=1e-11, rtol=0
    )


@pytest.mark.parametrize(("n", "k"), [(40, 4), (33, 6), (20, 3), (160, 16), (9, 1)])
def test_matrices_built_in_a_trace_equal_the_cached_ones(n, k):
    """Under torch.export with dynamic shapes the sizes are symbolic and the matrices are
    built from tensor ops inside the graph; they must be the cached matrices."""
    from fdseg_core.bands import operators as ops

    torch.testing.assert_close(
        ops._traced_downsample(n, k, torch.float64, "cpu"),
        ops.downsample_matrix(n, k),
        atol=1e-12,
        rtol=0,
    )
    traced = ops._traced_reference(n, k, torch.float64, "cpu")
    for got, want in zip(traced, ops.reference_matrices(n, k), strict=True):
        torch.testing.assert_close(got, want, atol=1e-12, rtol=0)


def test_band_width_is_the_floor_for_concrete_and_symbolic_sizes():
    from fdseg_core.bands.operators import band_width

    assert [band_width(n, 0.1) for n in (9, 10, 160, 161)] == [0, 1, 16, 16]
    assert band_width(100, 0.29) == int(100 * 0.29) == 28  # float rounding, as int()


@pytest.mark.parametrize("layout", ["centered", "reference"])
def test_matrices_built_under_a_tracer_never_enter_the_cache(layout):
    from torch._subclasses.fake_tensor import FakeTensor, FakeTensorMode

    from fdseg_core.bands.operators import reference_matrices

    n, k = 37, 5  # a size no other test uses, so the first build happens under the tracer

    def build():
        if layout == "centered":
            return (downsample_matrix(n, k, dtype=torch.float32),)
        return reference_matrices(n, k, dtype=torch.float32)

    with FakeTensorMode():
        traced = build()
    assert all(isinstance(m, FakeTensor) for m in traced)
    eager = build()  # must be real tensors, not the tracer's
    assert not any(isinstance(m, FakeTensor) for m in eager)
    assert all(m.shape == t.shape for m, t in zip(eager, traced, strict=True))
    assert float(eager[0].abs().sum()) > 0


@pytest.mark.parametrize("beta", [0.1, 0.05, 0.2, 0.3, 0.07, 1 / 3, 0.125, 0.9])
def test_the_minimum_band_size_is_the_boundary_of_the_band_width(beta):
    from fdseg_core.bands import band_width, min_band_size

    n = min_band_size(beta)
    assert band_width(n, beta) == 1 and band_width(n - 1, beta) == 0
    assert min_band_size(0.1) == 10  # floor(10 * 0.1) = 1: 10 is enough, not 11
