"""Shared fixtures of the Triton kernel tests: interpreter mode, references, tolerances.

The kernels run under Triton's interpreter (``TRITON_INTERPRET=1``, numpy on the
CPU), so these tests need no GPU. ``triton.jit`` reads ``TRITON_INTERPRET`` when
it *decorates* a function, not at ``import triton``; ``fdseg_kernels`` decides
per call which variant (interpreted or compiled) to launch
(``fdseg_kernels._common._kernel``), so setting the variable per test with
``monkeypatch`` is enough, whatever the import order. A test that needs the
variable unset deletes it itself.
"""

from __future__ import annotations

from collections.abc import Callable

import pytest
import torch

from fdseg_core.bands.operators import downsample_matrix, upsample_matrix

#: Relative tolerance per dtype: ``|got - ref| <= tol * |ref| + tol * max|ref|``.
#: float32 products are exact (``input_precision="ieee"``) and sums run in float32;
#: float16/bfloat16 results are rounded once to the output dtype (unit roundoff
#: 4.9e-4 and 3.9e-3), so their tolerance is a few units of that roundoff.
TOLERANCE = {
    torch.float64: 1e-10,
    torch.float32: 1e-5,
    torch.float16: 2e-3,
    torch.bfloat16: 1e-2,
}


@pytest.fixture(autouse=True)
def _triton_interpreter(monkeypatch):
    monkeypatch.setenv("TRITON_INTERPRET", "1")


def _along(t: torch.Tensor, matrix: torch.Tensor, dim: int) -> torch.Tensor:
    return torch.movedim(torch.tensordot(matrix, t.movedim(dim, 0), dims=1), 0, dim)


def _down(t, dims, widths):
    for d, k in zip(dims, widths, strict=True):
        t = _along(t, downsample_matrix(t.shape[d], k), d)
    return t


def _up(t, dims, sizes):
    for d, n in zip(dims, sizes, strict=True):
        t = _along(t, upsample_matrix(n, t.shape[d]), d)
    return t


class DenseReference:
    """Float64 band operators from the per-axis matrices, with tensordot (no FFT)."""

    @staticmethod
    def split(x: torch.Tensor, dims, widths) -> tuple[torch.Tensor, torch.Tensor]:
        x = x.double()
        low = _down(x, dims, widths)
        return low, x - _up(low, dims, tuple(x.shape[d] for d in dims))

    @staticmethod
    def fuse(low: torch.Tensor, high: torch.Tensor, dims, widths) -> torch.Tensor:
        low, high = low.double(), high.double()
        small = _down(high, dims, widths) - low
        return high - _up(small, dims, tuple(high.shape[d] for d in dims))


@pytest.fixture
def dense() -> DenseReference:
    return DenseReference()


@pytest.fixture
def assert_matches() -> Callable[..., None]:
    """Compare a result of dtype ``dtype`` with a float64 reference, per :data:`TOLERANCE`."""

    def check(got: torch.Tensor, ref: torch.Tensor, dtype: torch.dtype) -> None:
        assert got.dtype == dtype
        assert got.shape == ref.shape
        tol = TOLERANCE[dtype]
        scale = ref.abs().max().item() if ref.numel() else 1.0
        torch.testing.assert_close(got.double(), ref.double(), rtol=tol, atol=tol * scale)

    return check


# (shape, dims, beta): odd sizes, sizes that are not multiples of the blocks, k odd and
# even, k = 1, 2D and 3D, every kind of dims (middle and last axis in memory),
# batch and channels > 1, and sizes beyond one interpreter block (128 rows or columns of
# the matrix, 256 trailing elements) so that the contraction loop and the grid run > 1 step.
BAND_CASES = [
    pytest.param(((2, 3, 17, 20, 9), (2, 3), 0.2), id="3d-dims23-k3k4"),
    pytest.param(((1, 2, 17, 12, 10), (2, 4), 0.3), id="3d-dims24-k5k3"),
    pytest.param(((2, 1, 9, 18, 20), (3, 4), 0.25), id="3d-dims34-k4k5"),
    pytest.param(((2, 3, 17, 20, 9), (2,), 0.35), id="3d-dims2-k5"),
    pytest.param(((1, 2, 11, 12, 13), (2, 3, 4), 0.4), id="3d-dims234-k4k4k5"),
    pytest.param(((2, 3, 21, 19), (2, 3), 0.3), id="2d-dims23-k6k5"),
    pytest.param(((3, 2, 16, 20), (3,), 0.1), id="2d-dims3-k2"),
    pytest.param(((1, 1, 10, 11, 4), (2, 3), 0.1), id="3d-k1k1"),
    pytest.param(((1, 1, 130, 3, 100), (2,), 0.1), id="3d-multiblock-middle-k13"),
    pytest.param(((1, 1, 300, 130), (-1,), 0.1), id="2d-multiblock-last-k13"),
]


class BandCase:
    """One problem: input shape, band dims (normalised) and widths."""

    def __init__(self, shape: tuple[int, ...], dims: tuple[int, ...], beta: float) -> None:
        self.shape = shape
        self.beta = beta
        self.given_dims = dims
        self.dims = tuple(sorted(d % len(shape) for d in dims))
        self.widths = tuple(int(shape[d] * beta) for d in self.dims)
        low = list(shape)
        for d, k in zip(self.dims, self.widths, strict=True):
            low[d] = k
        self.low_shape = tuple(low)


@pytest.fixture(params=BAND_CASES)
def case(request) -> BandCase:
    return BandCase(*request.param)


def _sorted_band(ndim: int, dims, widths) -> tuple[list[int], list[int]]:
    pairs = sorted(zip((d % ndim for d in dims), widths, strict=True))
    return [d for d, _ in pairs], [k for _, k in pairs]


@pytest.fixture
def triton_split() -> Callable[..., tuple[torch.Tensor, torch.Tensor]]:
    """The differentiable split on the Triton backend with explicit widths: the custom op
    ``fdseg::band_split`` that production dispatch calls, so forward, backward and
    double backward all run the kernels (of design ``impl``)."""
    from fdseg_core.bands.ops import band_split_op

    def split(x, dims, widths, impl="per_axis"):
        d, k = _sorted_band(x.ndim, dims, widths)
        return band_split_op(x, d, k, "centered", "triton", False, impl)

    return split


@pytest.fixture
def triton_fuse() -> Callable[..., torch.Tensor]:
    """The differentiable fusion on the Triton backend (custom op ``fdseg::band_fuse``)."""
    from fdseg_core.bands.ops import band_fuse_op

    def fuse(low, high, dims, widths, impl="per_axis"):
        d, k = _sorted_band(high.ndim, dims, widths)
        return band_fuse_op(low, high, d, k, "centered", "triton", False, impl)

    return fuse
