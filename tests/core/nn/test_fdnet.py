"""FrequencyDisentangledNet around every built-in backbone and fusion mode."""

from __future__ import annotations

import pytest
import torch

from fdseg_core import FrequencyDisentangledNet, band_split
from fdseg_core.plugins import list_backbones

BUILTINS = ["unet3d", "plainunet"]
SMALL = {"unet3d": {"base_filters": 4, "levels": 3}, "plainunet": {"base_filters": 4, "levels": 3}}


@pytest.mark.parametrize("fusion", ["none", "early", "late"])
@pytest.mark.parametrize("backbone", BUILTINS)
@pytest.mark.parametrize("shape", [(2, 1, 20, 21, 9), (1, 2, 16, 16, 8)], ids=["odd", "even"])
def test_forward_backward_any_size(backbone, fusion, shape):
    torch.manual_seed(0)
    net = FrequencyDisentangledNet(
        backbone, shape[1], 3, fusion=fusion, beta=0.2, **SMALL[backbone]
    )
    x = torch.randn(shape, requires_grad=True)
    out = net(x)
    assert out.shape == (shape[0], 3, *shape[2:])
    out.square().mean().backward()
    assert x.grad is not None and x.grad.abs().sum() > 0
    for name in ("high_stem", "low_stem"):
        stem = getattr(net, name, None)
        if stem is not None:
            assert stem.weight.grad.abs().sum() > 0, f"{name} got no gradient"


@pytest.mark.parametrize("fusion", ["none", "early", "late"])
def test_two_dimensional_inputs(fusion):
    net = FrequencyDisentangledNet(
        "unet3d", 1, 2, spatial_dims=2, fusion=fusion, beta=0.25, base_filters=4, levels=3
    )
    out = net(torch.randn(2, 1, 30, 22))
    assert out.shape == (2, 2, 30, 22)


def test_low_stem_sees_the_low_band_only():
    """Early fusion: the low stem's input is band_split's low output of the padded input."""
    net = FrequencyDisentangledNet(
        "unet3d", 1, 2, fusion="early", beta=0.25, base_filters=4, levels=2
    )
    seen = {}

    def hook(module, inputs, output):
        seen["low"] = inputs[0]

    net.low_stem.register_forward_hook(hook)
    x = torch.randn(1, 1, 16, 16, 6)
    net(x)
    low, _ = band_split(x, 0.25)
    torch.testing.assert_close(seen["low"], low)


def test_reference_layout_and_explicit_backend_run():
    net = FrequencyDisentangledNet(
        "unet3d",
        1,
        2,
        fusion="late",
        layout="reference",
        backend="torch",
        base_filters=4,
        levels=2,
        beta=0.25,
    )
    assert net(torch.randn(1, 1, 16, 16, 4)).shape == (1, 2, 16, 16, 4)


def test_input_too_small_for_the_band_names_size_and_beta():
    net = FrequencyDisentangledNet(
        "unet3d", 1, 2, fusion="early", beta=0.05, base_filters=4, levels=2
    )
    with pytest.raises(
        ValueError,
        match=r"input size 16 on dim 2 keeps no low-band sample at "
        r"beta=0.05; need a size >= 20",
    ):
        net(torch.randn(1, 1, 16, 16, 4))
    # the boundary itself: floor(20 * 0.05) = 1 low-band sample is enough
    assert 20 % net.size_divisor == 0  # no padding moves the size past the boundary
    assert net(torch.randn(1, 1, 20, 20, 4)).shape == (1, 2, 20, 20, 4)


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"fusion": "middle"}, "fusion must be one of"),
        ({"beta": 1.0}, "beta must lie in"),
        ({"spatial_dims": 4}, "spatial_dims must be 2 or 3"),
        ({"stem_channels": 0}, "stem_channels must be a positive integer"),
        ({"layout": "shifted"}, "layout must be"),
    ],
)
def test_bad_options_raise(kwargs, message):
    with pytest.raises(ValueError, match=message):
        FrequencyDisentangledNet("unet3d", 1, 2, **kwargs)


def test_wrong_input_rank_raises():
    net = FrequencyDisentangledNet("unet3d", 1, 2, fusion="none", base_filters=4, levels=2)
    with pytest.raises(ValueError, match=r"expected input \(N, C, X, Y, Z\)"):
        net(torch.randn(1, 16, 16, 4))


def test_backbone_options_reach_the_builder_and_divisor_follows_levels():
    net = FrequencyDisentangledNet("unet3d", 1, 2, fusion="none", levels=5, base_filters=2)
    assert net.size_divisor == 16
    assert net(torch.randn(1, 1, 17, 18, 19)).shape == (1, 2, 17, 18, 19)


def test_builtins_are_the_listed_ones():
    assert set(BUILTINS) <= {s.name for s in list_backbones()}


class _Float32Backbone(torch.nn.Module):
    """A backbone whose output leaves autocast in float32 (as a trilinear upsampling does
    under CUDA float16 AMP), while the low stem's convolution gives the autocast dtype."""

    def __init__(self, in_channels: int, out_channels: int) -> None:
        super().__init__()
        self.conv = torch.nn.Conv3d(in_channels, out_channels, 3, padding=1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.conv(x).float()


def test_late_fusion_under_autocast_fuses_branches_of_different_dtypes():
    from fdseg_core import BackboneSpec

    spec = BackboneSpec(
        name="float32-out",
        builder=lambda i, o, d, **_: _Float32Backbone(i, o),
        spatial_dims=(3,),
        size_divisor=1,
        description="test backbone",
    )
    torch.manual_seed(0)
    net = FrequencyDisentangledNet(spec, 1, 2, fusion="late", backend="torch")
    x = torch.randn(1, 1, 20, 20, 8)
    # without oneDNN, whose CPU bfloat16 conv3d is wrong on some inputs (docs/nnunet.md)
    with torch.backends.mkldnn.flags(enabled=False), torch.autocast("cpu", dtype=torch.bfloat16):
        low, _ = band_split(x, 0.1, backend="torch")
        assert net.low_stem(low).dtype == torch.bfloat16
        out = net(x)
    assert out.shape == (1, 2, 20, 20, 8)
    assert torch.isfinite(out.float()).all()
    out.float().sum().backward()
    assert net.low_stem.weight.grad is not None


@pytest.mark.slow
@pytest.mark.parametrize("fusion", ["none", "early", "late"])
def test_every_fusion_mode_fits_one_batch_of_two_cubes(fusion):
    """A model that cannot overfit one easy batch cannot train (the late head with an
    instance norm could not: its loss stayed near the start)."""
    from fdseg_core.train import DiceCELoss

    torch.manual_seed(0)
    y = torch.zeros(1, 32, 32, 16, dtype=torch.long)
    y[:, 4:12, 6:14, 4:10] = 1
    y[:, 18:26, 16:24, 6:12] = 2
    x = 0.3 * torch.randn(1, 1, 32, 32, 16) + y.unsqueeze(1).float()
    net = FrequencyDisentangledNet("unet3d", 1, 3, fusion=fusion, backend="matmul")
    opt = torch.optim.AdamW(net.parameters(), lr=3e-3)
    loss_fn = DiceCELoss()
    losses = []
    for _ in range(40):
        opt.zero_grad()
        loss = loss_fn(net(x), y)
        loss.backward()
        opt.step()
        losses.append(loss.item())
    # measured: none, early, late 0.00-0.02 of the first loss; late with a norm 0.61
    assert losses[-1] < 0.2 * losses[0]


def test_late_fusion_on_unet3d_fuses_decoder_features_then_runs_its_last_stage():
    """The fused tensor is unet3d's full-resolution decoder output (base_filters channels),
    and the module after the fusion is the backbone's own last localisation stage."""
    net = FrequencyDisentangledNet("unet3d", 1, 3, fusion="late", beta=0.25, base_filters=4)
    assert net.fused_at == "decoder" and not hasattr(net, "head")
    assert net.low_stem.out_channels == net.backbone.decoder_channels == 4
    seen = {}
    real_fuse = net._fuse

    def spy(low, high):
        seen["low"], seen["high"] = low.shape, high.shape
        seen["fused"] = real_fuse(low, high)
        return seen["fused"]

    net._fuse = spy
    net.backbone.final.register_forward_hook(lambda m, i, o: seen.update(final_in=i[0]))
    x = torch.randn(2, 1, 16, 16, 8)
    out = net(x)
    assert seen["high"] == (2, 4, 16, 16, 8)  # decoder features at full resolution
    assert seen["low"] == (2, 4, 4, 4, 8)  # low stem on the 4 x 4 low grid
    assert seen["fused"].shape == (2, 4, 16, 16, 8)
    # the last stage reads [fused, level-1 skip] and produces the logits
    torch.testing.assert_close(seen["final_in"][:, :4], seen["fused"])
    assert seen["final_in"].shape == (2, 8, 16, 16, 8) and out.shape == (2, 3, 16, 16, 8)


@pytest.mark.parametrize("backbone", ["unet3d", "paper_unet3d", "plainunet"])
def test_early_fusion_at_the_stem_replaces_the_backbones_first_convolution(backbone):
    small = SMALL.get(backbone, {})
    net = FrequencyDisentangledNet(backbone, 1, 2, fusion="early", beta=0.25, **small)
    generic = FrequencyDisentangledNet(
        backbone, 1, 2, fusion="early", beta=0.25, fusion_at="generic", **small
    )
    assert net.fused_at == "stem" and generic.fused_at == "input stems"
    assert not hasattr(net, "high_stem") and hasattr(generic, "high_stem")
    # the native early model has exactly one convolution more than the baseline
    base = FrequencyDisentangledNet(backbone, 1, 2, fusion="none", **small)
    count = sum(p.numel() for p in net.parameters()) - sum(p.numel() for p in base.parameters())
    assert count == net.low_stem.weight.numel()
    x = torch.randn(1, 1, 16, 16, 8)
    assert net(x).shape == generic(x).shape == (1, 2, 16, 16, 8)


def test_volume_bands_input_pools_the_low_band_onto_the_band_grid():
    net = FrequencyDisentangledNet(
        "unet3d", 1, 2, fusion="early", beta=0.25, input_bands="volume", base_filters=4
    )
    seen = {}
    net.low_stem.register_forward_hook(lambda m, i, o: seen.update(low=i[0]))
    low_full = torch.randn(1, 1, 16, 16, 8)
    high = torch.randn(1, 1, 16, 16, 8)
    assert net(torch.cat([low_full, high], 1)).shape == (1, 2, 16, 16, 8)
    expected = low_full.reshape(1, 1, 4, 4, 4, 4, 8).mean(dim=(3, 5))  # 4 x 4 cells
    torch.testing.assert_close(seen["low"], expected)
    with pytest.raises(ValueError, match="expects 2 channels"):
        net(high)
    with pytest.raises(ValueError, match="needs a fusion"):
        FrequencyDisentangledNet("unet3d", 1, 2, fusion="none", input_bands="volume")
