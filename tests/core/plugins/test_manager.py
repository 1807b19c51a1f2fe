"""The plugin manager: discovery through entry points, provenance, failure isolation."""

from __future__ import annotations

import json
import warnings

import pytest
import torch
from click.testing import CliRunner

from fdseg_cli.main import cli
from fdseg_core.plugins import (
    BackboneSpec,
    FdsegPluginWarning,
    build_backbone,
    get_backbone,
    get_plugin_manager,
    list_backbones,
)

GOOD = """
from torch import nn
from fdseg_core import BackboneSpec, hookimpl

def build(cin, cout, dims, **options):
    conv = nn.Conv3d if dims == 3 else nn.Conv2d
    return conv(cin, cout, 1)

@hookimpl
def fdseg_register_backbones():
    return [BackboneSpec(name="{name}", builder=build, spatial_dims=(2, 3), size_divisor=1,
                         description="a 1x1 conv")]
"""


def _names() -> set[str]:
    return {s.name for s in list_backbones()}


def test_builtins_are_registered_with_provenance(fresh_manager):
    specs = {s.name: s for s in list_backbones()}
    assert {"unet3d", "plainunet"} <= set(specs)
    assert specs["unet3d"].package == "fdseg"
    assert specs["unet3d"].version


def test_entry_point_plugin_appears_with_its_distribution(install_fake_dist):
    install_fake_dist(
        "acme-nets",
        "2.3.4",
        {"acme": "acme_plugin_ok"},
        {"acme_plugin_ok": GOOD.format(name="acmenet")},
    )
    spec = get_backbone("acmenet")
    assert (spec.package, spec.version) == ("acme-nets", "2.3.4")
    net = build_backbone("acmenet", 2, 3, 3)
    assert net(torch.zeros(1, 2, 4, 4, 4)).shape == (1, 3, 4, 4, 4)


def test_autoload_can_be_disabled(install_fake_dist, monkeypatch):
    install_fake_dist(
        "acme-nets",
        "1.0",
        {"acme": "acme_plugin_off"},
        {"acme_plugin_off": GOOD.format(name="offnet")},
    )
    monkeypatch.setenv("FDSEG_DISABLE_PLUGIN_AUTOLOAD", "1")
    assert "offnet" not in _names()
    assert "unet3d" in _names()


def _problem(install_fake_dist, module_source: str, dist: str = "broken-dist") -> list[str]:
    install_fake_dist(
        dist,
        "0.9",
        {"broken": "broken_mod_" + dist.replace("-", "_")},
        {"broken_mod_" + dist.replace("-", "_"): module_source},
    )
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        names = _names()
        _names()  # a second listing must not warn again
    assert {"unet3d", "plainunet"} <= names  # everything else keeps working
    messages = [str(w.message) for w in caught if issubclass(w.category, FdsegPluginWarning)]
    assert len(messages) == 1, messages
    assert dist in messages[0]
    return messages


def test_plugin_that_fails_to_import_only_warns(install_fake_dist):
    (msg,) = _problem(install_fake_dist, "import does_not_exist_anywhere\n", "import-fail")
    assert "failed to import" in msg and "does_not_exist_anywhere" in msg


def test_plugin_whose_hook_raises_only_warns(install_fake_dist):
    source = """
from fdseg_core import hookimpl

@hookimpl
def fdseg_register_backbones():
    raise RuntimeError("boom")
"""
    (msg,) = _problem(install_fake_dist, source, "hook-raises")
    assert "raised RuntimeError: boom" in msg


@pytest.mark.parametrize(
    ("body", "expected"),
    [
        ("return 42", "must return a list of BackboneSpec, got int"),
        ("return ['unet']", "expected a BackboneSpec, got str"),
        ("return [BackboneSpec(name='Bad Name', builder=len)]", "must match"),
        ("return [BackboneSpec(name='ok2', builder=len, size_divisor=0)]", "size_divisor"),
        ("return [BackboneSpec(name='ok3', builder=len, spatial_dims=(4,))]", "spatial_dims"),
        ("return [BackboneSpec(name='ok4', builder=3)]", "builder must be callable"),
        (
            "return [BackboneSpec(name='ok5', builder=len, fusion_points=('middle',))]",
            "unknown fusion_points ['middle']",
        ),
        (
            "return [BackboneSpec(name='ok6', builder=len, fusion_points='stem')]",
            "fusion_points must be a tuple",
        ),
    ],
    ids=[
        "not-a-list",
        "not-a-spec",
        "bad-name",
        "bad-divisor",
        "bad-dims",
        "bad-builder",
        "bad-fusion-point",
        "fusion-points-str",
    ],
)
def test_plugin_returning_invalid_specs_only_warns(install_fake_dist, body, expected):
    source = f"""
from fdseg_core import BackboneSpec, hookimpl

@hookimpl
def fdseg_register_backbones():
    {body}
"""
    dist = "invalid-" + str(abs(hash(body)) % 10**6)
    (msg,) = _problem(install_fake_dist, source, dist)
    assert expected in msg


def test_duplicate_backbone_name_keeps_the_first_and_warns(install_fake_dist):
    (msg,) = _problem(install_fake_dist, GOOD.format(name="unet3d"), "dup-dist")
    assert "'unet3d' is already provided by fdseg" in msg
    assert get_backbone("unet3d").package == "fdseg"


def test_unknown_hook_implementation_only_warns(install_fake_dist):
    source = """
from fdseg_core import hookimpl

@hookimpl
def fdseg_no_such_hook():
    return 1
"""
    (msg,) = _problem(install_fake_dist, source, "unknown-hook")
    assert "unknown hook" in msg


def test_unknown_backbone_lists_available_ones(fresh_manager):
    with pytest.raises(ValueError, match=r"unknown backbone 'nonet'; available: .*unet3d"):
        get_backbone("nonet")


def test_manager_is_built_lazily_and_once(fresh_manager):
    from fdseg_core.plugins import manager

    assert manager._STATE.pm is None
    pm = get_plugin_manager()
    assert get_plugin_manager() is pm
    assert pm.project_name == "fdseg"


def test_spec_build_validates_dims_and_channels():
    spec = BackboneSpec(
        name="x3d", builder=lambda i, o, d: torch.nn.Identity(), spatial_dims=(3,)
    ).validate()
    with pytest.raises(ValueError, match=r"supports spatial_dims \[3\], got 2"):
        spec.build(1, 2, 2)
    with pytest.raises(ValueError, match="in_channels must be a positive integer"):
        spec.build(0, 2, 3)
    bad = BackboneSpec(name="notmodule", builder=lambda i, o, d: 3).validate()
    with pytest.raises(ValueError, match="returned int, not an nn.Module"):
        bad.build(1, 1, 3)


def test_a_declared_fusion_point_the_module_lacks_is_an_error_naming_what_is_missing():
    from fdseg_core import FrequencyDisentangledNet

    class HalfDone(torch.nn.Module):
        decoder_channels = 4

        def forward_features(self, x):
            return x, None

        def forward(self, x):
            return x

    spec = BackboneSpec(
        name="halfdone", builder=lambda i, o, d: HalfDone(), fusion_points=("decoder",)
    ).validate()
    with pytest.raises(ValueError, match=r"'halfdone' declares fusion point 'decoder' .* "):
        FrequencyDisentangledNet(spec, 1, 2, fusion="late")
    with pytest.raises(ValueError, match=r"lacks \['forward_head'\]"):
        FrequencyDisentangledNet(spec, 1, 2, fusion="late")
    # early fusion does not use the decoder point: the generic stems serve
    assert FrequencyDisentangledNet(spec, 1, 2, fusion="early").fused_at == "input stems"


def test_cli_lists_plugins_and_reports_broken_ones_on_stderr(install_fake_dist):
    install_fake_dist(
        "acme-nets", "2.0", {"acme": "acme_cli_ok"}, {"acme_cli_ok": GOOD.format(name="clinet")}
    )
    install_fake_dist(
        "broken-cli",
        "0.1",
        {"broken": "broken_cli_mod"},
        {"broken_cli_mod": "raise ImportError('nope')\n"},
    )
    result = CliRunner().invoke(cli, ["backbones", "--json"])
    assert result.exit_code == 0, result.output
    rows = json.loads(result.stdout)
    by_name = {r["name"]: r for r in rows}
    assert set(rows[0]) == {
        "name",
        "package",
        "version",
        "description",
        "spatial_dims",
        "size_divisor",
        "fusion_points",
        "early_fusion_at",
        "late_fusion_at",
    }
    assert by_name["clinet"]["package"] == "acme-nets" and by_name["clinet"]["version"] == "2.0"
    assert by_name["unet3d"]["spatial_dims"] == [2, 3]
    # where fusion happens: at the backbone's fusion points, or generic stems and heads
    assert by_name["unet3d"]["late_fusion_at"] == "decoder"
    assert by_name["paper_unet3d"]["fusion_points"] == ["stem", "decoder"]
    assert by_name["clinet"]["fusion_points"] == []
    assert by_name["clinet"]["late_fusion_at"] == "output head"
    assert by_name["clinet"]["early_fusion_at"] == "input stems"
    assert "broken-cli" in result.stderr and "broken-cli" not in result.stdout
    table = CliRunner().invoke(cli, ["backbones"])
    assert "clinet" in table.stdout and "acme-nets 2.0" in table.stdout


def test_every_hookspec_is_documented_and_tested():
    """datasette's rule: each hook has a docstring and is exercised in this file."""
    from pathlib import Path

    from fdseg_core.plugins import hookspecs

    this = Path(__file__).read_text()
    specs = [n for n in dir(hookspecs) if n.startswith("fdseg_")]
    assert specs == ["fdseg_register_backbones", "fdseg_register_trainers"]
    for name in specs:
        assert getattr(hookspecs, name).__doc__.strip()
        assert name in this


BROKEN = """
import torch
from torch import nn
from fdseg_core import BackboneSpec, hookimpl

class Broken(nn.Module):
    def __init__(self, cin, cout):
        super().__init__()
        self.conv = nn.Conv3d(cin, cout, 1)

    def forward(self, x):
        # torch raises ValueError: size and scale_factor both given
        return nn.functional.interpolate(self.conv(x), size=x.shape[2:], scale_factor=1.0)

@hookimpl
def fdseg_register_backbones():
    return [BackboneSpec(name="brokennet", builder=lambda cin, cout, dims, **o: Broken(cin, cout),
                         spatial_dims=(3,), size_divisor=1, description="raises in forward")]
"""


def test_a_value_error_raised_inside_torch_is_an_internal_error_not_the_users(
    install_fake_dist, tmp_path
):
    from builders import make_toy_dataset

    install_fake_dist("broken-nets", "0.1", {"broken": "broken_plugin"}, {"broken_plugin": BROKEN})
    ds = make_toy_dataset(tmp_path / "ds", n_cases=4, n_test=0)
    args = ["train", str(ds), "--out", str(tmp_path / "run"), "--backbone", "brokennet"]
    args += ["--epochs", "1", "--iters-per-epoch", "1", "--patch-size", "8", "8", "8"]
    args += ["--folds", "2", "--no-progress"]
    r = CliRunner().invoke(cli, args)
    assert r.exit_code == 1, r.output
    line = r.output.strip().splitlines()[-1]
    assert line.startswith("Error: internal error (ValueError: ")
    assert "fdseg --debug" in line


TRAINERS = """
import torch
from fdseg_core import hookimpl
from fdseg_core.train.trainer import Trainer

class TrainerSGDPlain(Trainer):
    def build_optimizer(self, params):
        return torch.optim.SGD(params, lr=self.config.lr)

@hookimpl
def fdseg_register_trainers():
    return [TrainerSGDPlain, "not a trainer"]
"""

RAISING_TRAINERS = """
from fdseg_core import hookimpl

@hookimpl
def fdseg_register_trainers():
    raise RuntimeError("trainers went missing")
"""


def test_an_entry_point_plugin_registers_trainers_and_bad_ones_only_warn(install_fake_dist, caplog):
    """fdseg_register_trainers through a distribution's entry point: its trainer is
    listed by name and selected, what is not a Trainer subclass is skipped with a
    warning, and a hook that raises warns and leaves the others working."""
    from fdseg_core.train.trainer import get_trainer, list_trainers

    install_fake_dist("acme-train", "1.0", {"acme_t": "acme_trainers"}, {"acme_trainers": TRAINERS})
    install_fake_dist(
        "bad-train", "0.1", {"bad_t": "bad_trainers"}, {"bad_trainers": RAISING_TRAINERS}
    )
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        found = list_trainers()
    assert found["TrainerSGDPlain"].__module__ == "acme_trainers"
    assert get_trainer("TrainerSGDPlain") is found["TrainerSGDPlain"]
    assert {"Trainer", "TrainerRAdam", "TrainerDiceFocal"} <= set(found)
    assert "is not a Trainer subclass" in caplog.text
    assert any("trainers went missing" in str(w.message) for w in caught)
