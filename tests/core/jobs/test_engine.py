"""The job engine: resume from the run's own configuration, one precedence rule,
planning for every entry point."""

from __future__ import annotations

import json

import pytest
from builders import make_toy_dataset, tiny_args
from click.testing import CliRunner

from fdseg_cli.main import cli
from fdseg_core.errors import OptionError
from fdseg_core.jobs import resume_config, training_job

pytestmark = pytest.mark.slow  # trains, exports or launches processes


@pytest.fixture(scope="module")
def ds(tmp_path_factory):
    return make_toy_dataset(tmp_path_factory.mktemp("engine") / "ds", n_cases=4, n_test=1)


def _epochs(run):
    return [json.loads(r)["epoch"] for r in (run / "metrics.jsonl").read_text().splitlines()]


def test_resume_continues_and_extends_a_run_without_its_options_retyped(ds, tmp_path):
    """The issue's trial: non-default sizes and steps, then `--resume --epochs N`."""
    run = tmp_path / "run"
    first = tiny_args(epochs=2, iters=3, fusion=None, network=False)  # 16 x 16 x 8 patches
    r = CliRunner().invoke(cli, ["train", str(ds), "--out", str(run), *first])
    assert r.exit_code == 0, r.output
    r = CliRunner().invoke(cli, ["train", str(ds), "--out", str(run), "--resume", "--epochs", "3"])
    assert r.exit_code == 0, r.output
    assert "plan:" not in r.output  # nothing planned again
    assert "epochs 3 instead of 2: extending the run at epoch 2" in r.output
    assert _epochs(run) == [1, 2, 3]
    config = json.loads((run / "config.json").read_text())
    assert config["patch_size"] == [16, 16, 8] and config["iters_per_epoch"] == 3
    assert config["val_every"] == 1 and config["epochs"] == 3
    # without DATASET too: the run's own dataset
    r = CliRunner().invoke(cli, ["train", "--out", str(run), "--resume", "--epochs", "4"])
    assert r.exit_code == 0, r.output
    assert _epochs(run) == [1, 2, 3, 4]


def test_a_changed_run_defining_option_is_refused_naming_only_the_flags_typed(ds, tmp_path):
    run = tmp_path / "run"
    args = ["train", str(ds), "--out", str(run), "--patch-size", "16", "16", "8", "--epochs", "1"]
    args += ["--iters-per-epoch", "1", "--folds", "2", "--no-progress"]
    assert CliRunner().invoke(cli, args).exit_code == 0
    resume = ["train", str(ds), "--out", str(run), "--resume", "--epochs", "2"]
    r = CliRunner().invoke(cli, [*resume, "--lr", "0.5", "--patch-size", "16", "16", "8"])
    assert r.exit_code == 2
    line = r.output.strip().splitlines()[-1]
    # the same patch size is no change; only --lr is named
    assert "other values of --lr;" in line and "patch" not in line
    assert _epochs(run) == [1]


def test_resume_refuses_another_dataset_and_a_folder_without_a_run(ds, tmp_path):
    with pytest.raises(FileNotFoundError, match="holds no run to resume"):
        resume_config(tmp_path / "nothing", {})
    run = tmp_path / "run"
    (run).mkdir()
    saved = {"dataset": str(ds), "out": str(run), "epochs": 1}
    (run / "config.json").write_text(json.dumps(saved))
    other = make_toy_dataset(tmp_path / "other", n_cases=2, n_test=0)
    with pytest.raises(OptionError, match="was trained on"):
        resume_config(run, {}, dataset=other)
    config, notes = resume_config(run, {"epochs": 5, "device": "cpu"})
    assert config.epochs == 5 and config.device == "cpu" and "config.json" in notes[0]


def test_the_api_job_applies_the_one_precedence_rule(ds, tmp_path):
    job = training_job(ds, tmp_path / "r", given={"recipe": "paper", "lr": 0.01}, planning=False)
    assert job.config.lr == 0.01  # your value beats the recipe's
    assert job.config.backbone == "paper_unet3d" and "backbone" in job.applied
    assert job.defaults == "config" and job.plan is None
    with pytest.raises(FileNotFoundError, match="does not exist"):
        training_job(tmp_path / "missing", tmp_path / "r", planning=False)


def _fdseg(*args, cwd):
    import subprocess
    import sys

    return subprocess.run(
        [sys.executable, "-m", "fdseg_cli", *map(str, args)],
        cwd=cwd,
        capture_output=True,
        text=True,
        timeout=600,
    )


def test_a_run_moved_to_another_folder_resumes_from_another_working_directory(tmp_path):
    """Started with relative paths, moved (as from scratch to project space), resumed
    from elsewhere with the new folder's path: absolute, then through a symbolic link."""
    home = tmp_path / "home"
    make_toy_dataset(home / "data" / "toy", n_cases=4, n_test=0)
    args = ["train", "data/toy", "--out", "runs/base", "--patch-size", "16", "16", "8"]
    args += ["--epochs", "1", "--iters-per-epoch", "2", "--val-every", "1", "--folds", "2"]
    done = _fdseg(*args, "--no-progress", cwd=home)
    assert done.returncode == 0, done.stderr
    moved = tmp_path / "project" / "base"
    moved.parent.mkdir()
    (home / "runs" / "base").rename(moved)
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    done = _fdseg(
        "train", "--out", moved, "--resume", "--epochs", "2", "--no-progress", cwd=elsewhere
    )
    assert done.returncode == 0, done.stderr
    assert _epochs(moved) == [1, 2]
    (elsewhere / "link").symlink_to(moved)
    done = _fdseg(
        "train", "--out", "link", "--resume", "--epochs", "3", "--no-progress", cwd=elsewhere
    )
    assert done.returncode == 0, done.stderr
    assert _epochs(moved) == [1, 2, 3]
    # a changed option is refused naming the folder as typed and the option only
    done = _fdseg("train", "--out", "link", "--resume", "--lr", "0.5", cwd=elsewhere)
    assert done.returncode == 2
    assert "the run in link was trained with other values of --lr" in done.stderr


def test_folds_the_data_cannot_honour_are_refused_before_a_plan_is_printed(ds, tmp_path):
    r = CliRunner().invoke(cli, ["train", str(ds), "--out", str(tmp_path / "r"), "--folds", "9"])
    assert r.exit_code == 2, r.output
    assert "plan:" not in r.output and "fingerprint" not in r.output
    assert r.output.strip().splitlines()[-1].startswith("Error: --folds 9 needs at least 9")
    assert not (tmp_path / "r").exists()
