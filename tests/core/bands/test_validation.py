"""Every bad input to the band operators raises an error that names the value."""

from __future__ import annotations

import pytest
import torch

from fdseg_core.bands import available_backends, band_fuse, band_split


def x5(*shape):
    return torch.randn(*(shape or (1, 1, 20, 20, 8)))


def test_non_tensor_raises_type_error():
    with pytest.raises(TypeError, match="x must be a torch.Tensor, got list"):
        band_split([1.0, 2.0])


@pytest.mark.parametrize("shape", [(20, 20), (1, 20, 20), (1, 1, 2, 2, 2, 2)])
def test_wrong_rank_raises_naming_the_shape(shape):
    with pytest.raises(ValueError, match=r"2 or 3 spatial dims, got \d dims"):
        band_split(torch.zeros(shape))


def test_complex_input_raises():
    with pytest.raises(TypeError, match="must be real, got complex dtype torch.complex64"):
        band_split(torch.zeros(1, 1, 20, 20, dtype=torch.complex64))


def test_integer_input_raises():
    with pytest.raises(TypeError, match="floating dtype, got torch.int64"):
        band_split(torch.zeros(1, 1, 20, 20, dtype=torch.int64))


@pytest.mark.parametrize("dims", [(1, 2), (0,), (5,), (-4,)])
def test_non_spatial_dim_raises(dims):
    with pytest.raises(ValueError, match="is not a spatial dim"):
        band_split(x5(), dims=dims)


def test_repeated_dim_raises():
    with pytest.raises(ValueError, match=r"dims=\(2, -3\) repeats a dim"):
        band_split(x5(), dims=(2, -3))


@pytest.mark.parametrize("dims", [(), "23", (2.0, 3)])
def test_malformed_dims_raise_type_error(dims):
    with pytest.raises(TypeError, match="dims must"):
        band_split(x5(), dims=dims)


@pytest.mark.parametrize("beta", [0.0, 1.0, -0.1, 1.5])
def test_beta_outside_open_interval_raises(beta):
    with pytest.raises(ValueError, match=rf"beta must lie in \(0, 1\), got {beta}"):
        band_split(x5(), beta)


@pytest.mark.parametrize("beta", ["0.1", True, None])
def test_non_numeric_beta_raises(beta):
    with pytest.raises(TypeError, match="beta must be a real number"):
        band_split(x5(), beta)


def test_band_too_narrow_names_the_dim_and_its_size():
    with pytest.raises(ValueError, match=r"k=int\(8 \* 0.1\)=0 samples on dim 3 of size 8.*>= 10"):
        band_split(torch.zeros(1, 1, 20, 8, 4), 0.1)


def test_fuse_low_shape_mismatch_raises():
    high = x5()
    with pytest.raises(
        ValueError, match=r"low has shape \(1, 1, 3, 2, 8\), expected \(1, 1, 2, 2, 8\)"
    ):
        band_fuse(torch.zeros(1, 1, 3, 2, 8), high)


def test_fuse_dtype_mismatch_raises():
    with pytest.raises(
        TypeError, match="low has dtype torch.float64 but high has dtype torch.float32"
    ):
        band_fuse(torch.zeros(1, 1, 2, 2, 8, dtype=torch.float64), x5())


def test_fuse_devices_differ_raises():
    low = torch.zeros(1, 1, 2, 2, 8, device="meta")
    with pytest.raises(ValueError, match="low is on meta but high is on cpu"):
        band_fuse(low, x5())


def test_unknown_layout_raises():
    with pytest.raises(ValueError, match="unknown layout 'shifted'"):
        band_split(x5(), layout="shifted")


def test_unknown_backend_raises():
    with pytest.raises(ValueError, match="unknown backend 'cufft'"):
        band_split(x5(), backend="cufft")


def test_triton_on_cpu_without_interpreter_explains_why(monkeypatch):
    monkeypatch.delenv("TRITON_INTERPRET", raising=False)
    with pytest.raises(ValueError, match="backend 'triton' is unavailable: .*(CUDA|not installed)"):
        band_split(x5(), backend="triton")


def test_available_backends_lists_cpu_backends(monkeypatch):
    monkeypatch.delenv("TRITON_INTERPRET", raising=False)
    names = available_backends("cpu")
    assert names[:2] == ["torch", "matmul"]
    assert "triton" not in names
