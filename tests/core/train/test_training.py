"""Training on CPU: outputs, exact resume, refusal to clobber, torchrun with 2 processes."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from builders import make_toy_dataset, tiny_args, tiny_config, trainer_dying_in_epoch_2

from fdseg_core.provenance import machine_provenance
from fdseg_core.train import TrainConfig, load_checkpoint, load_model, train

pytestmark = pytest.mark.slow  # trains, exports or launches processes


def config(ds, out, **kw):
    return tiny_config(ds, out, **{"epochs": 2, "iters_per_epoch": 2, "batch_size": 2, **kw})


@pytest.fixture(scope="module")
def ds(tmp_path_factory):
    return make_toy_dataset(tmp_path_factory.mktemp("data") / "ds", n_cases=4, n_test=1)


@pytest.mark.parametrize("fusion", ["none", "early", "late"])
def test_training_writes_checkpoints_logs_plot_and_split(ds, tmp_path, fusion):
    out = tmp_path / "run"
    result = train(config(ds, out, fusion=fusion))
    for name in (
        "last.pt",
        "best.pt",
        "metrics.jsonl",
        "metrics.csv",
        "curves.png",
        "splits_final.json",
        "config.json",
    ):
        assert (out / name).is_file(), name
    rows = [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]
    assert [r["epoch"] for r in rows] == [1, 2]
    assert {"train_loss", "val_dice_blob", "val_dice_ball", "val_dice_mean"} <= set(rows[0])
    ckpt = load_checkpoint(out / "last.pt")
    assert ckpt["epoch"] == 2 and ckpt["config"]["fusion"] == fusion
    assert ckpt["backbone_package"]["package"] == "fdseg"
    assert {"optimizer", "scheduler", "scaler", "rng"} <= set(ckpt)
    assert 0.0 <= result.best_dice <= 1.0
    model, meta = load_model(out / "best.pt")
    assert meta.num_classes == 3 and meta.labels["ball"] == 2
    assert model(torch.randn(1, 1, 16, 16, 8)).shape == (1, 3, 16, 16, 8)
    assert not list(out.glob(".*tmp*"))


def test_resume_continues_exactly_where_it_stopped(ds, tmp_path):
    straight = tmp_path / "straight"
    train(config(ds, straight, epochs=3))
    interrupted = tmp_path / "interrupted"
    with pytest.raises(KeyboardInterrupt):  # during epoch 2, before its checkpoint
        train(config(ds, interrupted, epochs=3), trainer=trainer_dying_in_epoch_2())
    assert load_checkpoint(interrupted / "last.pt")["epoch"] == 1  # the good one survived
    train(config(ds, interrupted, epochs=3), resume=True)
    a = load_checkpoint(straight / "last.pt")["model"]
    b = load_checkpoint(interrupted / "last.pt")["model"]
    for key in a:
        torch.testing.assert_close(a[key], b[key], atol=1e-6, rtol=1e-5, msg=key)
    rows = (interrupted / "metrics.jsonl").read_text().splitlines()
    assert [json.loads(r)["epoch"] for r in rows] == [1, 2, 3]
    # resumed on the machine that began it: one machine trained it
    assert load_checkpoint(interrupted / "last.pt")["machines"] == [here()]


def here() -> dict:
    """What a one-process run on this machine's CPU records of it."""
    return {**machine_provenance("cpu"), "world_size": 1}


@pytest.mark.parametrize("recorded", [True, False])
def test_a_run_resumed_on_another_machine_records_both_in_order(ds, tmp_path, recorded):
    out = tmp_path / "run"
    first = train(config(ds, out, epochs=1))
    assert first.machines == (here(),)
    ckpt = load_checkpoint(out / "last.pt")
    assert ckpt["machines"] == [here()]
    elsewhere = {**here(), "cpu": "another CPU", "cpu_capability": "AVX2"}
    if recorded:
        ckpt["machines"] = [elsewhere]
    else:  # a checkpoint of a version that did not record its machine
        del ckpt["machines"]
    torch.save(ckpt, out / "last.pt")
    resumed = train(config(ds, out, epochs=2), resume=True)
    before = elsewhere if recorded else {}
    assert resumed.machines == (before, here())
    assert load_checkpoint(out / "last.pt")["machines"] == [before, here()]
    assert resumed.to_dict()["machines"] == [before, here()]


def test_a_finished_run_resumed_elsewhere_keeps_the_machine_that_trained_it(ds, tmp_path):
    out = tmp_path / "run"
    train(config(ds, out, epochs=1))
    ckpt = load_checkpoint(out / "last.pt")
    elsewhere = {**here(), "cpu": "another CPU"}
    ckpt["machines"] = [elsewhere]
    torch.save(ckpt, out / "last.pt")
    again = train(config(ds, out, epochs=1), resume=True)  # nothing left to train
    assert again.epochs_run == 1
    assert again.machines == (elsewhere,)
    assert load_checkpoint(out / "last.pt")["machines"] == [elsewhere]


def test_existing_run_is_not_overwritten_without_resume(ds, tmp_path):
    out = tmp_path / "run"
    train(config(ds, out, epochs=1))
    before = (out / "last.pt").read_bytes()
    with pytest.raises(FileExistsError, match="already holds a training run"):
        train(config(ds, out, epochs=1))
    assert (out / "last.pt").read_bytes() == before


def test_resume_with_different_options_is_refused(ds, tmp_path):
    out = tmp_path / "run"
    train(config(ds, out, epochs=1))
    with pytest.raises(ValueError, match=r"trained with other values of lr;"):
        train(config(ds, out, epochs=1, lr=0.1), resume=True)


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"fusion": "mid"}, "fusion must be one of"),
        ({"patch_size": (16, 16)}, "patch_size"),
        ({"fold": -1}, r"fold must be an integer >= 0 or 'all'"),
        ({"n_folds": 1}, r"n_folds must be an integer >= 2 or None"),
        ({"lr": 0.0}, "lr must be positive"),
        ({"epochs": 0}, "epochs must be a positive integer"),
    ],
)
def test_bad_configuration_raises(ds, tmp_path, kwargs, message):
    with pytest.raises(ValueError, match=message):
        config(ds, tmp_path, **kwargs)


def test_config_round_trips_through_a_dict(ds, tmp_path):
    c = config(ds, tmp_path, dims=[2, 3])
    assert TrainConfig.from_dict(c.to_dict()) == c
    with pytest.raises(ValueError, match=r"unknown configuration keys \['bogus'\]"):
        TrainConfig.from_dict({**c.to_dict(), "bogus": 1})


def test_torchrun_with_two_cpu_processes(ds, tmp_path):
    out = tmp_path / "ddp"
    fdseg = Path(sys.executable).parent / "fdseg"
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    cmd = [
        sys.executable,
        "-m",
        "torch.distributed.run",
        "--standalone",
        "--nproc-per-node",
        "2",
        "--no-python",
        str(fdseg),
        "train",
        str(ds),
        "--out",
        str(out),
        *tiny_args(epochs=2, iters=2),
        "--device",
        "cpu",
    ]
    proc = subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=300)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    rows = [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]
    assert [r["world_size"] for r in rows] == [2, 2]
    assert load_checkpoint(out / "last.pt")["epoch"] == 2
    # only rank 0 wrote: one report on stdout, no stray temp files
    assert proc.stdout.count("trained unet3d") == 1
    assert not list(out.glob(".*"))
