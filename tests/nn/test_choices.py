"""The network reads its choices from fdseg_core.choices (defined once), re-exported."""

from __future__ import annotations

import pytest
import torch

from fdseg_core import choices


def test_fusion_names_are_the_choices():
    from fdseg_core.nn import FUSIONS as nn_fusions
    from fdseg_core.nn.fdnet import FUSION_AT, FUSIONS, INPUT_BANDS

    assert FUSIONS is choices.FUSIONS is nn_fusions
    assert FUSION_AT is choices.FUSION_AT
    assert INPUT_BANDS is choices.BANDS


@pytest.mark.parametrize("dims", [(2, 3), (3, 4), (2, 4)])
def test_volume_bands_pool_onto_the_split_grid(dims):
    from fdseg_core import FrequencyDisentangledNet
    from fdseg_core.bands import band_split

    net = FrequencyDisentangledNet(
        "unet3d",
        1,
        2,
        fusion="early",
        beta=0.25,
        dims=dims,
        input_bands="volume",
        base_filters=4,
        levels=2,
    )
    x = torch.randn(1, 2, 16, 16, 16)
    low, high = net._bands(x)
    ref_low, _ = band_split(x[:, 1:], 0.25, dims=dims)
    assert low.shape == ref_low.shape
    assert high.shape == (1, 1, 16, 16, 16)
