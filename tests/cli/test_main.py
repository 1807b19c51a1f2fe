"""How the fdseg command ends: input errors in one line with exit code 2, internal errors
named as such with exit code 1, a traceback only with --debug."""

from __future__ import annotations

import pytest
from click.testing import CliRunner

import fdseg_core.jobs as jobs
from fdseg_cli.main import cli
from fdseg_core.errors import InputError, MissingExtraError


def _raise(exc):
    def fail(*args, **kwargs):
        raise exc

    return fail


@pytest.mark.parametrize(
    "exc",
    [
        TypeError("unsupported operand"),
        KeyError("val_dice"),
        RuntimeError("boom"),
        ValueError("raised inside a library"),  # not fdseg's InputError: not the user's
    ],
)
def test_a_bug_of_fdsegs_is_an_internal_error_not_the_users(monkeypatch, tmp_path, exc):
    monkeypatch.setattr(jobs, "training_job", _raise(exc))
    r = CliRunner().invoke(cli, ["train", str(tmp_path), "--no-progress"])
    assert r.exit_code == 1
    line = r.output.strip().splitlines()[-1]
    assert line.startswith(f"Error: internal error ({type(exc).__name__}: ")
    assert "fdseg --debug" in line and "report it" in line
    assert "Traceback" not in r.output
    r = CliRunner().invoke(cli, ["--debug", "train", str(tmp_path), "--no-progress"])
    assert r.exception is exc  # --debug lets it through, with its traceback


@pytest.mark.parametrize(
    "exc",
    [
        InputError("beta must lie in (0, 1), got 2"),
        FileNotFoundError("x.nii.gz is missing"),
        MissingExtraError("--slurm", "slurm"),
    ],
)
def test_input_errors_end_in_one_line_with_exit_code_2(monkeypatch, tmp_path, exc):
    monkeypatch.setattr(jobs, "training_job", _raise(exc))
    r = CliRunner().invoke(cli, ["train", str(tmp_path), "--no-progress"])
    assert r.exit_code == 2
    assert r.output.strip().splitlines()[-1] == f"Error: {exc}"


def test_other_ranks_than_0_stay_quiet_with_the_same_exit_code(monkeypatch, tmp_path):
    """...and wait before they exit: torchrun's agent stops every rank once one exits
    non-zero, and rank 0 must have printed its line by then."""
    import time

    from fdseg_cli.main import QUIET_RANK_GRACE_S

    waits = []
    monkeypatch.setattr(time, "sleep", waits.append)
    monkeypatch.setattr(jobs, "training_job", _raise(InputError("bad value")))
    r = CliRunner().invoke(cli, ["train", str(tmp_path), "--no-progress"])
    assert r.exit_code == 2 and "bad value" in r.output and waits == []  # rank 0
    monkeypatch.setenv("RANK", "1")
    r = CliRunner().invoke(cli, ["train", str(tmp_path), "--no-progress"])
    assert r.exit_code == 2 and r.output == ""
    assert waits == [QUIET_RANK_GRACE_S] and QUIET_RANK_GRACE_S >= 1


def test_every_option_of_every_command_has_help_text():
    from fdseg_cli.main import COMMANDS

    missing = []
    for name in COMMANDS:
        command = cli.get_command(None, name)
        commands = [command]
        if hasattr(command, "commands"):  # a group: its subcommands too
            commands += list(command.commands.values())
        for cmd in commands:
            for param in cmd.params:
                if param.param_type_name == "option" and not param.help:
                    missing.append(f"{cmd.name} {param.opts[0]}")
    assert missing == []
