"""The kernel package's modules keep the names callers import, at their import paths."""

from __future__ import annotations

import pytest

pytest.importorskip("triton")

pytestmark = pytest.mark.triton


def test_names_at_their_import_paths():
    import fdseg_kernels
    from fdseg_kernels import _common, _env, _launch, autograd, band_fuse, band_fused, band_split

    assert fdseg_kernels.triton_available is _env.triton_available
    assert fdseg_kernels.triton_runs_on is _env.triton_runs_on
    assert fdseg_kernels.interpreter_enabled is _env.interpreter_enabled
    assert callable(band_split.band_split_forward)
    assert callable(band_fuse.band_fuse_forward)
    assert callable(band_fused.fused_applicable) and callable(band_fused.fused_band_project)
    assert callable(_common.project) and callable(_common._kernel)
    for name in ("dot_precision", "compute_dtype", "on_device_of", "GPU_FLOAT32_PRECISION"):
        assert getattr(_common, name) is getattr(_launch, name)
    for name in ("BandSplitFunction", "BandFuseFunction", "band_split_triton", "band_fuse_triton"):
        assert hasattr(autograd, name)


def test_the_autograd_functions_call_the_launchers_of_their_modules():
    from fdseg_kernels import autograd, band_fuse, band_split

    assert autograd.band_split_forward is band_split.band_split_forward
    assert autograd.band_fuse_forward is band_fuse.band_fuse_forward
