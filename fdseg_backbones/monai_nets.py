"""MONAI networks as fdseg backbones (needs the ``monai`` extra).

Proof that a library nobody here wrote plugs in through the same contract. The
specs are offered only when ``import monai`` works; MONAI is imported when a
network is built, not when the plugin registers.
"""

from __future__ import annotations

import importlib.util

from fdseg_core.plugins.spec import BackboneSpec

__all__ = ["monai_specs"]


def _unet(cin, cout, dims, *, channels=(16, 32, 64, 128), strides=(2, 2, 2), num_res_units=2):
    from monai.networks.nets import UNet

    return UNet(
        spatial_dims=dims,
        in_channels=cin,
        out_channels=cout,
        channels=channels,
        strides=strides,
        num_res_units=num_res_units,
    )


def _segresnet(cin, cout, dims, *, init_filters=8):
    from monai.networks.nets import SegResNet

    return SegResNet(
        spatial_dims=dims, in_channels=cin, out_channels=cout, init_filters=init_filters
    )


def _unetr(
    cin,
    cout,
    dims,
    *,
    img_size=(64, 64, 64),
    feature_size=16,
    hidden_size=384,
    mlp_dim=768,
    num_heads=6,
):
    from monai.networks.nets import UNETR

    return UNETR(
        in_channels=cin,
        out_channels=cout,
        img_size=tuple(img_size)[:dims],
        feature_size=feature_size,
        hidden_size=hidden_size,
        mlp_dim=mlp_dim,
        num_heads=num_heads,
        spatial_dims=dims,
    )


def _swinunetr(cin, cout, dims, *, feature_size=12, depths=(2, 2, 2, 2)):
    from monai.networks.nets import SwinUNETR

    return SwinUNETR(
        in_channels=cin,
        out_channels=cout,
        feature_size=feature_size,
        depths=depths,
        spatial_dims=dims,
    )


def monai_specs() -> list[BackboneSpec]:
    """The MONAI backbones, or ``[]`` when MONAI is not installed."""
    if importlib.util.find_spec("monai") is None:
        return []
    return [
        BackboneSpec("monai_unet", _unet, (2, 3), 8, "MONAI UNet (residual units, Kerfoot 2018)"),
        BackboneSpec(
            "monai_segresnet",
            _segresnet,
            (2, 3),
            8,
            "MONAI SegResNet (Myronenko 2018, no VAE branch)",
        ),
        BackboneSpec(
            "monai_unetr",
            _unetr,
            (3,),
            16,
            "MONAI UNETR (Hatamizadeh 2022); fixed input size img_size",
            fixed_size=True,
        ),
        BackboneSpec(
            "monai_swinunetr", _swinunetr, (2, 3), 32, "MONAI SwinUNETR (Hatamizadeh 2022)"
        ),
    ]
