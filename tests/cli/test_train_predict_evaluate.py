"""The main job from the CLI: train, resume, predict, evaluate; input errors exit 2."""

from __future__ import annotations

import json

import pytest
from builders import fdseg_ok, make_toy_dataset, tiny_args
from click.testing import CliRunner

from fdseg_cli.main import cli

pytestmark = pytest.mark.slow  # trains, exports or launches processes

FAST = tiny_args(iters=2)


@pytest.mark.parametrize("layout", ["nnunet", "msd"])
def test_train_resume_predict_evaluate(tmp_path, layout):
    ds = make_toy_dataset(tmp_path / "ds", layout=layout, n_cases=4, n_test=2)
    run = tmp_path / "run"
    r = fdseg_ok("train", ds, "--out", run, "--fusion", "late", *FAST)
    assert "validation Dice" in r.output
    # already finished: resumes at the end
    fdseg_ok("train", ds, "--out", run, "--fusion", "late", "--resume", *FAST)
    pred = tmp_path / "pred"
    fdseg_ok(
        "predict", run / "best.pt", ds / "imagesTs", "--out", pred, "--no-progress", "--overlay"
    )
    assert len(list(pred.glob("*.nii.gz"))) == 2
    labels = ds / "labelsTs"
    metrics = tmp_path / "m.json"
    fdseg_ok("evaluate", pred, labels, "--json", metrics, "--dataset-json", ds / "dataset.json")
    report = json.loads(metrics.read_text())
    assert set(report["summary"]) == {"blob", "ball"}
    # labelsTs sits in the dataset: its dataset.json names the classes without the option
    r = fdseg_ok("evaluate", pred, labels, "--json", tmp_path / "n.json")
    assert f"class names from {ds.resolve() / 'dataset.json'}" in r.output
    assert set(json.loads((tmp_path / "n.json").read_text())["summary"]) == {"blob", "ball"}


def test_bad_dataset_is_one_line_exit_2_naming_the_file(tmp_path):
    ds = make_toy_dataset(tmp_path / "ds", n_cases=3)
    (ds / "labelsTr" / "toy_001.nii.gz").write_bytes(b"garbage")
    r = CliRunner().invoke(cli, ["train", str(ds), "--out", str(tmp_path / "run"), *FAST])
    assert r.exit_code == 2
    assert "toy_001" in r.output and "Traceback" not in r.output
    assert len(r.output.strip().splitlines()) == 1


def test_missing_dataset_folder_and_checkpoint_exit_2(tmp_path):
    r = CliRunner().invoke(cli, ["train", str(tmp_path / "nope"), *FAST])
    assert r.exit_code == 2 and "does not exist" in r.output
    r = CliRunner().invoke(
        cli, ["predict", str(tmp_path / "x.pt"), str(tmp_path), "--out", str(tmp_path / "o")]
    )
    assert r.exit_code == 2 and "x.pt does not exist" in r.output


def test_evaluate_grid_mismatch_names_the_case(tmp_path):
    import numpy as np

    from fdseg_core.data import save_nifti

    save_nifti(np.zeros((4, 4, 4), np.uint8), np.eye(4), tmp_path / "p" / "c7.nii.gz")
    save_nifti(np.zeros((4, 4, 5), np.uint8), np.eye(4), tmp_path / "l" / "c7.nii.gz")
    r = CliRunner().invoke(cli, ["evaluate", str(tmp_path / "p"), str(tmp_path / "l")])
    assert r.exit_code == 2 and "case 'c7'" in r.output


TINY = ["--epochs", "1", "--iters-per-epoch", "1", "--patch-size", "16", "16", "8"]
TINY += ["--val-every", "1", "--no-progress"]


@pytest.mark.parametrize("n_cases", [1, 2, 3, 4])
def test_train_without_folds_option_reaches_best_pt_on_tiny_datasets(tmp_path, n_cases):
    ds = make_toy_dataset(tmp_path / "ds", n_cases=n_cases, n_test=0)
    run = tmp_path / "run"
    r = CliRunner().invoke(cli, ["train", str(ds), "--out", str(run), *TINY])
    assert r.exit_code == 0, r.output
    assert (run / "best.pt").is_file()
    if n_cases == 1:
        assert "warning:" in r.output and "optimistic" in r.output
        assert "fold all" in r.output and not (run / "splits_final.json").exists()
    else:
        assert f"{n_cases}-fold cross-validation" in r.output
        splits = json.loads((run / "splits_final.json").read_text())
        assert len(splits) == n_cases and all(len(f["val"]) == 1 for f in splits)


def test_explicit_folds_beyond_the_cases_exit_2_naming_folds_and_the_largest_value(tmp_path):
    ds = make_toy_dataset(tmp_path / "ds", n_cases=4, n_test=0)
    run = tmp_path / "run"
    r = CliRunner().invoke(cli, ["train", str(ds), "--out", str(run), "--folds", "5", *TINY])
    assert r.exit_code == 2
    assert "--folds 5" in r.output and "--folds 4 or fewer" in r.output
    assert len(r.output.strip().splitlines()) == 1 and "Traceback" not in r.output
    assert not run.exists()  # nothing written for a refused run


def test_an_unknown_backbone_is_reported_before_an_impossible_fold_count(tmp_path):
    ds = make_toy_dataset(tmp_path / "ds", n_cases=2, n_test=0)
    args = ["train", str(ds), "--out", str(tmp_path / "run"), "--folds", "5"]
    r = CliRunner().invoke(cli, [*args, "--backbone", "nosuchnet", *TINY])
    assert r.exit_code == 2 and "nosuchnet" in r.output and "--folds" not in r.output


def test_fold_all_trains_on_every_case(tmp_path):
    ds = make_toy_dataset(tmp_path / "ds", n_cases=3, n_test=0)
    run = tmp_path / "run"
    r = CliRunner().invoke(cli, ["train", str(ds), "--out", str(run), "--fold", "all", *TINY])
    assert r.exit_code == 0, r.output
    assert "optimistic" in r.output and (run / "best.pt").is_file()
    r = CliRunner().invoke(cli, ["train", str(ds), "--out", str(run), "--fold", "x", *TINY])
    assert r.exit_code == 2 and "not a fold index" in r.output


@pytest.mark.parametrize("progress", ["--no-progress", "--progress"])
def test_without_a_terminal_every_epoch_and_validation_is_a_line_on_stdout_and_in_train_log(
    tmp_path, progress
):
    """What a scheduler's log shows: with --no-progress, or with bars asked for but no
    terminal to draw them on (a batch job), one line per epoch and per validation on
    standard output, flushed at once, and the same lines in OUT/train.log."""
    import subprocess
    import sys

    ds = make_toy_dataset(tmp_path / "ds", n_cases=4, n_test=0)
    run = tmp_path / "run"
    args = [sys.executable, "-m", "fdseg_cli", "train", str(ds), "--out", str(run)]
    args += ["--epochs", "3", "--iters-per-epoch", "2", "--patch-size", "16", "16", "8"]
    args += ["--val-every", "1", "--folds", "2", progress]
    done = subprocess.run(args, capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr
    out = done.stdout.splitlines()
    epochs = [line for line in out if line.startswith("epoch ") and "(step " in line]
    assert [e.split(" (")[0] for e in epochs] == ["epoch 1/3", "epoch 2/3", "epoch 3/3"]
    assert all("loss " in e and "lr " in e and "; validation " in e for e in epochs)
    assert sum("validating on 2 cases" in line for line in out) == 3
    assert "\r" not in done.stdout + done.stderr  # no progress bar without a terminal
    log = (run / "train.log").read_text()
    for line in epochs:
        assert line in log
    assert log.count("validating on 2 cases") == 3
