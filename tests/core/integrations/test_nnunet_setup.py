"""The way in: the trainer folder, and one clear line for each bad setup. These need
neither nnU-Net nor torch."""

from __future__ import annotations

import importlib.util
import os

from click.testing import CliRunner

from fdseg_cli.main import cli
from fdseg_core.integrations.nnunet import (
    EXT_TRAINER_ENV,
    setup_problems,
    trainer_folder,
    workspace_environment,
)


def test_the_trainer_folder_holds_trainer_modules_only():
    folder = trainer_folder()
    files = sorted(p.name for p in folder.iterdir() if p.suffix == ".py")
    assert files == ["fdseg_nnunet_trainers.py"]
    assert not (folder / "__init__.py").exists()  # not a package: nnU-Net imports by name
    text = (folder / "fdseg_nnunet_trainers.py").read_text()
    for name in ("nnUNetTrainerFDEarly", "nnUNetTrainerFDLate", "nnUNetTrainerFD"):
        assert f"    {name},\n" in text  # re-exported from fdseg_core...trainer


def _without_nnunet(monkeypatch):
    real = importlib.util.find_spec
    monkeypatch.setattr(
        importlib.util, "find_spec", lambda n, *a: None if n == "nnunetv2" else real(n, *a)
    )


def test_setup_problems_name_each_bad_setup(monkeypatch, tmp_path):
    _without_nnunet(monkeypatch)
    problems = setup_problems({})
    assert problems == [
        "nnU-Net v2 is not installed: pip install 'fdseg[nnunet]'",
        f"{EXT_TRAINER_ENV} is not set: export {EXT_TRAINER_ENV}=$(fdseg nnunet path)",
    ]
    other = setup_problems({EXT_TRAINER_ENV: str(tmp_path)})
    assert f"does not list fdseg's trainer folder {trainer_folder()}" in other[-1]
    listed = os.pathsep.join([str(tmp_path), str(trainer_folder())])
    assert setup_problems({EXT_TRAINER_ENV: listed}) == [other[0]]


def test_a_workspace_environment_names_its_folders_and_finds_fdsegs_trainers(tmp_path):
    env = workspace_environment(tmp_path / "ws", tmp_path / "ext", nnUNet_compile="false")
    for folder in ("raw", "preprocessed", "results"):
        assert env[f"nnUNet_{folder}"] == str(tmp_path / "ws" / folder)
        assert (tmp_path / "ws" / folder).is_dir()
    assert env[EXT_TRAINER_ENV] == os.pathsep.join([str(trainer_folder()), str(tmp_path / "ext")])
    assert env["nnUNet_compile"] == "false" and env["PATH"] == os.environ["PATH"]
    assert setup_problems(env)[1:] == []  # at most "not installed"


def test_cli_path_and_check_without_nnunet_exit_2_with_one_line(monkeypatch):
    _without_nnunet(monkeypatch)
    monkeypatch.delenv(EXT_TRAINER_ENV, raising=False)
    r = CliRunner().invoke(cli, ["nnunet", "path"])
    assert r.exit_code == 2
    assert r.output.strip() == "Error: nnU-Net v2 is not installed: pip install 'fdseg[nnunet]'"
    r = CliRunner().invoke(cli, ["nnunet", "check"])
    assert r.exit_code == 2 and r.output.count("error:") == 2


def test_cli_path_prints_one_line_when_nnunet_is_installed(monkeypatch):
    real = importlib.util.find_spec
    monkeypatch.setattr(
        importlib.util, "find_spec", lambda n, *a: object() if n == "nnunetv2" else real(n, *a)
    )
    r = CliRunner().invoke(cli, ["nnunet", "path"])
    assert r.exit_code == 0 and r.output == f"{trainer_folder()}\n"
    monkeypatch.setenv(EXT_TRAINER_ENV, str(trainer_folder()))
    r = CliRunner().invoke(cli, ["nnunet", "check"])
    assert r.exit_code == 0 and r.output.startswith("ok:")
