"""Faults during training: a loss that is not finite stops the run at that step with its
checkpoints kept, SIGTERM and SIGINT save the current step and a resumed run continues
from it exactly, and the metrics log stays strict JSON."""

from __future__ import annotations

import json
import math
import os
import signal

import pytest
import torch
from builders import TINY_FUSION, TINY_NETWORK, make_toy_dataset, plugin_trainers, trainer_at_step
from click.testing import CliRunner

from fdseg_cli.main import cli
from fdseg_core.errors import TrainingDivergedError, TrainingInterrupted
from fdseg_core.train import TrainConfig, load_checkpoint, train
from fdseg_core.train.logs import MetricsLog

pytestmark = pytest.mark.slow  # trains, exports or launches processes

ITERS = 3
BASE = dict(iters_per_epoch=ITERS, patch_size=(16, 16, 8), val_every=1, n_folds=2)
BASE |= dict(
    progress=False,
    backbone_options={"base_filters": 4, "levels": 3},
    **TINY_NETWORK,
    fusion=TINY_FUSION,
)


@pytest.fixture(scope="module")
def ds(tmp_path_factory):
    return make_toy_dataset(tmp_path_factory.mktemp("faults") / "ds", n_cases=4, n_test=1)


def _strict(text: str) -> list[dict]:
    def refuse(name):
        raise AssertionError(f"{name} is not JSON")

    return [json.loads(line, parse_constant=refuse) for line in text.splitlines()]


#: The trainer the command-line tests select (a plugin's, registered for the test).
FAULTY = "TrainerWithAFault"


def test_a_nan_loss_stops_at_that_step_keeps_the_checkpoints_and_exits_1(ds, tmp_path):
    run = tmp_path / "run"
    nan, _ = trainer_at_step(
        2 * ITERS + 2, lambda loss: torch.full_like(loss, float("nan")), name=FAULTY
    )
    args = ["train", str(ds), "--out", str(run), "--epochs", "4", "--iters-per-epoch", "3"]
    args += ["--patch-size", "16", "16", "8", "--val-every", "1", "--folds", "2", "--no-progress"]
    with plugin_trainers(nan):
        r = CliRunner().invoke(cli, [*args, "--trainer", FAULTY])
    assert r.exit_code == 1, r.output
    line = r.output.strip().splitlines()[-1]
    assert line.startswith("Error: the training loss was nan at step 8 (epoch 3)")
    assert "last.pt (epoch 2) and best.pt are the last finite checkpoints" in line
    assert "--lr 0.001" in line and "Traceback" not in r.output
    ckpt = load_checkpoint(run / "last.pt")
    assert ckpt["epoch"] == 2
    assert all(torch.isfinite(v).all() for v in ckpt["model"].values() if v.is_floating_point())
    assert (run / "best.pt").is_file()
    assert [row["epoch"] for row in _strict((run / "metrics.jsonl").read_text())] == [1, 2]


def test_the_api_raises_the_divergence_with_its_step(ds, tmp_path):
    inf, _ = trainer_at_step(1, lambda loss: torch.full_like(loss, float("inf")))
    with pytest.raises(TrainingDivergedError, match="no checkpoint was written") as info:
        train(TrainConfig(dataset=str(ds), out=str(tmp_path / "r"), epochs=2, **BASE), trainer=inf)
    assert info.value.step == 1 and "lr 0.001" in str(info.value)


def test_the_metrics_log_writes_null_for_non_finite_values_and_reads_both(tmp_path):
    log = MetricsLog(tmp_path)
    log.append({"epoch": 1, "train_loss": float("nan"), "val_dice_mean": float("inf")})
    rows = _strict((tmp_path / "metrics.jsonl").read_text())
    assert rows == [{"epoch": 1, "train_loss": None, "val_dice_mean": None}]
    assert (tmp_path / "metrics.csv").read_text().splitlines()[1] == "1,,"
    # a log written before, with NaN, still reads
    (tmp_path / "metrics.jsonl").write_text('{"epoch": 1, "train_loss": NaN}\n')
    assert math.isnan(MetricsLog.load(tmp_path).rows[0]["train_loss"])


@pytest.mark.parametrize(("signum", "code"), [(signal.SIGTERM, 143), (signal.SIGINT, 130)])
def test_a_signal_saves_the_current_step_and_resume_continues_from_it_exactly(
    ds, tmp_path, signum, code
):
    config = {k: v for k, v in BASE.items() if k != "backbone_options"} | {"epochs": 2}
    whole = tmp_path / "whole"
    train(TrainConfig(dataset=str(ds), out=str(whole), **config))
    run = tmp_path / "run"

    def send(loss):
        os.kill(os.getpid(), signum)  # delivered to this (main) thread, as from a scheduler
        return loss

    # the same run as `whole`, from the command line, with a trainer that signals at
    # step 2 of epoch 2 and computes what the default one does
    sender, calls = trainer_at_step(ITERS + 2, send, name=FAULTY)
    before = signal.getsignal(signal.SIGTERM)
    args = ["train", str(ds), "--out", str(run), "--epochs", "2", "--iters-per-epoch", "3"]
    args += ["--patch-size", "16", "16", "8", "--val-every", "1", "--folds", "2"]
    args += ["--backbone", BASE["backbone"], "--loss", BASE["loss"], "--fusion", BASE["fusion"]]
    args += ["--no-progress", "--trainer", FAULTY]
    with plugin_trainers(sender):
        r = CliRunner().invoke(cli, args)
        assert r.exit_code == code, r.output
    name = signal.Signals(signum).name
    assert r.output.strip().splitlines()[-1] == (
        f"{name}: stopped after step 5 (epoch 2, step 2 of 3) and saved {run / 'last.pt'}; "
        "run again with --resume to continue from that step"
    )
    assert calls["n"] == ITERS + 2  # it stopped after that step, not later
    saved = load_checkpoint(run / "last.pt")
    assert saved["epoch"] == 1 and saved["epoch_progress"]["done"] == 2
    assert signal.getsignal(signal.SIGTERM) == before  # the handlers are given back
    with plugin_trainers(sender):  # the run resumes with its own trainer (no signal now)
        r = CliRunner().invoke(cli, ["train", "--out", str(run), "--resume", "--no-progress"])
    assert r.exit_code == 0, r.output
    a, b = load_checkpoint(whole / "last.pt"), load_checkpoint(run / "last.pt")
    assert a["epoch"] == b["epoch"] == 2 and b["epoch_progress"] is None
    for key, value in a["model"].items():
        torch.testing.assert_close(b["model"][key], value, msg=key)
    rows_a = _strict((whole / "metrics.jsonl").read_text())
    rows_b = _strict((run / "metrics.jsonl").read_text())
    assert [r["train_loss"] for r in rows_b] == pytest.approx([r["train_loss"] for r in rows_a])


def test_the_api_raises_the_interruption_with_its_exit_code(ds, tmp_path):
    term, _ = trainer_at_step(1, lambda loss: (os.kill(os.getpid(), signal.SIGTERM), loss)[1])
    with pytest.raises(TrainingInterrupted) as info:
        train(TrainConfig(dataset=str(ds), out=str(tmp_path / "r"), epochs=1, **BASE), trainer=term)
    assert info.value.exit_code == 143 and info.value.step == 1
    assert "run again with resume" in str(info.value)


def test_a_signal_during_validation_saves_the_epoch_and_the_resumed_run_validates_it_again(
    ds, tmp_path
):
    """The signal arrives while epoch 2 is validated: last.pt holds epoch 2's steps as
    done and its validation as not; the resumed run validates it and ends where an
    uninterrupted run ends, metrics log included."""
    from fdseg_core.train.trainer import Trainer

    config = {k: v for k, v in BASE.items() if k != "backbone_options"} | {"epochs": 3}
    whole = tmp_path / "whole"
    train(TrainConfig(dataset=str(ds), out=str(whole), **config))
    calls = {"n": 0}

    class SignalInValidation(Trainer):
        name = "Trainer"  # computes what the default trainer computes

        def validate(self, *args, **kwargs):
            calls["n"] += 1
            if calls["n"] == 2:  # as epoch 2's validation starts
                os.kill(os.getpid(), signal.SIGTERM)
            return super().validate(*args, **kwargs)

    run = tmp_path / "run"
    with pytest.raises(TrainingInterrupted) as info:
        train(TrainConfig(dataset=str(ds), out=str(run), **config), trainer=SignalInValidation)
    assert info.value.exit_code == 143
    assert "in the validation after step 6 (epoch 2)" in str(info.value)
    saved = load_checkpoint(run / "last.pt")
    assert saved["epoch"] == 1 and saved["epoch_progress"]["done"] == ITERS
    assert [r["epoch"] for r in _strict((run / "metrics.jsonl").read_text())] == [1]
    train(TrainConfig(dataset=str(ds), out=str(run), **config), resume=True)
    a, b = load_checkpoint(whole / "last.pt"), load_checkpoint(run / "last.pt")
    assert a["epoch"] == b["epoch"] == 3
    for key, value in a["model"].items():
        torch.testing.assert_close(b["model"][key], value, msg=key)
    rows_a = _strict((whole / "metrics.jsonl").read_text())
    rows_b = _strict((run / "metrics.jsonl").read_text())
    assert [r["epoch"] for r in rows_b] == [1, 2, 3]
    for key in ("train_loss", "val_dice_mean"):
        assert [r[key] for r in rows_b] == pytest.approx([r[key] for r in rows_a])
    log = (run / "train.log").read_text()
    assert "resuming at epoch 2" in log and "epoch 2/3 (step 6)" in log
