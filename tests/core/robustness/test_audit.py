"""The audit: its clean images score as `fdseg predict` + `fdseg evaluate` and as the
experiment's own test Dice; a model that ignores the high band loses nothing without
it; ensembles average as predict does; an experiment folder is compared with its
baseline; a stopped audit goes on to what one call writes, and new models alone are
scored; bad input ends in one line before anything is written."""

from __future__ import annotations

import csv
import json
import os
import signal

import nibabel as nib
import numpy as np
import pytest
import torch
from builders import make_toy_dataset, sigterm_after, tiny_args, tiny_config
from click.testing import CliRunner

from fdseg_cli.main import cli
from fdseg_core.bands import band_split
from fdseg_core.data import load_dataset
from fdseg_core.infer.card import ModelCard
from fdseg_core.robustness import (
    AuditInterrupted,
    AuditModel,
    PerturbationSuite,
    audit,
    coverage,
    labelled_cases,
    models_from_paths,
)
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
    # a dry run before any audit: everything to score, nothing written
    r = CliRunner().invoke(cli, ["robustness", str(exp), "--out", str(out), "--dry-run"])
    assert r.exit_code == 0, r.output
    asked = 2 * (1 + 11 * 3)  # cases x (clean + kinds x levels)
    assert f"0 of 4 models complete, 4 to score ({4 * asked} scores), 0 left out" in r.output
    assert not out.exists()
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

    # on another machine, without the checkpoints: the committed scores stand in for them
    first = (out / "robustness.csv").read_bytes()
    gone = sorted((exp / "runs").iterdir())[0]
    (gone / "best.pt").unlink()
    base = ["robustness", str(exp), "--out", str(out), "--no-progress"]
    r = CliRunner().invoke(cli, [*base, "--kinds", "low_band"])
    assert r.exit_code == 0, r.output
    assert (out / "robustness.csv").read_bytes() == first
    summary = json.loads((out / "robustness.json").read_text())
    assert summary["scores"]["made"] == 0 and summary["left_out"] == []
    assert next(m for m in summary["models"] if m["name"] == gone.name)["from_stored_scores"]
    # a dry run says so, model by model, and writes nothing
    before = {f.name: f.stat().st_mtime_ns for f in out.iterdir()}
    r = CliRunner().invoke(cli, [*base, "--kinds", "low_band", "--dry-run"])
    assert r.exit_code == 0, r.output
    assert "4 of 4 models complete, 0 to score (0 scores), 0 left out" in r.output
    r = CliRunner().invoke(cli, [*base, "--kinds", "gamma", "--dry-run"])
    assert r.exit_code == 0, r.output
    assert "0 of 4 models complete, 3 to score (18 scores), 1 left out" in r.output
    assert f"  {gone.name}: left out (stored 2 of 8)" in r.output.splitlines()
    assert r.output.count(": 6 to score (stored 2 of 8)") == 3  # only the clean images
    assert {f.name: f.stat().st_mtime_ns for f in out.iterdir()} == before
    # the gone run trained again elsewhere: its stored scores are of other weights
    result = gone / "result.json"
    kept = result.read_text()
    result.write_text(kept.replace('"seed"', '"seed" ', 1))
    r = CliRunner().invoke(cli, [*base, "--kinds", "low_band", "--dry-run"])
    assert r.exit_code == 0, r.output
    assert "3 of 4 models complete, 0 to score (0 scores), 1 left out" in r.output
    line = f"  {gone.name}: left out (stored 0 of 8; its scores here are of another result.json)"
    assert line in r.output.splitlines()
    assert f"{gone.name}: trained again since their scores were stored" in r.output
    result.write_text(kept)
    # a kind never scored for it: the run is left out, by name, the others are scored
    r = CliRunner().invoke(cli, [*base, "--kinds", "gamma"])
    assert r.exit_code == 0, r.output
    assert "1 finished run(s) left out" in r.output and gone.name in r.output
    rows = list(csv.DictReader((out / "robustness.csv").open()))
    assert gone.name not in {x["model"] for x in rows} and len({x["model"] for x in rows}) == 3
    assert json.loads((out / "robustness.json").read_text())["left_out"] == [gone.name]
    # every checkpoint gone, a kind never scored: the dry run refuses as the audit does
    for run in (exp / "runs").iterdir():
        (run / "best.pt").unlink(missing_ok=True)
    for extra in (["--dry-run"], []):
        r = CliRunner().invoke(cli, [*base, "--kinds", "contrast", *extra])
        assert r.exit_code == 2 and "nothing to audit" in r.output.strip().splitlines()[-1]


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--kinds", "jpeg"], "unknown perturbation 'jpeg'"),
        (["--levels", "2,4"], "perturbation levels must be some of [1, 2, 3], got 4"),
        (["--levels", "strong"], "expected levels 1 to 3, got 'strong'"),
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


def test_a_dry_run_refuses_what_the_audit_refuses(trained, tmp_path):
    root, ds = trained
    base = ["robustness", str(root / "run"), "--dataset", str(ds), "--dry-run"]
    taken = tmp_path / "taken"
    taken.write_text("a file where the output folder would go")
    r = CliRunner().invoke(cli, [*base, "--out", str(taken / "rob"), "--kinds", "gamma"])
    assert r.exit_code == 2 and "is a file, not a folder" in r.output, r.output
    # the same run given twice
    r = CliRunner().invoke(cli, [*base, str(root / "run"), "--out", str(tmp_path / "rob")])
    assert r.exit_code == 2 and "two models are named" in r.output, r.output
    assert not (tmp_path / "rob").exists()


def test_folders_of_the_same_name_are_named_by_their_paths(tmp_path):
    for parent in ("x", "y", "z"):
        name = "run" if parent != "z" else "other"
        (tmp_path / parent / name).mkdir(parents=True)
        (tmp_path / parent / name / "best.pt").write_bytes(b"")
    models = models_from_paths(
        [tmp_path / "x" / "run", tmp_path / "y" / "run", tmp_path / "z" / "other"]
    )
    assert [m.name for m in models] == [
        str(tmp_path / "x" / "run"),
        str(tmp_path / "y" / "run"),
        "other",
    ]


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


def _inputs(trained):
    root, ds = trained
    suite = PerturbationSuite(kinds=("low_band", "gamma"))
    return models_from_paths([root / "run"]), labelled_cases(ds), suite


def _audit_run(trained, out, **kwargs):
    labels = dict(load_dataset(trained[1]).labels)
    return audit(*_inputs(trained), out, labels=labels, progress=False, **kwargs)


def test_a_stopped_audit_goes_on_to_what_one_call_writes(trained, tmp_path):
    whole = _audit_run(trained, tmp_path / "whole")
    calls = []

    def stop_soon() -> bool:  # asked between scores and between windows
        calls.append(1)
        return len(calls) > 12

    out = tmp_path / "stopped"
    with pytest.raises(AuditInterrupted, match="scores saved in") as info:
        _audit_run(trained, out, should_stop=stop_soon)
    assert info.value.exit_code == 1 and not (out / "robustness.csv").exists()
    kept = json.loads((out / "robustness.scores.json").read_text())["models"]["run"]["scores"]
    saved = sum(len(v) for v in kept.values())
    assert 0 < saved < len(whole.rows)
    # what the folder holds, and what the same call would score
    held = coverage(*_inputs(trained), out)
    assert held.asked == len(whole.rows) and held.stored == {"run": saved}
    assert held.to_score == {"run": len(whole.rows) - saved} and held.complete == ()
    _audit_run(trained, out)
    assert coverage(*_inputs(trained), out).complete == ("run",)
    assert (out / "robustness.csv").read_bytes() == (
        tmp_path / "whole" / "robustness.csv"
    ).read_bytes()
    scores = json.loads((out / "robustness.json").read_text())["scores"]
    assert scores == {"made": len(whole.rows) - saved, "reused": saved}


def test_a_dry_run_names_a_checkpoint_changed_since_it_was_scored(trained, tmp_path):
    root, ds = trained
    run = tmp_path / "run"
    run.mkdir()
    (run / "best.pt").write_bytes((root / "run" / "best.pt").read_bytes())
    inputs = (models_from_paths([run]), *_inputs(trained)[1:])
    out = tmp_path / "rob"
    audit(*inputs, out, labels=dict(load_dataset(ds).labels), progress=False)
    asked = coverage(*inputs, out).asked
    assert coverage(*inputs, out).complete == ("run",) and coverage(*inputs, out).changed == ()
    # the same run trained further: other weights in the same file
    checkpoint = torch.load(run / "best.pt", map_location="cpu", weights_only=False)
    first = next(k for k, v in checkpoint["model"].items() if v.is_floating_point())
    checkpoint["model"][first] = checkpoint["model"][first] + 0.5
    torch.save(checkpoint, run / "best.pt")
    held = coverage(models_from_paths([run]), *_inputs(trained)[1:], out)
    assert held.changed == ("run",) and held.stored == {"run": 0}
    assert held.to_score == {"run": asked}
    why = "its checkpoint changed since it was scored"
    assert f"  run: {asked} to score (stored 0 of {asked}; {why})" in held.report.splitlines()


def test_sigterm_saves_the_scores_and_ends_with_its_exit_code(trained, tmp_path):
    calls = []

    def preempt() -> bool:  # the scheduler's SIGTERM, once a few scores are made
        calls.append(1)
        if len(calls) == 30:
            os.kill(os.getpid(), signal.SIGTERM)
        return False

    out = tmp_path / "rob"
    handler = signal.getsignal(signal.SIGTERM)
    with pytest.raises(AuditInterrupted, match="stopped by SIGTERM") as info:
        _audit_run(trained, out, should_stop=preempt)
    assert info.value.exit_code == 143 and info.value.signal_name == "SIGTERM"
    assert signal.getsignal(signal.SIGTERM) is handler  # the handler is put back
    kept = json.loads((out / "robustness.scores.json").read_text())["models"]["run"]["scores"]
    assert sum(len(v) for v in kept.values()) >= 1


def test_an_audit_of_more_models_and_kinds_scores_only_the_new(trained, tmp_path):
    root, ds = trained
    copy = tmp_path / "copy"
    copy.mkdir()
    (copy / "best.pt").write_bytes((root / "run" / "best.pt").read_bytes())
    out = tmp_path / "rob"
    base = ["robustness", "--dataset", str(ds), "--out", str(out), "--no-progress"]
    r = CliRunner().invoke(cli, [*base, str(root / "run"), "--kinds", "gamma", "--levels", "3"])
    assert r.exit_code == 0, r.output
    first = list(csv.DictReader((out / "robustness.csv").open()))
    assert {x["level"] for x in first} == {"0", "3"} and len(first) == 2 * 2  # 2 cases
    args = [*base, str(root / "run"), str(copy), "--kinds", "gamma,low_band"]
    r = CliRunner().invoke(cli, [*args, "--levels", "3,1"])
    assert r.exit_code == 0, r.output
    rows = list(csv.DictReader((out / "robustness.csv").open()))
    assert len(rows) == 2 * 2 * (1 + 2 * 2)  # models x cases x (clean + 2 kinds x 2 levels)
    summary = json.loads((out / "robustness.json").read_text())
    assert summary["scores"] == {"made": len(rows) - len(first), "reused": len(first)}
    assert summary["suite"]["levels"] == [1, 3]
    again = {(x["kind"], x["strength"], x["case"]): x for x in rows if x["model"] == "run"}
    for x in first:  # the stored scores, as the first audit wrote them
        assert again[(x["kind"], x["strength"], x["case"])] == x
    for x in rows:  # the same weights under another name score the same
        if x["model"] == "copy":
            y = next(
                z for z in rows if z["model"] == "run" and z["kind"] == x["kind"]
                and z["strength"] == x["strength"] and z["case"] == x["case"]
            )  # fmt: skip
            assert {k: v for k, v in x.items() if k.startswith("dice_")} == {
                k: v for k, v in y.items() if k.startswith("dice_")
            }


def test_a_preempted_audit_exits_143_within_seconds_and_the_same_command_goes_on(trained, tmp_path):
    import subprocess
    import sys

    root, _ = trained
    ds = make_toy_dataset(tmp_path / "ds", n_cases=2, n_test=4, shape=(40, 40, 24))
    out = tmp_path / "rob"
    args = [sys.executable, "-m", "fdseg_cli", "robustness", str(root / "run"), "--dataset"]
    args += [str(ds), "--out", str(out), "--kinds", KINDS, "--no-progress"]
    # a line per case on a log: SIGTERM while the second case is scored
    code, lines, rest, seconds = sigterm_after(args, "robustness: case 1 of 4")
    assert code == 143, "".join(lines) + rest
    assert seconds < 10
    last = rest.strip().splitlines()[-1]
    assert "stopped by SIGTERM" in last and "robustness.scores.json" in last
    assert not (out / "robustness.csv").exists()
    done = subprocess.run(args, capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr
    scores = json.loads((out / "robustness.json").read_text())["scores"]
    assert scores["reused"] >= 10 and scores["made"] + scores["reused"] == 4 * 10
