"""The trainer: stages a subclass overrides, selected by name (built-in or a plugin's),
saved with the run; the two built-in variants change only what they say, and a loss
that trains another rule is predicted by that rule."""

from __future__ import annotations

import json

import nibabel as nib
import numpy as np
import pytest
import torch
from builders import make_toy_dataset, plugin_trainers, tiny_args, tiny_config
from click.testing import CliRunner

from fdseg_cli.main import cli
from fdseg_core.errors import OptionError
from fdseg_core.train import TrainConfig, load_checkpoint, train
from fdseg_core.train.losses import DiceCELoss, DiceFocalLoss, SigmoidDiceLoss, focal_loss
from fdseg_core.train.trainer import (
    BUILTIN_TRAINERS,
    Trainer,
    TrainerDiceFocal,
    TrainerRAdam,
    get_trainer,
    list_trainers,
)

pytestmark = pytest.mark.slow  # trains, exports or launches processes


@pytest.fixture(scope="module")
def ds(tmp_path_factory):
    return make_toy_dataset(tmp_path_factory.mktemp("trainer") / "ds", n_cases=4, n_test=1)


def cfg(ds, out, **kw) -> TrainConfig:
    return tiny_config(ds, out, **({"epochs": 1, "iters_per_epoch": 2} | kw))


def test_the_built_in_trainers_are_selected_by_their_class_names():
    assert list(BUILTIN_TRAINERS) == ["Trainer", "TrainerRAdam", "TrainerDiceFocal"]
    assert get_trainer("TrainerRAdam") is TrainerRAdam
    assert get_trainer(TrainerDiceFocal) is TrainerDiceFocal
    with pytest.raises(OptionError, match=r"no trainer named 'Nope'; expected one of \['Trainer'"):
        get_trainer("Nope")


def test_a_subclass_is_named_after_its_class_unless_it_says_otherwise():
    class Mine(Trainer):
        pass

    class Same(Trainer):
        name = "Trainer"

    assert Mine.name == "Mine" and Same.name == "Trainer"


def test_radam_changes_the_optimiser_and_nothing_else(ds, tmp_path):
    config = cfg(ds, tmp_path, trainer="TrainerRAdam", weight_decay=1e-4)
    radam, default = TrainerRAdam(config), Trainer(config)
    params = [torch.nn.Parameter(torch.zeros(3))]
    opt = radam.build_optimizer(params)
    assert isinstance(opt, torch.optim.RAdam)
    assert opt.defaults["decoupled_weight_decay"] and opt.defaults["weight_decay"] == 1e-4
    assert type(radam.build_loss()) is type(default.build_loss())
    assert (
        radam.activation
        == default.activation
        == ("softmax" if config.loss == "dice_ce" else "sigmoid")
    )


def test_a_run_of_a_named_trainer_saves_the_name_and_resumes_only_with_it(ds, tmp_path):
    run = tmp_path / "run"
    result = train(cfg(ds, run, trainer="TrainerRAdam"))
    assert result.trainer == "TrainerRAdam" and "trainer TrainerRAdam" in result.report
    ckpt = load_checkpoint(run / "last.pt")
    assert ckpt["config"]["trainer"] == "TrainerRAdam"
    # RAdam's own optimiser state (its step count and moments) is what was saved
    state = next(iter(ckpt["optimizer"]["state"].values()))
    assert {"exp_avg", "exp_avg_sq", "step"} <= set(state)
    assert ckpt["optimizer"]["param_groups"][0]["decoupled_weight_decay"] is True
    with pytest.raises(OptionError, match=r"other values of trainer"):
        train(cfg(ds, run, epochs=2), resume=True)
    again = train(cfg(ds, run, epochs=2, trainer="TrainerRAdam"), resume=True)
    assert again.epochs_run == 2


def test_an_unknown_trainer_on_the_command_line_is_one_line_and_nothing_written(ds, tmp_path):
    out = tmp_path / "out"
    args = ["train", str(ds), "--out", str(out), "--trainer", "Nope", "--no-progress"]
    r = CliRunner().invoke(cli, args)
    assert r.exit_code == 2
    assert r.output.strip().splitlines()[-1].startswith("Error: --trainer: no trainer named 'Nope'")
    assert not out.exists()


def test_a_plugin_trainer_is_listed_and_trains_from_the_command_line(ds, tmp_path):
    steps = []

    class Counting(Trainer):
        def train_step(self, model, opt, image, label):
            steps.append(tuple(image.shape))
            return super().train_step(model, opt, image, label)

    with plugin_trainers(Counting):
        assert list_trainers()["Counting"] is Counting
        r = CliRunner().invoke(cli, ["trainers"])
        assert r.exit_code == 0 and "Counting" in r.output and "TrainerRAdam" in r.output
        out = tmp_path / "run"
        args = ["train", str(ds), "--out", str(out), "--trainer", "Counting"]
        r = CliRunner().invoke(cli, [*args, *tiny_args(iters=2, fusion=None, network=False)])
    assert r.exit_code == 0, r.output
    assert (
        len(steps) == 2 and json.loads((out / "config.json").read_text())["trainer"] == "Counting"
    )
    assert "Counting" not in list_trainers()  # gone with its plugin


def test_a_plugin_trainer_may_not_take_a_built_in_name(caplog):
    class Impostor(Trainer):
        name = "TrainerRAdam"

    with plugin_trainers(Impostor):
        assert list_trainers()["TrainerRAdam"] is TrainerRAdam
    assert "takes a name in use" in caplog.text


def test_the_focal_loss_is_the_cross_entropy_at_gamma_0_and_its_closed_form_at_2():
    g = torch.Generator().manual_seed(0)
    logits = torch.randn(2, 3, 4, 4, 2, generator=g, dtype=torch.float64)
    target = torch.randint(0, 3, (2, 4, 4, 2), generator=g)
    ce = torch.nn.functional.cross_entropy(logits, target)
    torch.testing.assert_close(
        focal_loss(logits, target, gamma=0.0).double(), ce, rtol=1e-6, atol=0
    )
    p = logits.softmax(1).gather(1, target.unsqueeze(1))
    expected = (-((1 - p) ** 2) * p.log()).mean()
    torch.testing.assert_close(focal_loss(logits, target).double(), expected, rtol=1e-6, atol=0)
    # at gamma 0, Dice + focal is nnU-Net's Dice + cross-entropy
    torch.testing.assert_close(
        DiceFocalLoss(gamma=0.0)(logits, target), DiceCELoss()(logits, target), rtol=1e-6, atol=0
    )


def test_the_focal_term_agrees_with_monai_up_to_its_mean_over_classes():
    monai_losses = pytest.importorskip("monai.losses")
    g = torch.Generator().manual_seed(1)
    logits = torch.randn(2, 3, 5, 4, 3, generator=g)
    target = torch.randint(0, 3, (2, 5, 4, 3), generator=g)
    monai = monai_losses.FocalLoss(gamma=2.0, use_softmax=True, to_onehot_y=True)
    # MONAI averages over the one-hot class axis too: K times smaller
    torch.testing.assert_close(
        focal_loss(logits, target), 3 * monai(logits, target.unsqueeze(1)), rtol=1e-5, atol=1e-7
    )


def _constant_logits(ckpt: dict, logits: list[float]) -> dict:
    """The checkpoint's network (``unet3d``, no fusion) made to output ``logits`` at every
    voxel: every weight zero, the last norm's bias 1 (its features are then 1 after the
    activation), the 1 x 1 x 1 head's first input column ``logits``."""
    model = {
        k: torch.zeros_like(v) if v.is_floating_point() else v for k, v in ckpt["model"].items()
    }
    model["backbone.final.1.0.bias"] = torch.ones_like(model["backbone.final.1.0.bias"])
    model["backbone.head.weight"][:, 0, 0, 0, 0] = torch.tensor(logits)
    return {**ckpt, "model": model}


@pytest.mark.parametrize(("activation", "expected"), [("softmax", 0), ("sigmoid", 1)])
def test_a_dice_focal_run_is_predicted_by_the_softmax_rule(ds, tmp_path, activation, expected):
    """Logits (2, 1, 0.5) everywhere: the softmax rule says background (0), the sigmoid
    rule says class 1 (its probability 0.73 >= 0.5). The run trained with the sigmoid
    Dice configured but the Dice + focal trainer: its checkpoint says softmax, and
    `fdseg predict` follows the checkpoint (the sigmoid row: the same network, its
    checkpoint edited to say sigmoid, predicts otherwise)."""
    run = tmp_path / "run"
    result = train(
        cfg(
            ds,
            run,
            loss="sigmoid_dice",
            trainer="TrainerDiceFocal",
            backbone="unet3d",
            fusion="none",
        )
    )
    assert result.activation == "softmax"
    ckpt = load_checkpoint(run / "best.pt")
    assert ckpt["data"]["activation"] == "softmax"
    assert isinstance(TrainerDiceFocal(cfg(ds, run)).build_loss(), DiceFocalLoss)
    assert isinstance(Trainer(cfg(ds, run, loss="sigmoid_dice")).build_loss(), SigmoidDiceLoss)
    edited = _constant_logits(ckpt, [2.0, 1.0, 0.5])
    edited["data"] = {**edited["data"], "activation": activation}
    torch.save(edited, tmp_path / "known.pt")
    pred = tmp_path / "pred"
    r = CliRunner().invoke(
        cli, ["predict", str(tmp_path / "known.pt"), str(ds), "--out", str(pred), "--no-progress"]
    )
    assert r.exit_code == 0, r.output
    files = sorted(pred.glob("*.nii.gz"))
    assert files
    for f in files:
        labels = np.asarray(nib.load(f).dataobj)
        assert (labels == expected).all(), f
