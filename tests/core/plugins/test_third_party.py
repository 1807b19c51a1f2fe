"""The example third-party package trains under every fusion mode."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from fdseg_core import FrequencyDisentangledNet, get_backbone

EXAMPLE = Path(__file__).resolve().parents[3] / "examples" / "fdseg-backbone-example"


@pytest.mark.parametrize(
    ("fusion", "fusion_at"),
    [("none", "auto"), ("early", "auto"), ("late", "auto"), ("late", "generic")],
)
def test_example_plugin_trains_one_step(install_fake_dist, fusion, fusion_at):
    install_fake_dist(
        "fdseg-backbone-example",
        "0.1.0",
        {"example": "fdseg_backbone_example"},
        extra_path=EXAMPLE / "src",
    )
    spec = get_backbone("tinynet")
    assert spec.package == "fdseg-backbone-example"
    torch.manual_seed(0)
    net = FrequencyDisentangledNet("tinynet", 1, 2, fusion=fusion, beta=0.25, fusion_at=fusion_at)
    expected = {"none": None, "early": "input stems"}.get(fusion)
    if fusion == "late":
        expected = "decoder" if fusion_at == "auto" else "output head"
    assert net.fused_at == expected
    opt = torch.optim.SGD(net.parameters(), lr=0.1)
    x = torch.randn(2, 1, 12, 13, 7)
    y = (x > 0).long()[:, 0]
    before = [p.detach().clone() for p in net.parameters()]
    loss = torch.nn.functional.cross_entropy(net(x), y)
    loss.backward()
    opt.step()
    assert net(x).shape == (2, 2, 12, 13, 7)
    for (name, p), old in zip(net.named_parameters(), before, strict=True):
        if net.fused_at == "output head" and name == "backbone.head.bias":
            # generic late fusion: a per-channel constant lives in the low band, which
            # band_fuse replaces with the low stem's, so the output bias gets no gradient
            assert torch.equal(p, old), name
        else:
            assert not torch.equal(p, old), f"{name} got no gradient step"


def test_example_pyproject_declares_the_entry_point():
    text = (EXAMPLE / "pyproject.toml").read_text()
    assert "[project.entry-points.fdseg]" in text
    assert 'example = "fdseg_backbone_example"' in text
