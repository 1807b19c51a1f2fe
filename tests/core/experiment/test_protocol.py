"""A tiny experiment produces its table and plot, resumes, and validates its options."""

from __future__ import annotations

import json

import pytest
import torch
from builders import make_toy_dataset, tiny_args
from click.testing import CliRunner

from fdseg_cli.main import cli
from fdseg_core.experiment import ExperimentConfig

pytestmark = pytest.mark.slow  # trains, exports or launches processes

FAST = tiny_args(iters=2, fusion=None)  # each run takes its fusion from --fusion


def test_tiny_experiment_writes_table_and_plot_and_resumes(tmp_path):
    ds = make_toy_dataset(tmp_path / "ds", n_cases=4, n_test=2)
    out = tmp_path / "exp"
    args = [
        "experiment",
        str(ds),
        "--out",
        str(out),
        "--train-sizes",
        "1",
        "--fusion",
        "none,early",
        "--seeds",
        "1",
        "--bootstrap",
        "200",
        *FAST,
    ]
    r = CliRunner().invoke(cli, args)
    assert r.exit_code == 0, r.output
    table = (out / "table.md").read_text()
    assert "| 1 | blob | none |" in table and "| 1 | blob | early |" in table
    assert "Δ vs baseline" in table
    csv_rows = (out / "table.csv").read_text().splitlines()
    assert len(csv_rows) == 1 + 3 * 2  # (blob, ball, mean) x (none, early)
    assert (out / "dice_vs_size.png").stat().st_size > 10000
    assert (out / "training_curves.png").stat().st_size > 10000
    assert "training_curves.png" in r.output
    result = json.loads((out / "runs" / "n001-early-s0" / "result.json").read_text())
    assert [c["case"] for c in result["cases"]] == ["toy_004", "toy_005"]  # the test cases
    # everything needed to read the run without rerunning it
    split = json.loads((out / "runs" / "n001-early-s0" / "splits_final.json").read_text())
    assert result["inference_rule"] == "softmax"
    assert len(result["train_cases"]) == 1 and set(result["train_cases"]) <= set(split[0]["train"])
    assert result["val_cases"] == split[0]["val"]
    assert result["steps_per_epoch"] == 2 and result["stop_step"] == 2 and result["step_cap"] == 2
    assert result["best_step"] == 2 and result["hit_step_cap"] is True  # 1 epoch, no plateau
    assert result["fdseg_version"] and len(result["fdseg_commit"] or "x" * 40) == 40
    assert result["run_dir"] == "runs/n001-early-s0"  # relative to the experiment folder
    # the machine that trained it and the one that scored it, as the run's worker saw them
    (machine,) = result["machines"]
    assert machine["cpu_capability"] == torch.backends.cpu.get_cpu_capability()
    assert machine["torch_version"] == torch.__version__ and machine["cpu_threads"] >= 1
    assert machine["world_size"] == 1 and machine["device"] == "cpu"
    assert result["test_machine"] == {k: v for k, v in machine.items() if k != "world_size"}
    # where the run's time went: the sums of its log's columns, and the test evaluation
    log = [
        json.loads(line)
        for line in (out / "runs" / "n001-early-s0" / "metrics.jsonl").read_text().splitlines()
    ]
    assert all("val_time_s" in row for row in log if "val_dice_mean" in row)
    assert result["time_s"]["train"] == round(sum(r["epoch_time_s"] for r in log), 1)
    assert result["time_s"]["validation"] == round(sum(r["val_time_s"] for r in log), 1)
    # rounded to 0.1 s: two tiny test cases may score in under 0.05 s on a fast CPU
    assert isinstance(result["time_s"]["test"], float) and result["time_s"]["test"] >= 0
    meta = json.loads((out / "experiment.json").read_text())
    assert meta["test_set"] == "imagesTs/labelsTs"
    assert meta["dataset"] == "../ds"  # relative: no machine's absolute path is committed
    assert "warning: 1 seed: no seed-level interval" in r.output
    # a second call trains nothing: every run is finished
    stamp = (out / "runs" / "n001-none-s0" / "last.pt").stat().st_mtime_ns
    r = CliRunner().invoke(cli, args)
    assert r.exit_code == 0, r.output
    assert (out / "runs" / "n001-none-s0" / "last.pt").stat().st_mtime_ns == stamp


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"train_sizes": (0,)}, "train_sizes must be positive"),
        ({"fusions": ("none", "mid")}, "fusions must be a non-empty subset"),
        ({"fusions": ("none", "none")}, "repeat"),
        ({"seeds": 0}, "seeds must be a positive"),
        ({"training": {"fusion": "early"}}, "set by the experiment"),
    ],
)
def test_bad_experiment_options_raise(kwargs, message):
    with pytest.raises(ValueError, match=message):
        ExperimentConfig(dataset="d", out="o", **kwargs)


def test_cli_rejects_bad_lists():
    r = CliRunner().invoke(cli, ["experiment", ".", "--out", "x", "--train-sizes", "a,b"])
    assert r.exit_code == 2 and "comma-separated list of integers" in r.output
    r = CliRunner().invoke(cli, ["experiment", ".", "--out", "x", "--fusion", "none,mid"])
    assert r.exit_code == 2 and "unknown methods ['mid']" in r.output


def test_experiment_adapts_folds_to_a_small_dataset_and_starts_at_the_first_seed(tmp_path):
    ds = make_toy_dataset(tmp_path / "ds", n_cases=3, n_test=0)
    out = tmp_path / "exp"
    fast = [*FAST[:-3], "--no-progress"]  # without --folds 2
    args = ["experiment", str(ds), "--out", str(out), "--fusion", "none,early"]
    args += ["--bootstrap", "100"]
    r = CliRunner().invoke(cli, [*args, "--train-sizes", "3", *fast])
    assert r.exit_code == 2 and "--train-sizes 3" in r.output and "only 2 training" in r.output
    assert not out.exists()
    r = CliRunner().invoke(cli, [*args, "--train-sizes", "2", "--seed", "5", "--seeds", "1", *fast])
    assert r.exit_code == 0, r.output
    assert r.output.count("3-fold cross-validation") == 1  # once, not once per run
    assert sorted(p.name for p in (out / "runs").iterdir()) == ["n002-early-s5", "n002-none-s5"]
    meta = json.loads((out / "experiment.json").read_text())
    assert meta["test_set"] == "fold 0 validation cases" and len(meta["test_cases"]) == 1
    split = json.loads((out / "runs" / "n002-none-s5" / "splits_final.json").read_text())
    assert meta["test_cases"] == split[0]["val"]  # the held-out case never trained


def test_layouts_make_one_method_per_fusion_and_layout_and_best_checkpoints_are_evaluated(
    tmp_path,
):
    ds = make_toy_dataset(tmp_path / "ds", n_cases=4, n_test=1)
    out = tmp_path / "exp"
    args = ["experiment", str(ds), "--out", str(out), "--fusion", "none,early"]
    args += ["--layouts", "centered,reference", "--checkpoint", "best", "--train-sizes", "1"]
    args += ["--seeds", "1", "--bootstrap", "100", *FAST]
    r = CliRunner().invoke(cli, args)
    assert r.exit_code == 0, r.output
    runs = sorted(p.name for p in (out / "runs").iterdir())
    assert runs == ["n001-early-centered-s0", "n001-early-reference-s0", "n001-none-s0"]
    result = json.loads((out / "runs" / "n001-early-reference-s0" / "result.json").read_text())
    assert result["layout"] == "reference" and result["checkpoint"] == "best"
    config = json.loads((out / "runs" / "n001-early-reference-s0" / "config.json").read_text())
    assert config["layout"] == "reference" and config["fusion"] == "early"
    table = (out / "table.md").read_text()
    assert "| early-centered |" in table and "| early-reference |" in table
    meta = json.loads((out / "experiment.json").read_text())
    assert meta["methods"] == ["none", "early-centered", "early-reference"]
    r = CliRunner().invoke(cli, [*args[: -len(FAST)], *FAST, "--layout", "centered"])
    assert r.exit_code == 2 and "exclude each other" in r.output


def test_a_recipes_fusion_gives_way_to_the_experiments_methods(tmp_path):
    # the paper recipe sets fusion="early"; an experiment's runs take theirs from --fusion
    ds = make_toy_dataset(tmp_path / "ds", n_cases=4, n_test=1)
    out = tmp_path / "exp"
    args = ["experiment", str(ds), "--out", str(out), "--recipe", "paper"]
    args += ["--fusion", "none,late", "--train-sizes", "1", "--seeds", "1", "--bootstrap", "100"]
    r = CliRunner().invoke(cli, [*args, *tiny_args(iters=2, fusion=None, network=False)])
    assert r.exit_code == 0, r.output
    assert "  fusion: per run, from --fusion none,late" in r.output
    assert "fusion = 'early'" not in r.output
    runs = sorted(p.name for p in (out / "runs").iterdir())
    assert runs == ["n001-late-s0", "n001-none-s0"]
    config = json.loads((out / "runs" / "n001-late-s0" / "config.json").read_text())
    assert config["fusion"] == "late" and config["backbone"] == "paper_unet3d"


def test_on_an_anisotropic_dataset_the_experiment_scores_as_predict_and_evaluate(tmp_path):
    """A run that resamples 1 x 1 x 2 mm cases to 1 mm: the experiment's test Dice of a
    case is the Dice `fdseg predict` + `fdseg evaluate` give the same checkpoint on the
    case's own grid (one evaluator), not the Dice of the resampled grid."""
    ds = make_toy_dataset(tmp_path / "ds", n_cases=4, n_test=2, spacing=(1.0, 1.0, 2.0))
    out = tmp_path / "exp"
    args = ["experiment", str(ds), "--out", str(out), "--train-sizes", "2", "--fusion", "none"]
    args += ["--seeds", "1", "--bootstrap", "100", "--target-spacing", "1", "1", "1", *FAST]
    r = CliRunner().invoke(cli, args)
    assert r.exit_code == 0, r.output
    run = out / "runs" / "n002-none-s0"
    result = json.loads((run / "result.json").read_text())
    pred = tmp_path / "pred"
    r = CliRunner().invoke(
        cli, ["predict", str(run / "best.pt"), str(ds), "--out", str(pred), "--no-progress"]
    )
    assert r.exit_code == 0, r.output
    metrics = tmp_path / "m.json"
    r = CliRunner().invoke(
        cli, ["evaluate", str(pred), str(ds / "labelsTs"), "--json", str(metrics)]
    )
    assert r.exit_code == 0, r.output
    scored = {
        (row["case"], row["class"]): row["dice"] for row in json.loads(metrics.read_text())["cases"]
    }
    checked = 0
    for row in result["cases"]:
        for name in ("blob", "ball"):
            expected = scored.get((row["case"], name))
            if expected is None:  # a class absent from both: evaluate leaves it out
                continue
            assert row[f"dice_{name}"] == pytest.approx(expected, abs=1e-6)
            checked += 1
    assert checked >= 2
