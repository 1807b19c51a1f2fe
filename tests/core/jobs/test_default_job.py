"""The default main job: a cached phantom dataset and CPU-sized defaults."""

from __future__ import annotations

from types import SimpleNamespace

import pytest
from click.testing import CliRunner

import fdseg_core.train as train_pkg
from fdseg_cli.main import cli
from fdseg_core.data import check_cases, load_dataset
from fdseg_core.jobs import default, engine
from fdseg_core.train import TrainConfig


def test_default_dataset_is_generated_once_into_the_cache(tmp_path, monkeypatch):
    monkeypatch.setenv("FDSEG_CACHE", str(tmp_path / "cache"))
    monkeypatch.setattr(
        default,
        "PHANTOM_DATASET",
        {
            **default.PHANTOM_DATASET,
            "n_train": 2,
            "n_test": 1,
            "shape": (48, 48, 40),
            "spacing": 3.4,
        },
    )
    root = default.ensure_default_dataset(progress=False)
    info = load_dataset(root)
    check_cases(info)
    assert len(info.training) == 2 and info.channel_names == ("QSM",)
    stamp = (root / "dataset.json").stat().st_mtime_ns
    assert default.ensure_default_dataset(progress=False) == root
    assert (root / "dataset.json").stat().st_mtime_ns == stamp
    assert [p.name for p in root.parent.iterdir()] == [root.name]  # no temp folder left


def test_interrupted_generation_leaves_no_dataset(tmp_path, monkeypatch):
    monkeypatch.setenv("FDSEG_CACHE", str(tmp_path / "cache"))
    import fdseg_core.phantom as phantom

    def boom(*args, **kwargs):
        raise KeyboardInterrupt

    monkeypatch.setattr(phantom, "write_phantom_dataset", boom)
    with pytest.raises(KeyboardInterrupt):
        default.ensure_default_dataset(progress=False)
    assert list((tmp_path / "cache").iterdir()) == []


def test_train_without_dataset_uses_the_phantom_and_its_defaults(tmp_path, monkeypatch):
    seen = {}
    monkeypatch.setattr(engine, "ensure_default_dataset", lambda progress: tmp_path / "ds")
    (tmp_path / "ds").mkdir()

    def fake_train(config, resume=False, **options):
        seen["config"] = config
        return SimpleNamespace(report="ok", is_main=True)  # what the command line reads

    monkeypatch.setattr(train_pkg, "train", fake_train)
    monkeypatch.chdir(tmp_path)
    r = CliRunner().invoke(cli, ["train", "--epochs", "3"])
    assert r.exit_code == 0, r.output
    c = seen["config"]
    assert c.dataset == str(tmp_path / "ds")
    # the default recipe (issue 27's ablation): the paper's network and loss; the default
    # fusion (tests/core/train/test_stages.py holds it to issue 27's part 3)
    assert (c.backbone, c.loss, c.augment) == ("paper_unet3d", "sigmoid_dice", False)
    assert c.fusion == TrainConfig(dataset="d", out="o").fusion
    assert c.epochs == 3  # the command line wins
    assert c.iters_per_epoch == default.PHANTOM_TRAINING["iters_per_epoch"]
    assert c.patch_size == default.PHANTOM_TRAINING["patch_size"]
