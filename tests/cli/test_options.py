"""The command line builds its training options from TrainConfig: no default, choice or
range is written twice; errors naming an option name its flag."""

from __future__ import annotations

import sys

import click
import pytest
from builders import plugin_trainers
from click.testing import CliRunner

from fdseg_cli.main import cli
from fdseg_cli.options import TRAINING_FIELDS, config_option, flag_of
from fdseg_cli.train import train as train_command
from fdseg_core.errors import OptionError
from fdseg_core.jobs.default import PHANTOM_TRAINING
from fdseg_core.train.config import option_spec


def _params(command: click.Command) -> dict[str, click.Parameter]:
    return {p.name: p for p in command.params}


@pytest.mark.parametrize("name", TRAINING_FIELDS)
def test_each_training_option_takes_its_default_and_choices_from_the_config(name):
    param = _params(train_command)[name]
    spec = option_spec(name)
    assert param.default == spec["default"], name
    if spec["choices"] is not None:
        assert tuple(param.type.choices) == spec["choices"]
    if spec["low"] is not None and isinstance(param.type, click.IntRange | click.FloatRange):
        assert param.type.min == spec["low"]


def test_a_changed_config_default_reaches_the_option(monkeypatch):
    import fdseg_cli.options as options

    real = options.option_spec
    monkeypatch.setattr(
        options, "option_spec", lambda n: {**real(n), "default": 0.25} if n == "beta" else real(n)
    )

    @click.command()
    @config_option("beta")
    def probe(beta):
        click.echo(f"beta={beta}")

    r = CliRunner().invoke(probe, [])
    assert r.output.strip() == "beta=0.25"
    assert "[default: 0.25" in CliRunner().invoke(probe, ["--help"]).output


def test_help_shows_the_config_defaults_and_the_phantom_ones():
    r = CliRunner().invoke(cli, ["train", "--help"])
    assert r.exit_code == 0
    text = " ".join(r.output.split())
    assert "[default: 50; x>=1]" in text  # epochs, from TrainConfig
    assert f"[{PHANTOM_TRAINING['epochs']} for the built-in phantom]" in text
    assert "--folds" in text and "--fold FOLD" in text


def test_flags_are_derived_from_field_names():
    assert flag_of("n_folds") == "--folds"
    assert flag_of("early_stop_min_delta") == "--early-stop-min-delta"


def test_an_option_error_from_the_core_names_the_flag_on_the_command_line(monkeypatch):
    from fdseg_core.train.trainer import Trainer

    class Refusing(Trainer):  # a plugin's trainer that refuses the run's options
        def __init__(self, config):
            raise OptionError("{n_folds} 9 is too many; use {n_folds} 3", "n_folds")

    monkeypatch.setattr("fdseg_core.jobs.engine.ensure_default_dataset", lambda progress: ".")
    with plugin_trainers(Refusing):
        r = CliRunner().invoke(cli, ["train", "--no-progress", "--trainer", "Refusing"])
    assert r.exit_code == 2
    assert r.output.strip().splitlines()[-1] == "Error: --folds 9 is too many; use --folds 3"


def test_train_help_does_not_import_torch():
    import subprocess

    code = (
        "import sys\nfrom click.testing import CliRunner\nfrom fdseg_cli.main import cli\n"
        "r = CliRunner().invoke(cli, ['train', '--help'])\nassert r.exit_code == 0, r.output\n"
        "print('torch' in sys.modules)"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"
