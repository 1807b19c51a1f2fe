"""The metrics log: strict JSON whatever the values, both forms readable, resumable."""

from __future__ import annotations

import csv
import json

import pytest

from fdseg_core.train.logs import MetricsLog, plot_curves


def _refuse(name):
    raise ValueError(f"not strict JSON: {name}")


def test_non_finite_values_are_written_as_null_and_parse_strictly(tmp_path):
    log = MetricsLog(tmp_path)
    log.append({"epoch": 1, "train_loss": float("nan"), "val_dice_mean": 0.5})
    log.append({"epoch": 2, "train_loss": float("inf"), "lr": 1e-3})
    lines = (tmp_path / "metrics.jsonl").read_text().splitlines()
    rows = [json.loads(line, parse_constant=_refuse) for line in lines]
    assert rows == [
        {"epoch": 1, "train_loss": None, "val_dice_mean": 0.5},
        {"epoch": 2, "train_loss": None, "lr": 1e-3},
    ]
    # the CSV has the union of the keys, in order of first appearance, empty where absent
    with (tmp_path / "metrics.csv").open() as fh:
        table = list(csv.DictReader(fh))
    assert list(table[0]) == ["epoch", "train_loss", "val_dice_mean", "lr"]
    assert table[0]["train_loss"] == "" and table[1]["val_dice_mean"] == ""


def test_logs_written_before_with_nan_still_load(tmp_path):
    (tmp_path / "metrics.jsonl").write_text('{"epoch": 1, "train_loss": NaN}\n\n')
    rows = MetricsLog.load(tmp_path).rows
    assert (
        len(rows) == 1 and rows[0]["epoch"] == 1 and rows[0]["train_loss"] != rows[0]["train_loss"]
    )


def test_truncate_drops_the_epochs_a_resumed_run_redoes(tmp_path):
    log = MetricsLog(tmp_path, [{"epoch": e, "train_loss": 1.0 / e} for e in (1, 2, 3)])
    log.truncate(2)
    log.write()
    assert [r["epoch"] for r in MetricsLog.load(tmp_path).rows] == [1, 2]


def test_a_missing_log_loads_empty(tmp_path):
    assert MetricsLog.load(tmp_path / "nothing").rows == []


def test_curves_of_a_short_run_with_a_null_loss_plot_integer_epochs(tmp_path):
    pytest.importorskip("matplotlib")
    rows = [
        {"epoch": 1, "train_loss": 0.9, "val_dice_red": 0.2},
        {"epoch": 2, "train_loss": None, "val_dice_red": 0.4},
    ]
    fig = plot_curves(rows, tmp_path / "curves.png", title="t", loss="sigmoid_dice")
    assert (tmp_path / "curves.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    ax_loss, ax_dice = fig.get_axes()
    assert ax_loss.get_ylabel() == "sigmoid Dice loss"
    ticks = [t for t in ax_loss.get_xticks() if 1 <= t <= 2]
    assert ticks and all(float(t).is_integer() for t in ticks)
    assert [line.get_label() for line in ax_dice.get_lines()] == ["red"]
