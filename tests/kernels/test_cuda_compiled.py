"""The compiled (autotuned) Triton kernels on a CUDA device against float64 references.

The rest of ``tests/kernels`` runs the kernels through Triton's interpreter; this
module runs the real GPU code path: compilation for the device, autotuning,
the launch cache, and ``tf32x3`` / ``ieee`` dots on real hardware. It needs a CUDA device
and is skipped without one (marker ``gpu``); on a GPU machine run
``pytest tests/kernels -m gpu``.
"""

from __future__ import annotations

import pytest
import torch

from fdseg_core.bands import band_fuse, band_split

pytest.importorskip("triton", reason="the Triton kernels need the optional 'triton' package")

from fdseg_kernels import band_split_triton  # noqa: E402

pytestmark = [
    pytest.mark.gpu,
    pytest.mark.triton,
    pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device"),
]

DTYPES = [torch.float32, torch.float16, torch.bfloat16, torch.float64]


@pytest.fixture(autouse=True)
def _compiled_kernels(monkeypatch):
    # the package conftest turns the interpreter on for every kernel test; here it must be off
    monkeypatch.delenv("TRITON_INTERPRET", raising=False)


def _cuda(t: torch.Tensor, dtype: torch.dtype) -> torch.Tensor:
    return t.to(device="cuda", dtype=dtype)


@pytest.mark.parametrize("impl", ["per_axis", "fused"])
@pytest.mark.parametrize("dtype", DTYPES, ids=lambda d: str(d).removeprefix("torch."))
def test_cuda_split_and_fuse_forward_backward_match_float64_torch_backend(
    case, dtype, impl, assert_matches, triton_split, triton_fuse
):
    gen = torch.Generator().manual_seed(10)
    x = torch.randn(case.shape, generator=gen, dtype=torch.float64)
    g_low = torch.randn(case.low_shape, generator=gen, dtype=torch.float64)
    g_high = torch.randn(case.shape, generator=gen, dtype=torch.float64)

    xt = _cuda(x, dtype).requires_grad_()
    low, high = triton_split(xt, case.given_dims, case.widths, impl=impl)
    assert low.is_cuda and high.is_cuda
    (gx,) = torch.autograd.grad((low, high), xt, (_cuda(g_low, dtype), _cuda(g_high, dtype)))

    # the reference sees the inputs exactly as the kernels did (rounded to dtype)
    xr = x.to(dtype).double().requires_grad_()
    ref_low, ref_high = band_split(xr, case.beta, dims=case.given_dims, backend="torch")
    (ref_gx,) = torch.autograd.grad(
        (ref_low, ref_high), xr, (g_low.to(dtype).double(), g_high.to(dtype).double())
    )
    assert_matches(low.cpu(), ref_low, dtype)
    assert_matches(high.cpu(), ref_high, dtype)
    assert_matches(gx.cpu(), ref_gx, dtype)

    lt = _cuda(g_low, dtype).requires_grad_()
    ht = _cuda(g_high, dtype).requires_grad_()
    fused = triton_fuse(lt, ht, case.given_dims, case.widths, impl=impl)
    g = torch.randn(case.shape, generator=gen, dtype=torch.float64)
    g_lt, g_ht = torch.autograd.grad(fused, (lt, ht), _cuda(g, dtype))
    lr = g_low.to(dtype).double().requires_grad_()
    hr = g_high.to(dtype).double().requires_grad_()
    ref_fused = band_fuse(lr, hr, case.beta, dims=case.given_dims, backend="torch")
    ref_gl, ref_gh = torch.autograd.grad(ref_fused, (lr, hr), g.to(dtype).double())
    assert_matches(fused.cpu(), ref_fused, dtype)
    assert_matches(g_lt.cpu(), ref_gl, dtype)
    assert_matches(g_ht.cpu(), ref_gh, dtype)


@pytest.mark.parametrize("shape", [(1, 1, 160, 160, 128), (2, 8, 160, 160, 128)])
def test_cuda_kernels_at_the_paper_shapes_invert_and_match_the_torch_backend(shape):
    gen = torch.Generator(device="cuda").manual_seed(0)
    x = torch.randn(shape, device="cuda", generator=gen)
    low, high = band_split(x, 0.1, backend="triton")
    ref_low, ref_high = band_split(x.double(), 0.1, backend="torch")
    scale = x.abs().max().item()
    torch.testing.assert_close(low.double(), ref_low, rtol=1e-5, atol=1e-5 * scale)
    torch.testing.assert_close(high.double(), ref_high, rtol=1e-5, atol=1e-5 * scale)
    back = band_fuse(low, high, 0.1, backend="triton")
    torch.testing.assert_close(back, x, rtol=1e-5, atol=1e-5 * scale)


def test_cuda_auto_backend_picks_triton_for_cuda_tensors(monkeypatch):
    import fdseg_kernels.band_split as kernel_module

    calls = []
    real = kernel_module.band_split_forward

    def spy(*args, **kwargs):
        calls.append(args[0].device.type)
        return real(*args, **kwargs)

    monkeypatch.setattr(kernel_module, "band_split_forward", spy)
    x = torch.randn(1, 2, 20, 20, 8, device="cuda")
    band_split(x, 0.2, backend="auto")
    assert calls == ["cuda"]


def test_cuda_later_calls_reuse_the_tuned_configuration_with_identical_results():
    from fdseg_kernels import _common

    x = torch.randn(1, 3, 40, 36, 20, device="cuda")
    first = band_split_triton(x, (2, 3), (4, 3))
    tuned = dict(_common._TUNED)
    problem = [k for k in tuned if k[1:4] == (3, 4, 40)]  # down-sampling along dim 2
    assert problem, "the first call did not record its autotuned configuration"
    second = band_split_triton(x, (2, 3), (4, 3))
    assert _common._TUNED == tuned
    for a, b in zip(first, second, strict=True):
        assert torch.equal(a, b)


def test_cuda_device_time_is_measured_for_the_kernels():
    from fdseg_core.benchmark import device_time_call, make_call

    call = make_call("split", "triton", (1, 2, 64, 64, 32), torch.float32, "cuda")
    call()
    assert device_time_call(call, repeats=3) > 0


@pytest.mark.parametrize("impl", ["per_axis", "fused"])
def test_cuda_fused_and_per_axis_kernels_agree_at_the_paper_shape(impl):
    x = torch.randn(2, 8, 160, 160, 128, device="cuda")
    low, high = band_split_triton(x, (2, 3), (16, 16), impl=impl)
    ref_low, ref_high = band_split(x.double(), 0.1, backend="torch")
    scale = x.abs().max().item()
    torch.testing.assert_close(low.double(), ref_low, rtol=1e-5, atol=1e-5 * scale)
    torch.testing.assert_close(high.double(), ref_high, rtol=1e-5, atol=1e-5 * scale)


def test_cuda_graph_captures_a_training_step_with_the_band_ops():
    """The custom ops are capturable: after a warm-up (autotuning, cached matrices) a
    forward and backward pass replays from a CUDA graph with the eager gradients."""
    from fdseg_core import FrequencyDisentangledNet

    torch.manual_seed(0)
    net = FrequencyDisentangledNet("unet3d", 1, 2, fusion="late", base_filters=4).cuda()
    x = torch.randn(2, 1, 32, 32, 16, device="cuda")
    side = torch.cuda.Stream()
    side.wait_stream(torch.cuda.current_stream())
    with torch.cuda.stream(side):
        for _ in range(3):
            net.zero_grad(set_to_none=True)
            net(x).square().mean().backward()
    torch.cuda.current_stream().wait_stream(side)
    eager = [p.grad.clone() for p in net.parameters()]
    graph = torch.cuda.CUDAGraph()
    net.zero_grad(set_to_none=True)
    with torch.cuda.graph(graph):
        loss = net(x).square().mean()
        loss.backward()
    graph.replay()
    torch.cuda.synchronize()
    for p, g in zip(net.parameters(), eager, strict=True):
        torch.testing.assert_close(p.grad, g, rtol=1e-4, atol=1e-6)


def test_cuda_compile_reduce_overhead_matches_eager():
    from fdseg_core import FrequencyDisentangledNet

    torch._dynamo.reset()
    net = FrequencyDisentangledNet("unet3d", 1, 2, fusion="early", base_filters=4).cuda().eval()
    x = torch.randn(2, 1, 32, 32, 16, device="cuda")
    with torch.no_grad():
        eager = net(x)
        compiled = torch.compile(net, mode="reduce-overhead", fullgraph=True)
        for _ in range(3):
            out = compiled(x)
    torch.testing.assert_close(out, eager, rtol=1e-4, atol=1e-5)
