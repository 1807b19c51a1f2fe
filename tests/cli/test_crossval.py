"""Cross-validation in one command, and ensembles: `fdseg train --folds-all` trains every
fold, resumes fold by fold, pools the validation Dice and decides the post-processing;
`fdseg predict RUN_DIR` averages the folds; disagreeing models are refused."""

from __future__ import annotations

import json

import nibabel as nib
import numpy as np
import pytest
import torch
from builders import make_toy_dataset
from click.testing import CliRunner

from fdseg_cli.main import cli
from fdseg_core.data import load_dataset
from fdseg_core.infer import labels_from_probabilities, sliding_window_inference
from fdseg_core.train import load_model

pytestmark = pytest.mark.slow  # trains, exports or launches processes

TINY = ["--epochs", "1", "--iters-per-epoch", "2", "--patch-size", "16", "16", "8"]
TINY += ["--val-every", "1", "--folds", "2", "--no-progress"]


@pytest.fixture(scope="module")
def cv(tmp_path_factory):
    root = tmp_path_factory.mktemp("cv")
    ds = make_toy_dataset(root / "ds", n_cases=4, n_test=2)
    run = root / "run"
    r = CliRunner().invoke(cli, ["train", str(ds), "--out", str(run), "--folds-all", *TINY])
    assert r.exit_code == 0, r.output
    return ds, run, r.output


def test_every_fold_trains_and_the_pooled_validation_is_written(cv):
    ds, run, output = cv
    assert (run / "fold_0" / "best.pt").is_file() and (run / "fold_1" / "best.pt").is_file()
    summary = json.loads((run / "cv_summary.json").read_text())
    assert summary["n_folds"] == 2 and summary["n_cases"] == 4  # every case validated once
    val = [c for f in summary["folds"] for c in f["val"]]
    assert sorted(val) == sorted(c.case_id for c in load_dataset(ds).training)
    for name in ("blob", "ball", "mean"):
        assert 0.0 <= summary["pooled_dice"][name] <= 1.0
        assert summary["postprocessed_dice"][name] >= summary["pooled_dice"][name] - 1e-12
    decision = json.loads((run / "postprocessing.json").read_text())["keep_largest"]
    assert set(decision) == {"1", "2"} and set(decision.values()) <= {"none", "class", "hemisphere"}
    assert "pooled validation Dice" in output
    assert "cross-validation: fold 1 of 2 done, best mean Dice" in output  # a line per fold
    assert "cross-validation: fold 2 of 2 done" in output
    assert not (run / "fold_0" / "validation").exists()  # scored in memory, nothing re-read


def test_the_pooled_dice_is_the_mean_over_what_fdseg_predict_writes(cv, tmp_path):
    """The in-memory pooled validation equals the user's path: `fdseg predict` with each
    fold's best checkpoint on its validation cases, scored here from the NIfTI files."""
    ds, run, _ = cv
    info = load_dataset(ds)
    by_id = {c.case_id: c for c in info.training}
    summary = json.loads((run / "cv_summary.json").read_text())
    scores = []
    for k in (0, 1):
        images = [str(by_id[c].image_paths[0]) for c in summary["folds"][k]["val"]]
        out = tmp_path / f"fold_{k}"
        args = ["predict", str(run / f"fold_{k}" / "best.pt"), *images, "--out", str(out)]
        r = CliRunner().invoke(cli, [*args, "--no-progress"])
        assert r.exit_code == 0, r.output
        for pred in sorted(out.glob("*.nii.gz")):
            case = by_id[pred.name.removesuffix(".nii.gz")]
            p = np.asarray(nib.load(str(pred)).dataobj) == 1
            t = np.asarray(nib.load(str(case.label_path)).dataobj) == 1
            if p.sum() + t.sum():
                scores.append(2 * (p & t).sum() / (p.sum() + t.sum()))
    assert len(scores) == 4
    assert summary["pooled_dice"]["blob"] == pytest.approx(np.mean(scores))


def test_resume_keeps_finished_folds_and_a_second_start_is_refused(cv):
    ds, run, _ = cv
    stamps = {k: (run / f"fold_{k}" / "last.pt").stat().st_mtime_ns for k in (0, 1)}
    args = ["train", str(ds), "--out", str(run), "--folds-all", *TINY]
    r = CliRunner().invoke(cli, [*args, "--resume"])
    assert r.exit_code == 0, r.output
    assert {k: (run / f"fold_{k}" / "last.pt").stat().st_mtime_ns for k in (0, 1)} == stamps
    r = CliRunner().invoke(cli, args)
    assert r.exit_code == 2 and "already holds a cross-validation" in r.output


def _member_labels(ckpts, case):
    """The ensemble's labels, computed here: each fold's probabilities averaged."""
    total = None
    for path in ckpts:
        model, meta = load_model(path)
        image = torch.from_numpy(meta.preprocessor()(case, with_label=False).image)[None]
        probs = sliding_window_inference(
            image, model, meta.patch_size, overlap=0.5, activation=meta.activation
        )
        total = probs if total is None else total + probs
    return labels_from_probabilities(total / len(ckpts), meta.activation)[0].numpy()


def test_predict_run_dir_averages_the_folds(cv, tmp_path):
    ds, run, _ = cv
    out = tmp_path / "pred"
    r = CliRunner().invoke(cli, ["predict", str(run), str(ds), "--out", str(out), "--no-progress"])
    assert r.exit_code == 0, r.output
    assert "an ensemble of 2 models" in r.output
    ckpts = [run / "fold_0" / "best.pt", run / "fold_1" / "best.pt"]
    for case in load_dataset(ds).test:
        got = np.asarray(nib.load(str(out / f"{case.case_id}.nii.gz")).dataobj)
        want = _member_labels(ckpts, case)
        assert (got != want).mean() < 1e-3  # float32 averaging order: ties may flip
    # the same ensemble named checkpoint by checkpoint
    out2 = tmp_path / "pred2"
    args = ["predict", *map(str, ckpts), str(ds), "--out", str(out2), "--no-progress"]
    assert CliRunner().invoke(cli, args).exit_code == 0
    for p in out.glob("*.nii.gz"):
        np.testing.assert_array_equal(
            np.asarray(nib.load(str(p)).dataobj), np.asarray(nib.load(str(out2 / p.name)).dataobj)
        )
    out3 = tmp_path / "pred3"
    args = ["predict", str(run), str(ds), "--out", str(out3), "--keep-largest", "run"]
    assert CliRunner().invoke(cli, [*args, "--no-progress"]).exit_code == 0


def test_models_that_disagree_are_refused_naming_both(cv, tmp_path):
    ds, run, _ = cv
    other = torch.load(run / "fold_1" / "best.pt", weights_only=False)
    other["data"]["normalization"] = ["none"]
    torch.save(other, tmp_path / "other.pt")
    first = run / "fold_0" / "best.pt"
    args = [
        "predict",
        str(first),
        str(tmp_path / "other.pt"),
        str(ds),
        "--out",
        str(tmp_path / "o"),
    ]
    r = CliRunner().invoke(cli, args)
    assert r.exit_code == 2
    line = r.output.strip().splitlines()[-1]
    assert "disagree on normalization" in line and str(first) in line and "other.pt" in line
    r = CliRunner().invoke(
        cli, ["predict", str(first), str(ds), "--out", str(tmp_path / "o"), "--keep-largest", "run"]
    )
    assert r.exit_code == 2 and "needs exactly one RUN_DIR" in r.output


def test_several_onnx_files_are_an_ensemble_too(cv, tmp_path):
    pytest.importorskip("onnx", reason="ONNX export is the onnx extra")
    pytest.importorskip("onnxscript", reason="ONNX export is the onnx extra")
    pytest.importorskip("onnxruntime", reason="ONNX Runtime is the onnx extra")
    ds, run, _ = cv
    files = []
    for k in (0, 1):
        path = tmp_path / f"fold{k}.onnx"
        r = CliRunner().invoke(
            cli, ["export", str(run / f"fold_{k}" / "best.pt"), "--out", str(path)]
        )
        assert r.exit_code == 0, r.output
        files += ["--onnx", str(path)]
    onnx_out, ckpt_out = tmp_path / "onnx", tmp_path / "ckpt"
    r = CliRunner().invoke(
        cli, ["predict", *files, str(ds), "--out", str(onnx_out), "--no-progress"]
    )
    assert r.exit_code == 0 and "an ensemble of 2 models" in r.output
    r = CliRunner().invoke(
        cli, ["predict", str(run), str(ds), "--out", str(ckpt_out), "--no-progress"]
    )
    assert r.exit_code == 0
    for p in ckpt_out.glob("*.nii.gz"):
        a = np.asarray(nib.load(str(p)).dataobj)
        b = np.asarray(nib.load(str(onnx_out / p.name)).dataobj)
        assert (a != b).mean() < 1e-3


def test_folds_in_shards_pool_once_every_fold_exists_as_one_run_does(cv, tmp_path):
    ds, run, _ = cv
    out = tmp_path / "sharded"
    args = ["train", str(ds), "--out", str(out), "--folds-all", *TINY]
    r = CliRunner().invoke(cli, [*args, "--shard", "1/2"])
    assert r.exit_code == 0, r.output
    assert "still to finish: fold_1" in r.output and not (out / "cv_summary.json").exists()
    r = CliRunner().invoke(cli, [*args, "--shard", "2/2"])
    assert r.exit_code == 0, r.output
    sharded = json.loads((out / "cv_summary.json").read_text())
    whole = json.loads((run / "cv_summary.json").read_text())
    assert sharded["pooled_dice"] == pytest.approx(whole["pooled_dice"])
    assert sharded["keep_largest"] == whole["keep_largest"]
    r = CliRunner().invoke(cli, ["train", str(ds), "--out", str(tmp_path / "x"), "--shard", "1/2"])
    assert r.exit_code == 2 and "--folds-all" in r.output.splitlines()[-1]
