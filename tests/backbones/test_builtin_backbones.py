"""The built-in backbones on their own: shapes, logits, deep supervision, 2D/3D."""

from __future__ import annotations

import pytest
import torch

from fdseg_backbones.plainunet import PlainUNet
from fdseg_backbones.unet3d import ResidualUNet
from fdseg_core.plugins import build_backbone


@pytest.mark.parametrize("name", ["unet3d", "plainunet"])
@pytest.mark.parametrize("dims", [2, 3])
def test_output_has_input_size_for_multiples_of_the_divisor(name, dims):
    net = build_backbone(name, 2, 4, dims, base_filters=4, levels=3)
    size = (8, 24, 16)[:dims] if dims == 3 else (24, 16)
    out = net(torch.randn(2, 2, *size))
    assert out.shape == (2, 4, *size)


def test_unet3d_deep_supervision_changes_the_output():
    torch.manual_seed(0)
    a = ResidualUNet(1, 2, base_filters=4, levels=3, deep_supervision=True, dropout=0.0).eval()
    torch.manual_seed(0)
    b = ResidualUNet(1, 2, base_filters=4, levels=3, deep_supervision=False, dropout=0.0).eval()
    x = torch.randn(1, 1, 8, 8, 8)
    assert len(a.ds_heads) == 1 and len(b.ds_heads) == 0
    assert not torch.allclose(a(x), b(x))


def test_unet3d_is_deterministic_in_eval_mode_and_stochastic_in_training():
    net = ResidualUNet(1, 2, base_filters=4, levels=2, dropout=0.5)
    x = torch.randn(1, 1, 8, 8, 8)
    net.eval()
    torch.testing.assert_close(net(x), net(x))
    net.train()
    torch.manual_seed(1)
    y1 = net(x)
    torch.manual_seed(2)
    assert not torch.allclose(y1, net(x))


@pytest.mark.parametrize("cls", [ResidualUNet, PlainUNet])
def test_bad_levels_raise(cls):
    with pytest.raises(ValueError, match="levels must be >= 2, got 1"):
        cls(1, 2, levels=1)


@pytest.mark.slow
def test_monai_backbones_build_and_run():
    pytest.importorskip("monai", reason="MONAI is an optional extra (pip install 'fdseg[monai]')")
    for name, size in [("monai_unet", 16), ("monai_segresnet", 16), ("monai_swinunetr", 64)]:
        net = build_backbone(name, 1, 2, 3)
        assert net(torch.randn(1, 1, size, size, size)).shape == (1, 2, size, size, size)
    net = build_backbone("monai_unetr", 1, 2, 3, img_size=(32, 32, 32))
    assert net(torch.randn(1, 1, 32, 32, 32)).shape == (1, 2, 32, 32, 32)
