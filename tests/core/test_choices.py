"""The names of fdseg_core.choices (defined once) are the ones the network builds and the
CLI accepts."""

from __future__ import annotations

import re

import pytest
import torch

from fdseg_core import choices


@pytest.mark.parametrize("fusion", choices.FUSIONS)
@pytest.mark.parametrize("fusion_at", choices.FUSION_AT)
def test_every_fusion_name_of_the_choices_builds_a_network_that_runs(fusion, fusion_at):
    from fdseg_core import FrequencyDisentangledNet

    net = FrequencyDisentangledNet(
        "unet3d", 1, 3, fusion=fusion, fusion_at=fusion_at, base_filters=4, levels=2
    )
    assert net(torch.randn(1, 1, 20, 20, 8)).shape == (1, 3, 20, 20, 8)


def test_the_network_and_the_cli_refuse_names_outside_the_choices_and_list_them():
    from click.testing import CliRunner

    from fdseg_cli.main import cli
    from fdseg_core import FrequencyDisentangledNet

    with pytest.raises(
        ValueError, match=re.escape(f"fusion must be one of {list(choices.FUSIONS)}")
    ):
        FrequencyDisentangledNet("unet3d", 1, 2, fusion="middle")
    with pytest.raises(
        ValueError, match=re.escape(f"input_bands must be one of {list(choices.BANDS)}")
    ):
        FrequencyDisentangledNet("unet3d", 1, 2, fusion="late", input_bands="disk")
    result = CliRunner().invoke(cli, ["train", ".", "--fusion", "middle"])
    assert result.exit_code == 2
    for name in choices.FUSIONS:
        assert f"'{name}'" in result.output


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
