"""`fdseg plan` and planned defaults in `fdseg train`: an anisotropic dataset gets
nnU-Net's spacing rule, the plan is written with the run, a recipe's sizes win over the
plan's (and say so), and sizes given by the user turn planning off."""

from __future__ import annotations

import json

import nibabel as nib
import numpy as np
import pytest
from builders import make_toy_dataset
from click.testing import CliRunner

from fdseg_cli.main import cli
from fdseg_core.data import load_dataset

pytestmark = pytest.mark.slow  # trains, exports or launches processes

Z_SPACINGS = [4.0, 5.0, 3.0, 4.5]


@pytest.fixture(scope="module")
def anisotropic(tmp_path_factory):
    """4 cases of 32 x 32 x 8 voxels, 0.8 mm in-plane and 3 to 5 mm between slices."""
    root = make_toy_dataset(
        tmp_path_factory.mktemp("aniso") / "ds", n_cases=4, n_test=0, shape=(32, 32, 8)
    )
    for case, dz in zip(load_dataset(root).training, Z_SPACINGS, strict=True):
        for path in (*case.image_paths, case.label_path):
            img = nib.load(str(path))
            affine = np.diag([0.8, 0.8, dz, 1.0])
            nib.save(nib.Nifti1Image(np.asarray(img.dataobj), affine), str(path))
    return root


def test_plan_explains_the_anisotropic_spacing(anisotropic):
    fused = ["--backbone", "unet3d", "--fusion", "late"]
    r = CliRunner().invoke(cli, ["plan", str(anisotropic), *fused, "--no-progress"])
    assert r.exit_code == 0, r.output
    z = np.percentile(Z_SPACINGS, 10)  # nnU-Net's rule for the coarse axis
    assert f"target spacing [0.8, 0.8, {z:.3g}] mm" in r.output
    assert "10th percentile" in r.output
    assert "fewer than 4 in-plane low-band samples" in r.output  # 32 voxels x 0.1 -> 3
    r = CliRunner().invoke(cli, ["plan", str(anisotropic), *fused, "--json", "--no-progress"])
    plan = json.loads(r.output)
    assert plan["target_spacing"][2] == pytest.approx(z)
    assert all(p % 8 == 0 for p in plan["patch_size"])  # unet3d's divisor


def test_the_low_band_warning_is_for_fusion_models_only(anisotropic):
    r = CliRunner().invoke(cli, ["plan", str(anisotropic), "--fusion", "none", "--no-progress"])
    assert r.exit_code == 0, r.output
    assert "target spacing" in r.output and "low-band samples" not in r.output


def test_plan_prints_what_train_trains_the_default_recipes_measured_sizes(anisotropic):
    r = CliRunner().invoke(cli, ["plan", str(anisotropic), "--no-progress"])
    assert r.exit_code == 0, r.output
    lines = r.output.strip().splitlines()
    z = np.percentile(Z_SPACINGS, 10)
    planned = next(line for line in lines if line.startswith("plan: --target-spacing"))
    assert "--patch-size 48 48 32" not in planned  # the plan fits the 32 x 32 x 8 cases
    assert "the 'default' recipe sets patch size 48 x 48 x 32 (planned: " in r.output
    assert "larger than the median case" in r.output and "axis 2" in r.output
    assert lines[-1] == (
        f"fdseg train DATASET trains: --target-spacing 0.8 0.8 {z:g} --patch-size 48 48 32 "
        "--batch-size 2"
    )
    r = CliRunner().invoke(cli, ["plan", str(anisotropic), "--recipe", "nnunet_like"])
    assert r.exit_code == 0, r.output
    lines = r.output.strip().splitlines()
    assert "recipe sets" not in r.output  # nnunet_like sets no size: the plan is trained
    assert lines[-1].split(": ", 1)[1] == lines[-2].split(": ", 1)[1]


def test_train_takes_the_plans_spacing_and_the_default_recipes_patch_and_batch(
    anisotropic, tmp_path
):
    from fdseg_core.jobs import training_job

    job = training_job(anisotropic, tmp_path / "run")
    plan, _ = job.plan
    assert job.defaults == "plan"
    assert job.config.target_spacing == pytest.approx(plan.target_spacing)
    assert job.config.patch_size == (48, 48, 32) and job.config.batch_size == 2
    assert tuple(plan.patch_size) != (48, 48, 32)
    assert any("'default' recipe sets patch size 48 x 48 x 32" in n for n in job.notes)
    # an experiment's runs get the same sizes, and experiment.json records them
    from fdseg_core.jobs import experiment_job

    config, _ = experiment_job(anisotropic, tmp_path / "exp", train_sizes=[1], fusions=["none"])
    assert config.training.patch_size == (48, 48, 32) and config.training.batch_size == 2
    assert config.plan.patch_size == (48, 48, 32) and config.plan.source == "plan"
    # an option the user gives wins over the recipe, and turns planning off for sizes
    job = training_job(anisotropic, tmp_path / "b", given={"patch_size": (16, 16, 8)})
    assert job.plan is None and job.config.patch_size == (16, 16, 8)


def test_train_without_size_options_plans_records_the_plan_and_trains(anisotropic, tmp_path):
    # nnunet_like sets no size, so every planned size is trained
    run = tmp_path / "run"
    args = ["train", str(anisotropic), "--out", str(run), "--recipe", "nnunet_like"]
    args += ["--iters-per-epoch", "1", "--folds", "2", "--no-progress"]
    r = CliRunner().invoke(cli, [*args, "--epochs", "1"])
    assert r.exit_code == 0, r.output
    assert "plan: target spacing" in r.output
    plan = json.loads((run / "plans.json").read_text())
    config = json.loads((run / "config.json").read_text())
    assert config["target_spacing"] == plan["target_spacing"]
    assert config["patch_size"] == plan["patch_size"] and config["batch_size"] == plan["batch_size"]
    assert plan["fingerprint"]["cases"][0]["shape"] == [32, 32, 8]
    assert (run / "best.pt").is_file()
    # resuming takes the run's own configuration: nothing is planned again
    stamp = (run / "plans.json").read_text()
    r = CliRunner().invoke(cli, [*args, "--epochs", "2", "--resume"])
    assert r.exit_code == 0, r.output
    assert "plan:" not in r.output and "the run's own configuration" in r.output
    assert (run / "plans.json").read_text() == stamp
    assert json.loads((run / "config.json").read_text())["epochs"] == 2


def test_an_experiment_trains_the_planned_patch_and_spacing(anisotropic, tmp_path):
    out = tmp_path / "exp"
    args = ["experiment", str(anisotropic), "--out", str(out), "--train-sizes", "1"]
    args += ["--recipe", "nnunet_like"]
    args += ["--fusion", "none", "--seeds", "1", "--epochs", "1", "--iters-per-epoch", "1"]
    args += ["--folds", "2", "--bootstrap", "100", "--no-progress"]
    r = CliRunner().invoke(cli, args)
    assert r.exit_code == 0, r.output
    assert "plan: target spacing" in r.output
    plan = json.loads((out / "plans.json").read_text())
    config = json.loads((out / "runs" / "n001-none-s0" / "config.json").read_text())
    assert config["target_spacing"] == plan["target_spacing"]
    assert config["patch_size"] == plan["patch_size"] and config["batch_size"] == plan["batch_size"]
    meta = json.loads((out / "experiment.json").read_text())
    assert meta["plan"]["source"] == "plan" and meta["plan"]["patch_size"] == plan["patch_size"]
    # continuing the experiment reads its plan back
    r = CliRunner().invoke(cli, args)
    assert r.exit_code == 0, r.output
    assert "plan: read from" in r.output


def test_a_size_option_turns_planning_off(anisotropic, tmp_path):
    run = tmp_path / "run"
    r = CliRunner().invoke(
        cli,
        ["train", str(anisotropic), "--out", str(run), "--epochs", "1", "--iters-per-epoch", "1"]
        + ["--folds", "2", "--patch-size", "16", "16", "8", "--no-progress"],
    )
    assert r.exit_code == 0, r.output
    assert "plan:" not in r.output and not (run / "plans.json").exists()
    config = json.loads((run / "config.json").read_text())
    assert config["target_spacing"] is None and config["patch_size"] == [16, 16, 8]
