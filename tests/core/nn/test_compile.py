"""torch.compile traces FrequencyDisentangledNet in one graph: the band operators are
``torch.library`` custom ops (``fdseg::band_split``, ``fdseg::band_fuse``) with fake
implementations and registered autograd, so there is no graph break on any backend."""

from __future__ import annotations

import pytest
import torch

from fdseg_core import FrequencyDisentangledNet, band_fuse, band_split

pytestmark = [
    pytest.mark.slow,
    pytest.mark.filterwarnings("ignore::UserWarning"),
]  # trains or exports models


def _net(fusion: str, **kw) -> FrequencyDisentangledNet:
    torch.manual_seed(0)
    return FrequencyDisentangledNet(
        "unet3d", 1, 2, fusion=fusion, beta=0.25, base_filters=2, levels=2, **kw
    )


@pytest.fixture(autouse=True)
def _fresh_dynamo():
    torch._dynamo.reset()
    yield
    torch._dynamo.reset()


@pytest.mark.parametrize(
    ("backend", "layout"),
    [("matmul", "centered"), ("torch", "centered"), ("matmul", "reference"), ("auto", "reference")],
)
@pytest.mark.parametrize("fusion", ["early", "late"])
def test_no_graph_break_and_eager_outputs_and_gradients(fusion, backend, layout):
    net = _net(fusion, backend=backend, layout=layout).eval()
    x = torch.randn(2, 1, 16, 16, 8)
    explanation = torch._dynamo.explain(net)(x)
    assert explanation.graph_break_count == 0 and explanation.graph_count == 1
    torch._dynamo.reset()
    compiled = torch.compile(net, fullgraph=True, backend="aot_eager")
    xe = x.clone().requires_grad_(True)
    xc = x.clone().requires_grad_(True)
    eager, out = net(xe), compiled(xc)
    torch.testing.assert_close(out, eager, atol=1e-5, rtol=1e-5)
    eager.square().mean().backward()
    out.square().mean().backward()
    torch.testing.assert_close(xc.grad, xe.grad, atol=1e-5, rtol=1e-4)


@pytest.mark.parametrize("fusion", ["early", "late"])
def test_inductor_compiled_model_matches_eager(fusion):
    """The default compiler (inductor, C++ on the CPU), fullgraph, as `fdseg train
    --compile` uses it."""
    net = _net(fusion).eval()
    x = torch.randn(2, 1, 16, 16, 8)
    with torch.no_grad():
        eager = net(x)
        out = torch.compile(net, fullgraph=True)(x)
    torch.testing.assert_close(out, eager, atol=1e-5, rtol=1e-5)


def test_custom_ops_have_fake_implementations_and_pass_opcheck():
    import fdseg_core.bands.ops  # noqa: F401  (registers torch.ops.fdseg.*)

    x = torch.randn(1, 2, 20, 20, 4, dtype=torch.float64)
    low = torch.randn(1, 2, 4, 4, 4, dtype=torch.float64)
    for layout in ("centered", "reference"):
        for backend in ("matmul", "torch"):
            for transposed in (False, True):
                args = ([2, 3], [4, 4], layout, backend, transposed, "per_axis")
                torch.library.opcheck(torch.ops.fdseg.band_split.default, (x, *args))
                torch.library.opcheck(torch.ops.fdseg.band_fuse.default, (low, x, *args))
    with torch._subclasses.fake_tensor.FakeTensorMode():
        fake = torch.empty(3, 1, 40, 30, 5)
        lo, hi = band_split(fake, 0.1)
        assert lo.shape == (3, 1, 4, 3, 5) and hi.shape == fake.shape
        assert band_fuse(lo, hi, 0.1).shape == fake.shape


@pytest.mark.parametrize("layout", ["centered", "reference"])
@pytest.mark.parametrize("backend", ["torch", "matmul"])
def test_double_backward_through_the_ops(layout, backend):
    x = torch.randn(1, 1, 10, 10, 3, dtype=torch.float64, requires_grad=True)
    lo = torch.randn(1, 1, 2, 2, 3, dtype=torch.float64, requires_grad=True)

    def fuse(a, b):
        return band_fuse(a, b, 0.2, layout=layout, backend=backend)

    def split(t):
        return band_split(t, 0.2, layout=layout, backend=backend)

    assert torch.autograd.gradgradcheck(fuse, (lo, x))
    assert torch.autograd.gradgradcheck(split, (x,))
