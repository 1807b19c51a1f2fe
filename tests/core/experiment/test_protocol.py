"""A tiny experiment produces its table and plot, resumes, and validates its options."""

from __future__ import annotations

import json

import pytest
from click.testing import CliRunner

from fdseg_cli.main import cli
from fdseg_core.data import make_toy_dataset
from fdseg_core.experiment import ExperimentConfig

FAST = [
    "--epochs",
    "1",
    "--iters-per-epoch",
    "2",
    "--patch-size",
    "16",
    "16",
    "8",
    "--val-every",
    "1",
    "--folds",
    "2",
    "--no-progress",
]


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
    result = json.loads((out / "runs" / "n001-early-s0" / "result.json").read_text())
    assert [c["case"] for c in result["cases"]] == ["toy_004", "toy_005"]  # the test cases
    meta = json.loads((out / "experiment.json").read_text())
    assert meta["test_set"] == "imagesTs/labelsTs"
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
