"""MONAI networks as fdseg backbones (needs the ``monai`` extra).

Proof that a library nobody here wrote plugs in through the same contract. The
specs are offered only when ``import monai`` works; MONAI is imported when a
network is built, not when the plugin registers.
"""

from __future__ import annotations

import functools
import importlib.util

from fdseg_core.choices import FUSION_POINTS
from fdseg_core.plugins.spec import BackboneSpec

__all__ = ["monai_specs"]


def _unet(cin, cout, dims, *, channels=(16, 32, 64, 128), strides=(2, 2, 2), num_res_units=2):
    from monai.networks.nets import UNet  # the monai extra: imported when built

    return UNet(
        spatial_dims=dims,
        in_channels=cin,
        out_channels=cout,
        channels=channels,
        strides=strides,
        num_res_units=num_res_units,
    )


@functools.cache
def _segresnet_class():
    """MONAI's SegResNet with the "stem" and "decoder" fusion points (same parameters and
    state-dict keys as SegResNet; built on first use so that MONAI is imported late)."""
    from monai.networks.nets import SegResNet  # the monai extra: imported when built

    class SegResNetFusionPoints(SegResNet):
        """SegResNet split at its first convolution (``convInit``) and before its last
        decoder stage: ``forward_features`` returns the last upsampling's output at full
        resolution (``init_filters`` channels) and the level-1 skip;
        ``forward_head`` adds the skip and runs the last up layer and ``conv_final``."""

        @property
        def stem_channels(self) -> int:
            return self.init_filters

        @property
        def decoder_channels(self) -> int:
            return self.init_filters

        def forward_stem(self, x):
            return self.convInit(x)

        def forward_body(self, features):
            return self.forward_head(*self._decode_to_last(features))

        def forward_features(self, x):
            return self._decode_to_last(self.convInit(x))

        def forward_head(self, features, skip):
            x = self.up_layers[-1](features + skip)
            return self.conv_final(x) if self.use_conv_final else x

        def _decode_to_last(self, x):
            if self.dropout_prob is not None:
                x = self.dropout(x)
            down_x = []
            for down in self.down_layers:
                x = down(x)
                down_x.append(x)
            down_x.reverse()
            stages = list(zip(self.up_samples, self.up_layers, strict=True))
            for i, (up, upl) in enumerate(stages[:-1]):
                x = upl(up(x) + down_x[i + 1])
            return self.up_samples[-1](x), down_x[-1]

    return SegResNetFusionPoints


def _segresnet(cin, cout, dims, *, init_filters=8):
    return _segresnet_class()(
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
    from monai.networks.nets import UNETR  # the monai extra: imported when built

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
    from monai.networks.nets import SwinUNETR  # the monai extra: imported when built

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
            fusion_points=FUSION_POINTS,
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
