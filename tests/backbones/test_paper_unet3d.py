"""``paper_unet3d`` against a restatement of the paper's public code, written from reading
``lib/medzoo/Unet3D_3.py`` and ``Unet3D_disentangle_{early,late}_fuse.py``.

Three checks per model (baseline, early, late): the parameters, layer by layer (names of
the paper's code, weight shapes, counts); the activation shapes of every stage; and the
outputs of an independent functional forward (``torch.nn.functional`` with the same
weights, the paper's split and ``merge_low_high`` restated) to float64 precision.
"""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F

from fdseg_core import FrequencyDisentangledNet

F8 = 8  # base_n_filter


#: Parameters of UNet3D_3 (in_channels=1, n_classes=K), in the order its __init__ builds
#: them, as (name in the paper's code, weight shape); every convolution has bias=False and
#: the instance norms have no affine parameters.
def paper_layers(in_channels: int, classes: int) -> list[tuple[str, tuple[int, ...]]]:
    f = F8
    k3 = (3, 3, 3)
    k1 = (1, 1, 1)
    return [
        ("conv3d_c1_1", (f, in_channels, *k3)),
        ("conv3d_c1_2", (f, f, *k3)),
        ("lrelu_conv_c1.1", (f, f, *k3)),
        ("conv3d_c2", (2 * f, f, *k3)),
        ("norm_lrelu_conv_c2.2", (2 * f, 2 * f, *k3)),
        ("conv3d_c3", (4 * f, 2 * f, *k3)),
        ("norm_lrelu_conv_c3.2", (4 * f, 4 * f, *k3)),
        ("conv_norm_lrelu_l2.0", (8 * f, 8 * f, *k3)),
        ("conv3d_l2", (4 * f, 8 * f, *k1)),
        ("norm_lrelu_upscale_conv_norm_lrelu_l2.3", (2 * f, 4 * f, *k3)),
        ("conv_norm_lrelu_l3.0", (4 * f, 4 * f, *k3)),
        ("conv3d_l3", (2 * f, 4 * f, *k1)),
        ("norm_lrelu_upscale_conv_norm_lrelu_l3.3", (f, 2 * f, *k3)),
        ("conv_norm_lrelu_l4.0", (2 * f, 2 * f, *k3)),
        ("conv3d_l4", (classes, 2 * f, *k1)),
        ("ds3_1x1_conv3d", (classes, 2 * f, *k1)),
    ]


#: Layers the paper's early/late modules build but never call (levels 4 and 5).
UNUSED = [
    ("conv3d_c4", (64, 32, 3, 3, 3)),
    ("norm_lrelu_conv_c4.2", (64, 64, 3, 3, 3)),
    ("conv3d_c5", (128, 64, 3, 3, 3)),
    ("norm_lrelu_conv_c5.2", (128, 128, 3, 3, 3)),
    ("norm_lrelu_upscale_conv_norm_lrelu_l0.3", (64, 128, 3, 3, 3)),
    ("conv3d_l0", (64, 64, 1, 1, 1)),
    ("conv_norm_lrelu_l1.0", (128, 128, 3, 3, 3)),
    ("conv3d_l1", (64, 128, 1, 1, 1)),
    ("norm_lrelu_upscale_conv_norm_lrelu_l1.3", (32, 64, 3, 3, 3)),
]


def expected_parameters(fusion: str, in_channels: int, classes: int):
    layers = [(f"backbone.{n}", s) for n, s in paper_layers(in_channels, classes)]
    if fusion != "none":
        layers.insert(1, ("low_stem", (F8, in_channels, 3, 3, 3)))  # conv3d_c1_low
    return layers


def build(fusion: str, in_channels: int = 1, classes: int = 3) -> FrequencyDisentangledNet:
    torch.manual_seed(0)
    return FrequencyDisentangledNet(
        "paper_unet3d", in_channels, classes, fusion=fusion, layout="reference", backend="torch"
    )


@pytest.mark.parametrize("fusion", ["none", "early", "late"])
def test_parameters_are_the_paper_codes_layer_by_layer(fusion):
    net = build(fusion)
    got = [(n.removesuffix(".weight"), tuple(p.shape)) for n, p in net.named_parameters()]
    want = expected_parameters(fusion, 1, 3)
    assert sorted(got) == sorted(want)
    assert all(n.endswith(".weight") for n, _ in net.named_parameters())  # no bias, no affine
    count = sum(math.prod(s) for _, s in want)
    assert sum(p.numel() for p in net.parameters()) == count
    # UNet3D_3 with 1 input channel and 3 classes; the fused models add conv3d_c1_low (216)
    assert count == {"none": 220600, "early": 220816, "late": 220816}[fusion]
    built_by_the_paper = count + (sum(math.prod(s) for _, s in UNUSED) if fusion != "none" else 0)
    assert built_by_the_paper == {"none": 220600, "early": 1781392, "late": 1781392}[fusion]


@pytest.mark.parametrize("fusion", ["none", "early", "late"])
def test_activation_shapes_follow_the_paper_code(fusion):
    net = build(fusion).eval()
    b = net.backbone
    shapes = {}
    modules = {
        "conv3d_c1_1": b.conv3d_c1_1,
        "conv3d_c2": b.conv3d_c2,
        "conv3d_c3": b.conv3d_c3,
        "conv3d_l2": b.conv3d_l2,
        "up_l2": b.norm_lrelu_upscale_conv_norm_lrelu_l2,
        "up_l3": b.norm_lrelu_upscale_conv_norm_lrelu_l3,
        "conv_norm_lrelu_l4": b.conv_norm_lrelu_l4,
    }
    if fusion != "none":
        modules["low_stem"] = net.low_stem
    for name, module in modules.items():
        module.register_forward_hook(lambda m, i, o, name=name: shapes.__setitem__(name, o.shape))
    x = torch.randn(2, 1, 40, 40, 16)
    assert net(x).shape == (2, 3, 40, 40, 16)
    want = {
        "conv3d_c1_1": (2, 8, 40, 40, 16),
        "conv3d_c2": (2, 16, 20, 20, 8),
        "conv3d_c3": (2, 32, 10, 10, 4),
        "conv3d_l2": (2, 32, 10, 10, 4),  # after cat(out, context_3): 64 -> 32
        "up_l2": (2, 16, 20, 20, 8),
        "up_l3": (2, 8, 40, 40, 16),  # the late model fuses here
        "conv_norm_lrelu_l4": (2, 16, 40, 40, 16),  # after cat(context_1)
    }
    if fusion != "none":
        want["low_stem"] = (2, 8, 4, 4, 16)  # conv3d_c1_low on the 4 x 4 x 16 low image
    assert {k: tuple(v) for k, v in shapes.items()} == want


# ---- an independent functional forward, restated from the paper's code ----


def _inorm(t):
    return F.instance_norm(t)


def _lrelu(t):
    return F.leaky_relu(t, 0.01)


def _conv(t, w, stride=1):
    return F.conv3d(t, w, stride=stride, padding=w.shape[-1] // 2)


def _paper_split(x, beta):
    """The paper's training loop: fftn over X, Y, Z, the unshifted box cut, real parts."""
    spatial = (2, 3, 4)
    spec = torch.fft.fftn(x, dim=spatial)
    w = x.shape[2]
    m = int(w * beta)
    a, b = int(w / 2 - m / 2), int(w / 2 + m / 2)
    mask = torch.zeros_like(x)
    mask[:, :, a:b, a:b] = 1
    low = torch.fft.ifftn(spec[:, :, a:b, a:b], dim=spatial).real
    high = torch.fft.ifftn(spec * (1 - mask), dim=spatial).real
    return low, high


def _merge_low_high(low, high, beta):
    spatial = (2, 3, 4)
    lf, hf = torch.fft.fftn(low, dim=spatial), torch.fft.fftn(high, dim=spatial)
    w = high.shape[2]
    m = int(w * beta)
    a, b = int(w / 2 - m / 2), int(w / 2 + m / 2)
    hf[:, :, a:b, a:b, :] = lf
    return torch.fft.ifftn(hf, dim=spatial).real


def paper_forward(p: dict, x: torch.Tensor, fusion: str, beta: float = 0.1) -> torch.Tensor:
    """UNet3D_3 / Unet3D_disentangle_{early,late}_fuse.forward in eval mode (no dropout)."""
    if fusion == "none":
        out = _conv(x, p["conv3d_c1_1"])
    else:
        x_low, x_high = _paper_split(x, beta)
        out = _conv(x_high, p["conv3d_c1_1"])
        if fusion == "early":
            out = _merge_low_high(_conv(x_low, p["conv3d_c1_low"]), out, beta)
    residual_1 = out
    out = _conv(_lrelu(out), p["conv3d_c1_2"])
    out = _conv(_lrelu(out), p["lrelu_conv_c1.1"]) + residual_1
    context_1 = _lrelu(out)
    out = _lrelu(_inorm(out))
    out = _conv(out, p["conv3d_c2"], 2)
    residual_2 = out
    block = p["norm_lrelu_conv_c2.2"]
    out = _conv(_lrelu(_inorm(_conv(_lrelu(_inorm(out)), block))), block) + residual_2
    context_2 = out = _lrelu(_inorm(out))
    out = _conv(out, p["conv3d_c3"], 2)
    residual_3 = out
    block = p["norm_lrelu_conv_c3.2"]
    out = _conv(_lrelu(_inorm(_conv(_lrelu(_inorm(out)), block))), block) + residual_3
    context_3 = out = _lrelu(_inorm(out))
    out = torch.cat([out, context_3], 1)
    out = _conv(_lrelu(_inorm(_conv(out, p["conv_norm_lrelu_l2.0"]))), p["conv3d_l2"])
    out = F.interpolate(_lrelu(_inorm(out)), scale_factor=2, mode="nearest")
    out = _lrelu(_inorm(_conv(out, p["norm_lrelu_upscale_conv_norm_lrelu_l2.3"])))
    out = torch.cat([out, context_2], 1)
    out = _conv(_lrelu(_inorm(_conv(out, p["conv_norm_lrelu_l3.0"]))), p["conv3d_l3"])
    out = F.interpolate(_lrelu(_inorm(out)), scale_factor=2, mode="nearest")
    out = _lrelu(_inorm(_conv(out, p["norm_lrelu_upscale_conv_norm_lrelu_l3.3"])))
    if fusion == "late":
        out = _merge_low_high(_conv(x_low, p["conv3d_c1_low"]), out, beta)
    out = torch.cat([out, context_1], 1)
    ds3 = out = _lrelu(_inorm(_conv(out, p["conv_norm_lrelu_l4.0"])))
    return _conv(out, p["conv3d_l4"]) + _conv(ds3, p["ds3_1x1_conv3d"])


@pytest.mark.slow
@pytest.mark.parametrize("fusion", ["none", "early", "late"])
def test_outputs_equal_the_paper_codes_forward(fusion):
    net = build(fusion).double().eval()
    params = {
        n.removeprefix("backbone.").removesuffix(".weight"): t for n, t in net.state_dict().items()
    }
    if "low_stem" in params:
        params["conv3d_c1_low"] = params.pop("low_stem")
    x = torch.randn(2, 1, 40, 40, 16, dtype=torch.float64)
    with torch.no_grad():
        got = net(x)
        want = paper_forward(params, x, fusion)
    torch.testing.assert_close(got, want, atol=1e-10, rtol=1e-8)
    assert net.fused_at == {"none": None, "early": "stem", "late": "decoder"}[fusion]
