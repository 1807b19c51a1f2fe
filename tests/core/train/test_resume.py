"""--resume accepts other runtime options and another number of epochs: a larger one
extends a run (finished or not), a smaller one ends a killed run early, and the
learning-rate schedule is recomputed over the new total from the current step."""

from __future__ import annotations

import json
import logging

import pytest
from builders import (
    TINY_FUSION,
    TINY_NETWORK,
    make_toy_dataset,
    trainer_dying_in_epoch_2,
    trainer_validating,
)
from click.testing import CliRunner

from fdseg_cli.main import cli
from fdseg_core.train import TrainConfig, load_checkpoint, train
from fdseg_core.train.trainer import Trainer

pytestmark = pytest.mark.slow  # trains, exports or launches processes

ITERS = 2
#: a tiny run: 2 steps per epoch of 16 x 16 x 8 patches, a small unet3d, 2 folds
BASE = dict(iters_per_epoch=ITERS, patch_size=(16, 16, 8), val_every=1, n_folds=2)
BASE |= dict(progress=False, backbone_options={"base_filters": 4, "levels": 3}, epochs=2)
BASE |= dict(TINY_NETWORK, fusion=TINY_FUSION, schedule="poly")  # the schedule is recomputed


@pytest.fixture(scope="module")
def ds(tmp_path_factory):
    return make_toy_dataset(tmp_path_factory.mktemp("resume") / "ds", n_cases=4, n_test=1)


def config(ds, out, **kw):
    return TrainConfig(dataset=str(ds), out=str(out), **{**BASE, **kw})


def _epochs(out):
    return [json.loads(r)["epoch"] for r in (out / "metrics.jsonl").read_text().splitlines()]


def _recording_lrs() -> tuple[type[Trainer], list[float]]:
    """A trainer (the default one's computation) that records the learning rate at each
    optimiser step (before the step)."""
    seen: list[float] = []

    class RecordingLR(Trainer):
        name = "Trainer"

        def train_step(self, model, opt, image, label):
            seen.append(opt.optimizer.param_groups[0]["lr"])
            return super().train_step(model, opt, image, label)

    return RecordingLR, seen


def test_resume_accepts_other_runtime_options(ds, tmp_path):
    out = tmp_path / "run"
    train(config(ds, out, epochs=1, num_workers=1, device="auto", tensorboard=False))
    result = train(
        config(ds, out, epochs=2, num_workers=0, device="cpu", progress=True), resume=True
    )
    assert result.epochs_run == 2 and _epochs(out) == [1, 2]
    saved = load_checkpoint(out / "last.pt")["config"]
    assert saved["device"] == "cpu" and saved["num_workers"] == 0 and saved["epochs"] == 2


def test_resume_still_refuses_a_change_that_defines_the_run(ds, tmp_path):
    out = tmp_path / "run"
    train(config(ds, out, epochs=1))
    with pytest.raises(ValueError, match=r"resume: the run in .* other values of beta, lr;"):
        train(config(ds, out, epochs=2, lr=0.1, beta=0.2, device="cpu"), resume=True)


def test_a_larger_epochs_extends_a_finished_run_on_a_recomputed_schedule(ds, tmp_path, caplog):
    out = tmp_path / "run"
    train(config(ds, out, epochs=2))
    assert load_checkpoint(out / "last.pt")["epoch"] == 2
    recording, lrs = _recording_lrs()
    with caplog.at_level(logging.INFO, logger="fdseg_core.train.loop"):
        result = train(config(ds, out, epochs=3), resume=True, trainer=recording)
    assert result.epochs_run == 3 and _epochs(out) == [1, 2, 3]
    # poly over 3 epochs from step 4 of 6: lr = 1e-3 * (1 - 4/6) ** 0.9, then step 5
    total = 3 * ITERS
    want = [1e-3 * (1 - s / total) ** 0.9 for s in (2 * ITERS, 2 * ITERS + 1)]
    assert lrs == pytest.approx(want, rel=1e-6)
    lines = [r.getMessage() for r in caplog.records if "epochs 3 instead of 2" in r.getMessage()]
    assert len(lines) == 1 and "recomputed over 6 steps from step 4" in lines[0]
    ckpt = load_checkpoint(out / "last.pt")
    assert ckpt["config"]["epochs"] == 3 and ckpt["scheduler"]["last_epoch"] == total
    assert json.loads((out / "config.json").read_text())["epochs"] == 3


def test_a_smaller_epochs_finishes_a_killed_run_early(ds, tmp_path):
    out = tmp_path / "run"
    with pytest.raises(KeyboardInterrupt):
        train(config(ds, out, epochs=5, val_every=3), trainer=trainer_dying_in_epoch_2())
    assert load_checkpoint(out / "last.pt")["epoch"] == 1
    recording, lrs = _recording_lrs()
    result = train(config(ds, out, epochs=2, val_every=3), resume=True, trainer=recording)
    assert result.epochs_run == 2 and _epochs(out) == [1, 2]
    rows = [json.loads(r) for r in (out / "metrics.jsonl").read_text().splitlines()]
    assert "val_dice_mean" in rows[-1]  # the new last epoch validates
    assert rows[-1]["lr"] == 0.0  # the schedule ended with the run
    assert lrs == pytest.approx([1e-3 * (1 - s / (2 * ITERS)) ** 0.9 for s in (2, 3)], rel=1e-6)


def test_an_early_stopped_run_stays_stopped_with_more_epochs(ds, tmp_path, caplog):
    out = tmp_path / "run"
    flat = trainer_validating([0.5] * 10)
    result = train(config(ds, out, epochs=10, early_stop_patience=1), trainer=flat)
    assert result.stopped_early and result.epochs_run == 2
    with caplog.at_level(logging.INFO, logger="fdseg_core.train.loop"):
        again = train(config(ds, out, epochs=20, early_stop_patience=1), resume=True)
    assert again.epochs_run == 2
    assert any("stays stopped" in r.getMessage() for r in caplog.records)


def test_cli_resume_with_other_device_and_workers(ds, tmp_path):
    run = tmp_path / "run"
    fast = ["--iters-per-epoch", "2", "--patch-size", "16", "16", "8", "--val-every", "1"]
    fast += ["--folds", "2", "--no-progress"]
    args = ["train", str(ds), "--out", str(run), *fast]
    r = CliRunner().invoke(cli, [*args, "--epochs", "1", "--num-workers", "1"])
    assert r.exit_code == 0, r.output
    r = CliRunner().invoke(
        cli, [*args, "--epochs", "2", "--resume", "--device", "cpu", "--num-workers", "0"]
    )
    assert r.exit_code == 0, r.output
    assert "epochs 2 instead of 1: extending the run at epoch 1" in r.output
    assert _epochs(run) == [1, 2]
    r = CliRunner().invoke(cli, [*args, "--epochs", "2", "--resume", "--lr", "0.5"])
    assert r.exit_code == 2
    assert "--resume: the run in" in r.output and "other values of --lr;" in r.output
    assert "--epochs may change" in r.output
