"""Extension points of the training loop: callbacks see every stage in order, can add to
the log, and their state resumes; the EMA selection of best.pt follows nnU-Net's rule."""

from __future__ import annotations

import json

import numpy as np
import pytest
from builders import TINY_FUSION, TINY_NETWORK, make_toy_dataset, trainer_validating

from fdseg_core.train import TrainConfig, load_checkpoint, train
from fdseg_core.train.callbacks import EMASelection, TrainingCallback

pytestmark = pytest.mark.slow  # trains, exports or launches processes

BASE = dict(iters_per_epoch=1, patch_size=(16, 16, 8), val_every=1, n_folds=2, progress=False)
BASE |= dict(backbone_options={"base_filters": 4, "levels": 3})
BASE |= dict(TINY_NETWORK, fusion=TINY_FUSION)


@pytest.fixture(scope="module")
def ds(tmp_path_factory):
    return make_toy_dataset(tmp_path_factory.mktemp("callbacks") / "ds", n_cases=4, n_test=0)


class Recorder(TrainingCallback):
    def __init__(self):
        self.calls = []
        self.count = 0

    def on_train_start(self, run):
        self.calls.append(("start", run.epoch))

    def on_epoch_start(self, run):
        self.calls.append(("epoch_start", run.epoch))

    def on_validation_end(self, run, row):
        self.calls.append(("validation", run.epoch))

    def on_epoch_end(self, run, row):
        self.count += 1
        row["my_metric"] = 10.0 * run.epoch
        self.calls.append(("epoch_end", run.epoch))

    def on_train_end(self, run, summary):
        self.calls.append(("end", summary.epochs_run))

    def state_dict(self):
        return {"count": self.count}

    def load_state_dict(self, state):
        self.count = state.get("count", 0)


def test_callbacks_see_every_stage_in_order_and_add_to_the_log(ds, tmp_path):
    rec = Recorder()
    out = tmp_path / "run"
    train(TrainConfig(dataset=str(ds), out=str(out), epochs=2, **BASE), callbacks=[rec])
    assert rec.calls == [
        ("start", 0),
        ("epoch_start", 0),
        ("validation", 1),
        ("epoch_end", 1),
        ("epoch_start", 1),
        ("validation", 2),
        ("epoch_end", 2),
        ("end", 2),
    ]
    rows = [json.loads(r) for r in (out / "metrics.jsonl").read_text().splitlines()]
    assert [r["my_metric"] for r in rows] == [10.0, 20.0]
    assert load_checkpoint(out / "last.pt")["callbacks"] == {"Recorder": {"count": 2}}
    again = Recorder()
    train(
        TrainConfig(dataset=str(ds), out=str(out), epochs=3, **BASE), resume=True, callbacks=[again]
    )
    assert again.calls[0] == ("start", 2) and again.count == 3  # its state came back


MEANS = [0.5, 0.9, 0.3, 0.7, 0.7, 0.7]


def test_best_pt_by_the_raw_dice_takes_the_one_lucky_validation(ds, tmp_path):
    scripted = trainer_validating(MEANS)
    result = train(
        TrainConfig(dataset=str(ds), out=str(tmp_path / "r"), epochs=6, **BASE), trainer=scripted
    )
    assert result.best_epoch == 2


def test_best_pt_by_the_ema_follows_the_smoothed_dice(ds, tmp_path):
    out = tmp_path / "r"
    config = TrainConfig(dataset=str(ds), out=str(out), epochs=6, best_selection="ema", **BASE)
    result = train(config, trainer=trainer_validating(MEANS))
    ema, expected = None, []
    for m in MEANS:
        ema = m if ema is None else 0.9 * ema + 0.1 * m
        expected.append(ema)
    rows = [json.loads(r) for r in (out / "metrics.jsonl").read_text().splitlines()]
    assert [r["val_dice_ema"] for r in rows] == pytest.approx(expected)
    assert int(np.argmax(expected)) + 1 == 6 and result.best_epoch == 6
    assert load_checkpoint(out / "best.pt")["epoch"] == 6


def test_the_ema_resumes_where_it_stopped(ds, tmp_path):
    out = tmp_path / "r"
    config = TrainConfig(dataset=str(ds), out=str(out), epochs=3, best_selection="ema", **BASE)
    train(config, trainer=trainer_validating(MEANS[:3]))
    train(config.replace(epochs=6), resume=True, trainer=trainer_validating(MEANS[3:]))
    rows = [json.loads(r) for r in (out / "metrics.jsonl").read_text().splitlines()]
    ema = None
    for m, row in zip(MEANS, rows, strict=True):
        ema = m if ema is None else 0.9 * ema + 0.1 * m
        assert row["val_dice_ema"] == pytest.approx(ema)


def test_two_callbacks_with_one_name_are_refused(ds, tmp_path):
    with pytest.raises(ValueError, match="distinct names"):
        train(
            TrainConfig(dataset=str(ds), out=str(tmp_path / "r"), epochs=1, **BASE),
            callbacks=[EMASelection(), EMASelection()],
        )
    with pytest.raises(ValueError, match="EMA weight must lie in"):
        EMASelection(1.0)
