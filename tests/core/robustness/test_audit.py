"""The audit: its clean images score as `fdseg predict` + `fdseg evaluate` and as the
experiment's own test Dice; a model that ignores the high band loses nothing without
it; ensembles average as predict does; an experiment folder is compared with its
baseline; bad input ends in one line before anything is written."""

from __future__ import annotations

import csv
import json

import nibabel as nib
import numpy as np
import pytest
import torch
from builders import make_toy_dataset, tiny_args, tiny_config
from click.testing import CliRunner

from fdseg_cli.main import cli
from fdseg_core.bands import band_split
from fdseg_core.data import load_dataset
from fdseg_core.infer.card import ModelCard
from fdseg_core.robustness import AuditModel, PerturbationSuite, audit, labelled_cases
from fdseg_core.train import train

pytestmark = pytest.mark.slow  # trains, exports or launches processes

KINDS = "low_band,high_band,gamma"


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    root = tmp_path_factory.mktemp("robustness")
    ds = make_toy_dataset(root / "ds", n_cases=4, n_test=2)
    train(tiny_config(ds, root / "run", epochs=2))
    return root, ds


def _dice(rows, kind, strength=None):
    return {
        (r.case, k): v
        for r in rows
        if r.perturbation.kind == kind and (strength is None or r.perturbation.strength == strength)
        for k, v in r.dice.items()
    }


def test_the_clean_images_score_as_predict_and_evaluate(trained, tmp_path):
    root, ds = trained
    out = tmp_path / "rob"
    args = ["robustness", str(root / "run"), "--dataset", str(ds), "--out", str(out)]
    r = CliRunner().invoke(cli, [*args, "--kinds", KINDS, "--no-progress"])
    assert r.exit_code == 0, r.output
    rows = list(csv.DictReader((out / "robustness.csv").open()))
    pred = tmp_path / "pred"
    r = CliRunner().invoke(
        cli,
        ["predict", str(root / "run" / "best.pt"), str(ds), "--out", str(pred), "--no-progress"],
    )
    assert r.exit_code == 0, r.output
    metrics = tmp_path / "m.json"
    r = CliRunner().invoke(
        cli, ["evaluate", str(pred), str(ds / "labelsTs"), "--json", str(metrics)]
    )
    assert r.exit_code == 0, r.output
    checked = 0
    for row in json.loads(metrics.read_text())["cases"]:
        mine = next(x for x in rows if x["kind"] == "clean" and x["case"] == row["case"])
        if mine[f"dice_{row['class']}"]:
            assert float(mine[f"dice_{row['class']}"]) == pytest.approx(row["dice"], abs=1e-9)
            checked += 1
    assert checked >= 2
    # every model x perturbation x case, with the suite recorded
    summary = json.loads((out / "robustness.json").read_text())
    assert summary["suite"]["version"] == "1" and list(summary["suite"]["kinds"]) == KINDS.split(
        ","
    )
    assert len(rows) == 2 * (1 + 3 * 3)  # 2 cases x (clean + 3 kinds x 3 levels)
    assert (out / "robustness.png").stat().st_size > 10_000


class LowPassThreshold(torch.nn.Module):
    """Labels from the low band of the input alone: 1 where it exceeds a threshold."""

    def __init__(self, beta: float, threshold: float) -> None:
        super().__init__()
        self.beta, self.threshold = beta, threshold

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        _, high = band_split(x.double(), self.beta, dims=(2, 3))
        low = (x.double() - high).float()
        score = 8.0 * (low[:, :1] - self.threshold)
        return torch.cat([-score, score, -score - 10.0], dim=1)  # 3 classes, the last unused


def test_a_model_that_ignores_the_high_band_loses_nothing_without_it(trained, tmp_path):
    _, ds = trained
    info = load_dataset(ds)
    cases = labelled_cases(ds)
    shape = tuple(int(s) for s in np.asarray(nib.load(cases[0].image_paths[0]).dataobj).shape)
    card = ModelCard(
        in_channels=1,
        num_classes=3,
        labels=dict(info.labels),
        normalization=("none",),
        patch_size=shape,  # one pass over the volume: the model's band split is the suite's
        activation="softmax",
    )
    model = AuditModel("lowpass", network=LowPassThreshold(0.25, 0.5), card=card)
    suite = PerturbationSuite(kinds=("high_band", "low_band"), beta=0.25)
    result = audit(
        [model], cases, suite, tmp_path / "rob", labels=dict(info.labels), progress=False
    )
    clean = _dice(result.rows, "clean")
    assert any(v for v in clean.values())  # the threshold segments something
    for strength in (0.25, 0.5, 1.0):
        assert _dice(result.rows, "high_band", strength) == pytest.approx(
            clean, abs=1e-12, nan_ok=True
        )
    assert _dice(result.rows, "low_band", 1.0) != pytest.approx(clean, abs=1e-3)  # the control


def test_an_ensemble_of_one_model_twice_scores_as_the_model(trained, tmp_path):
    root, ds = trained
    cv = tmp_path / "cv"
    for k in (0, 1):
        (cv / f"fold_{k}").mkdir(parents=True)
        (cv / f"fold_{k}" / "best.pt").write_bytes((root / "run" / "best.pt").read_bytes())
    out = tmp_path / "rob"
    args = ["robustness", str(root / "run"), str(cv), "--dataset", str(ds), "--out", str(out)]
    r = CliRunner().invoke(cli, [*args, "--kinds", "gamma", "--no-progress"])
    assert r.exit_code == 0, r.output
    rows = list(csv.DictReader((out / "robustness.csv").open()))
    single = {(x["kind"], x["strength"], x["case"]): x for x in rows if x["model"] == "run"}
    both = [x for x in rows if x["model"] == "cv"]
    assert len(both) == len(single) == 2 * 4
    for x in both:
        y = single[(x["kind"], x["strength"], x["case"])]
        for k in x:
            if k.startswith("dice_") and x[k]:
                assert float(x[k]) == pytest.approx(float(y[k]), abs=1e-5)


def test_an_experiment_folder_is_compared_with_its_baseline(tmp_path):
    ds = make_toy_dataset(tmp_path / "ds", n_cases=4, n_test=2)
    exp = tmp_path / "exp"
    args = ["experiment", str(ds), "--out", str(exp), "--train-sizes", "2", "--fusion", "none,late"]
    args += ["--seeds", "2", "--bootstrap", "100", *tiny_args(iters=2, fusion=None)]
    r = CliRunner().invoke(cli, args)
    assert r.exit_code == 0, r.output
    out = tmp_path / "rob"
    r = CliRunner().invoke(
        cli, ["robustness", str(exp), "--out", str(out), "--kinds", "low_band", "--no-progress"]
    )
    assert r.exit_code == 0, r.output
    rows = list(csv.DictReader((out / "robustness.csv").open()))
    assert {x["method"] for x in rows} == {"none", "late"} and {x["seed"] for x in rows} == {
        "0",
        "1",
    }
    # the clean images score as the experiment scored its test cases
    for run in (exp / "runs").iterdir():
        result = json.loads((run / "result.json").read_text())
        for case in result["cases"]:
            mine = next(
                x for x in rows if x["model"] == run.name and x["kind"] == "clean"
                and x["case"] == case["case"]
            )  # fmt: skip
            for key, value in case.items():
                if key.startswith("dice_") and value is not None:
                    assert float(mine[key]) == pytest.approx(value, abs=1e-9)
    table = (out / "robustness_vs_baseline.md").read_text()
    assert "| low_band@1 | 2 | late |" in table and "| clean | 2 | late |" in table


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--kinds", "jpeg"], "unknown perturbation 'jpeg'"),
        ([], "has no labelled test cases"),
    ],
)
def test_bad_input_is_one_line_and_nothing_is_written(trained, tmp_path, args, message):
    root, ds = trained
    dataset = ds
    if not args:  # a dataset without labelsTs
        dataset = make_toy_dataset(tmp_path / "unlabelled", n_cases=4, n_test=1)
        for f in (dataset / "labelsTs").iterdir():
            f.unlink()
    out = tmp_path / "rob"
    r = CliRunner().invoke(
        cli, ["robustness", str(root / "run"), "--dataset", str(dataset), "--out", str(out), *args]
    )
    assert r.exit_code == 2, r.output
    assert message in r.output.strip().splitlines()[-1] and "Traceback" not in r.output
    assert not out.exists()


def test_a_model_of_other_classes_is_refused_before_any_work(trained, tmp_path):
    root, _ = trained
    other = make_toy_dataset(tmp_path / "other", n_cases=4, n_test=1)
    meta = json.loads((other / "dataset.json").read_text())
    meta["labels"] = {"background": 0, "left": 1, "right": 2}
    (other / "dataset.json").write_text(json.dumps(meta))
    out = tmp_path / "rob"
    r = CliRunner().invoke(
        cli, ["robustness", str(root / "run"), "--dataset", str(other), "--out", str(out)]
    )
    assert r.exit_code == 2, r.output
    assert "was trained on the classes" in r.output and not out.exists()
