"""nnU-Net's planned networks wrapped in fdseg's band split and fusion: fusion none is
nnU-Net, the fusion points split the network without changing it, deep supervision
keeps nnU-Net's shapes, and unsupported architectures are named."""

from __future__ import annotations

import pytest
import torch
from torch import nn

unet = pytest.importorskip(
    "dynamic_network_architectures.architectures.unet",
    reason="nnU-Net's networks are the nnunet extra (pip install 'fdseg[nnunet]')",
)

from fdseg_core.integrations.nnunet import band_dims_for, wrap_planned_network  # noqa: E402
from fdseg_core.nn import PlannedUNet  # noqa: E402

NORM = {"eps": 1e-5, "affine": True}


def plain(deep_supervision: bool = True, strides=((1, 1, 1), (2, 2, 2), (2, 2, 1))):
    torch.manual_seed(0)
    return unet.PlainConvUNet(
        1, 3, [4, 8, 16], nn.Conv3d, 3, [list(s) for s in strides], 2, 3, 2, True,
        nn.InstanceNorm3d, NORM, None, None, nn.LeakyReLU, {"inplace": True},
        deep_supervision=deep_supervision,
    )  # fmt: skip


def resenc(deep_supervision: bool = True):
    torch.manual_seed(0)
    return unet.ResidualEncoderUNet(
        1, 3, [4, 8, 16], nn.Conv3d, 3, [1, 2, 2], [1, 2, 2], 3, [1, 1], True,
        nn.InstanceNorm3d, NORM, None, None, nn.LeakyReLU, {"inplace": True},
        deep_supervision=deep_supervision,
    )  # fmt: skip


ARCHS = {"plain": plain, "resenc": resenc}


def _outputs(out):
    return list(out) if isinstance(out, list | tuple) else [out]


@pytest.mark.parametrize("arch", list(ARCHS))
@pytest.mark.parametrize("deep_supervision", [True, False], ids=["ds", "no-ds"])
def test_fusion_none_is_nnunets_network(arch, deep_supervision):
    net = ARCHS[arch](deep_supervision).eval()
    wrapped = wrap_planned_network(net, fusion="none").eval()
    ours = [p for _, p in sorted(wrapped.named_parameters())]
    theirs = [p for _, p in sorted(net.named_parameters())]
    assert sum(p.numel() for p in ours) == sum(p.numel() for p in theirs)
    assert [n.removeprefix("backbone.net.") for n, _ in sorted(wrapped.named_parameters())] == [
        n for n, _ in sorted(net.named_parameters())
    ]
    x = torch.randn(2, 1, 16, 16, 8)
    with torch.no_grad():
        for a, b in zip(_outputs(net(x)), _outputs(wrapped(x)), strict=True):
            assert torch.equal(a, b)


@pytest.mark.parametrize("arch", list(ARCHS))
def test_the_fusion_points_split_the_network_without_changing_it(arch):
    net = ARCHS[arch](True).eval()
    adapted = PlannedUNet(net)
    x = torch.randn(1, 1, 16, 16, 8)
    with torch.no_grad():
        want = net(x)
        via_stem = adapted.forward_body(adapted.forward_stem(x))
        via_decoder = adapted.forward_head(*adapted.forward_features(x))
    for got in (via_stem, via_decoder):
        for a, b in zip(want, got, strict=True):
            torch.testing.assert_close(a, b, rtol=0, atol=0)
    assert adapted.stem_channels == 4 and adapted.decoder_channels == 4


@pytest.mark.parametrize("arch", list(ARCHS))
@pytest.mark.parametrize("fusion", ["early", "late"])
def test_deep_supervision_shapes_match_nnunets(arch, fusion):
    net = ARCHS[arch](True)
    wrapped = wrap_planned_network(net, fusion=fusion)
    x = torch.randn(2, 1, 16, 16, 8, requires_grad=True)
    want = [o.shape for o in net(x)]
    got = wrapped(x)
    assert isinstance(got, list) and [o.shape for o in got] == want
    sum(o.float().mean() for o in got).backward()  # the low stem learns
    assert wrapped.low_stem.weight.grad is not None and wrapped.low_stem.weight.grad.abs().sum() > 0
    wrapped.decoder.deep_supervision = False  # what nnU-Net's trainer does for inference
    single = wrapped(x)
    assert isinstance(single, torch.Tensor) and single.shape == want[0]
    assert wrapped.fused_at == {"early": "stem", "late": "decoder"}[fusion]


def test_anisotropic_strides_give_a_per_axis_divisor_and_no_padding():
    net = plain(False, strides=((1, 1, 1), (2, 2, 1), (2, 2, 1)))
    adapted = PlannedUNet(net)
    assert adapted.size_divisor == (4, 4, 1)
    wrapped = wrap_planned_network(net, fusion="early")
    x = torch.randn(1, 1, 20, 12, 5)  # fine for the network: no padding needed
    assert wrapped(x).shape == (1, 3, 20, 12, 5)


def test_an_architecture_without_fusion_points_is_named():
    class Other(nn.Module):
        def __init__(self):
            super().__init__()
            self.conv = nn.Conv3d(1, 3, 3, padding=1)

    with pytest.raises(ValueError, match="architecture Other has no fusion points: fdseg knows"):
        wrap_planned_network(Other(), fusion="early")
    first_strided = plain(False, strides=((2, 2, 2), (2, 2, 2), (2, 2, 2)))
    with pytest.raises(ValueError, match="downsamples in its first stage"):
        wrap_planned_network(first_strided, fusion="early")


@pytest.mark.parametrize(
    ("spacing", "dims"),
    [
        ((3.4, 3.4, 3.4), (2, 3)),  # isotropic: fdseg's default, the first two axes
        ((5.0, 0.8, 0.8), (3, 4)),  # nnU-Net moves the thick axis first: in-plane last
        ((0.7, 0.7, 2.0), (2, 3)),
        ((1.0, 1.0), (2, 3)),  # 2D
    ],
)
def test_band_dims_are_the_in_plane_axes(spacing, dims):
    assert band_dims_for(spacing) == dims


def test_nnunet_plainconv_is_an_fdseg_backbone():
    from fdseg_core import FrequencyDisentangledNet, get_backbone

    spec = get_backbone("nnunet_plainconv")
    assert spec.fusion_points == ("stem", "decoder") and spec.size_divisor == 16
    for fusion in ("none", "early", "late"):
        net = FrequencyDisentangledNet("nnunet_plainconv", 1, 3, fusion=fusion, n_stages=3)
        assert net(torch.randn(1, 1, 16, 16, 8)).shape == (1, 3, 16, 16, 8)


@pytest.mark.parametrize("fusion", ["early", "late"])
def test_the_wrapped_network_compiles_and_runs_under_autocast(fusion):
    """nnU-Net compiles its network on CUDA and trains it under autocast: the wrapped
    network traces as one graph (the band operators are custom ops) and gives the eager
    outputs; under bfloat16 autocast it gives the float32 outputs to bfloat16's precision.

    The bfloat16 pass runs without oneDNN: on CPUs with AMX or AVX512-BF16, oneDNN's
    bfloat16 conv3d returns wrong values, at times NaN, for a one-channel input one voxel
    deep along its first axis, which is what the low stem sees here (16 voxels keep k = 1
    at beta 0.1); PyTorch's own kernel is right (docs/nnunet.md, "Mixed precision").
    """
    net = plain(True).eval()
    wrapped = wrap_planned_network(net, fusion=fusion).eval()
    x = torch.randn(1, 1, 16, 16, 8)
    compiled = torch.compile(wrapped, backend="aot_eager", fullgraph=True)
    with torch.no_grad():
        eager = wrapped(x)
        for a, b in zip(eager, compiled(x), strict=True):
            torch.testing.assert_close(a, b, rtol=1e-5, atol=1e-5)
        with torch.backends.mkldnn.flags(enabled=False):
            with torch.autocast("cpu", dtype=torch.bfloat16):
                out = wrapped(x)
    assert [o.shape for o in out] == [o.shape for o in net(x)]
    for low_precision, full in zip(out, eager, strict=True):
        assert low_precision.dtype == torch.bfloat16
        # bfloat16 keeps 8 significant bits; through this network the largest error over
        # 200 seeds was 3% of the output's range
        error = (low_precision.float() - full).abs().max() / full.abs().max()
        assert error < 0.1


def test_fdseg_train_trains_nnunet_plainconv(tmp_path):
    from builders import make_toy_dataset
    from click.testing import CliRunner

    from fdseg_cli.main import cli

    ds = make_toy_dataset(tmp_path / "ds", n_cases=2, n_test=0, shape=(32, 32, 16))
    run = tmp_path / "run"
    r = CliRunner().invoke(
        cli,
        ["train", str(ds), "--out", str(run), "--backbone", "nnunet_plainconv"]
        + ["--epochs", "1", "--iters-per-epoch", "1", "--patch-size", "32", "32", "16"]
        + ["--no-progress"],
    )
    assert r.exit_code == 0, r.output
    assert (run / "best.pt").is_file()


def test_a_plans_file_whose_architecture_has_no_fusion_points_is_named(tmp_path, monkeypatch):
    pytest.importorskip("nnunetv2", reason="the trainers need nnunetv2 (the nnunet extra)")
    from types import SimpleNamespace

    from fdseg_core.integrations.nnunet.trainer import nnUNetTrainerFDEarly

    (tmp_path / "other_arch.py").write_text(
        "from torch import nn\n\n"
        "class NoFusionPoints(nn.Module):\n"
        "    def __init__(self, input_channels, num_classes, deep_supervision=False):\n"
        "        super().__init__()\n"
        "        self.conv = nn.Conv3d(input_channels, num_classes, 1)\n"
    )
    monkeypatch.syspath_prepend(str(tmp_path))
    planned = SimpleNamespace(
        network_arch_class_name="other_arch.NoFusionPoints",
        network_arch_init_kwargs={},
        network_arch_init_kwargs_req_import=[],
        spacing=[1.0, 1.0, 1.0],
    )
    with pytest.raises(ValueError) as err:
        nnUNetTrainerFDEarly.build_network_architecture(None, planned, 1, 3, True)
    assert str(err.value) == (
        "the architecture NoFusionPoints has no fusion points: fdseg knows PlainConvUNet, "
        "ResidualEncoderUNet (an encoder with stages and skips, a UNetDecoder)"
    )
