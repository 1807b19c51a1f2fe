"""One path into the kernels: production dispatch (the custom ops) chooses the kernel
design per call, forward and backward; the kernel package's own launchers are forward
only and say where gradients come from."""

from __future__ import annotations

import pytest
import torch

from fdseg_core.bands import KERNELS, band_fuse, band_split

pytest.importorskip("triton", reason="the Triton kernels need the optional 'triton' package")

import fdseg_kernels  # noqa: E402
from fdseg_kernels import _common  # noqa: E402

pytestmark = pytest.mark.triton


@pytest.fixture
def fused_calls(monkeypatch):
    """Count the calls of the two-pass kernels' launcher (and still run it)."""
    calls = []
    real = _common.fused_band_project

    def counted(*args, **kwargs):
        calls.append(tuple(args[0].shape))
        return real(*args, **kwargs)

    monkeypatch.setattr(_common, "fused_band_project", counted)
    return calls


@pytest.mark.parametrize(("kernel", "expected"), [("per_axis", 0), ("fused", 4), ("auto", 4)])
def test_the_kernel_design_reaches_the_launchers_forward_and_backward(
    kernel, expected, fused_calls
):
    x = torch.randn(1, 2, 20, 20, 16, dtype=torch.float64, requires_grad=True)
    low, high = band_split(x, 0.2, backend="triton", kernel=kernel)
    assert len(fused_calls) == (1 if expected else 0)
    out = band_fuse(low, high, 0.2, backend="triton", kernel=kernel)
    (g,) = torch.autograd.grad(out.square().sum(), x)
    # split, fuse, the fusion's backward (a split) and the split's backward (a fusion)
    assert len(fused_calls) == expected
    # fuse(split(x)) = x, so the gradient of sum(out^2) is 2 x
    torch.testing.assert_close(g, 2 * x.detach(), atol=1e-10, rtol=1e-10)


def test_fused_design_through_the_public_api_matches_the_torch_backend():
    gen = torch.Generator().manual_seed(5)
    x = torch.randn(2, 3, 17, 20, 18, dtype=torch.float64, generator=gen)
    g_high = torch.randn(x.shape, dtype=torch.float64, generator=gen)
    grads = []
    for backend, kernel in (("triton", "fused"), ("torch", "per_axis")):
        xt = x.clone().requires_grad_()
        low, high = band_split(xt, 0.2, backend=backend, kernel=kernel)
        (g,) = torch.autograd.grad((low.sum() + (high * g_high).sum()), xt)
        grads.append((low.detach(), high.detach(), g))
    for got, want in zip(grads[0], grads[1], strict=True):
        torch.testing.assert_close(got, want, atol=1e-10, rtol=1e-10)


@pytest.mark.parametrize(
    ("backend", "kernel", "message"),
    [
        ("triton", "fastest", r"unknown kernel design 'fastest'; expected one of \['per_axis'"),
        ("matmul", "fused", "kernel='fused' picks a design of the Triton kernels, but backend="),
        ("torch", "auto", "backend='torch' runs none"),
    ],
)
def test_bad_kernel_designs_are_refused_before_anything_runs(backend, kernel, message):
    with pytest.raises(ValueError, match=message):
        band_split(torch.zeros(1, 1, 20, 20, 4), 0.1, backend=backend, kernel=kernel)
    with pytest.raises(ValueError, match=message):
        band_fuse(
            torch.zeros(1, 1, 2, 2, 4),
            torch.zeros(1, 1, 20, 20, 4),
            0.1,
            backend=backend,
            kernel=kernel,
        )


def test_the_kernel_designs_are_the_ones_the_launchers_accept():
    assert _common.IMPLS is KERNELS
    x = torch.randn(1, 1, 10, 10, 16, dtype=torch.float64)
    results = [fdseg_kernels.band_split_triton(x, (2, 3), (2, 2), impl=k) for k in KERNELS]
    for low, high in results[1:]:
        torch.testing.assert_close(low, results[0][0], atol=1e-12, rtol=0)
        torch.testing.assert_close(high, results[0][1], atol=1e-12, rtol=0)


def test_the_package_launchers_refuse_inputs_that_need_a_gradient():
    x = torch.randn(1, 1, 10, 10, 4, requires_grad=True)
    with pytest.raises(
        ValueError,
        match=r"band_split_triton computes no gradient.*"
        r"fdseg_core\.bands\.band_split\(\.\.\., backend='triton'",
    ):
        fdseg_kernels.band_split_triton(x, (2, 3), (2, 2))
    with pytest.raises(ValueError, match=r"fdseg_core\.bands\.band_fuse\(\.\.\."):
        fdseg_kernels.band_fuse_triton(torch.zeros(1, 1, 2, 2, 4), x, (2, 3), (2, 2))
    with torch.no_grad():  # inference: allowed
        low, high = fdseg_kernels.band_split_triton(x, (2, 3), (2, 2))
    assert low.shape == (1, 1, 2, 2, 4) and not high.requires_grad


def test_the_kernel_package_holds_no_autograd_function():
    import importlib
    import pkgutil

    names = [m.name for m in pkgutil.iter_modules(fdseg_kernels.__path__)]
    assert "autograd" not in names
    for name in names:
        module = importlib.import_module(f"fdseg_kernels.{name}")
        functions = [
            v
            for v in vars(module).values()
            if isinstance(v, type) and issubclass(v, torch.autograd.Function)
        ]
        assert functions == [], (name, functions)


@pytest.mark.parametrize("kernel", ["per_axis", "fused"])
def test_the_custom_ops_pass_opcheck_on_the_triton_backend(kernel):
    x = torch.randn(1, 1, 10, 10, 16, dtype=torch.float64)
    low = torch.randn(1, 1, 2, 2, 16, dtype=torch.float64)
    for transposed in (False, True):
        args = ([2, 3], [2, 2], "centered", "triton", transposed, kernel)
        torch.library.opcheck(torch.ops.fdseg.band_split.default, (x, *args))
        torch.library.opcheck(torch.ops.fdseg.band_fuse.default, (low, x, *args))


def test_the_training_configuration_chooses_the_design_the_network_runs(fused_calls):
    from fdseg_core.train import TrainConfig
    from fdseg_core.train.checkpoint import build_model

    config = TrainConfig(
        dataset="d", out="o", backbone="unet3d", backend="triton", kernel="fused", fusion="early"
    )
    net = build_model(config.replace(backbone_options={"levels": 2, "base_filters": 4}), 1, 3)
    assert (net.backend, net.kernel) == ("triton", "fused")
    net(torch.randn(1, 1, 20, 20, 16))
    assert len(fused_calls) >= 2  # the split of the input and the early fusion
