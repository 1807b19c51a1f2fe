"""The training stages one by one (data, shape, optimisation, step, validation), the paper
recipe, whole-volume training, pipeline bands and early stopping."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest
import torch
from builders import make_toy_dataset, tiny_config, trainer_validating
from click.testing import CliRunner

from fdseg_cli.main import cli
from fdseg_core.data import PatchDataset, Preprocessor, VolumeBands
from fdseg_core.train import (
    RECIPES,
    SigmoidDiceLoss,
    TrainConfig,
    apply_recipe,
    load_checkpoint,
    load_model,
    resolve_fields,
    train,
)
from fdseg_core.train.checkpoint import build_model
from fdseg_core.train.setup import (
    input_shape,
    prepare_data,
    steps_per_epoch,
)
from fdseg_core.train.steps import train_step, validate
from fdseg_core.train.trainer import Trainer


@pytest.fixture(scope="module")
def ds(tmp_path_factory):
    return make_toy_dataset(tmp_path_factory.mktemp("data") / "ds", n_cases=4, n_test=1)


cfg = tiny_config


def test_prepare_data_checks_and_preprocesses_without_writing(ds, tmp_path):
    data = prepare_data(cfg(ds, tmp_path / "run"), tmp_path / "run")
    assert not (tmp_path / "run").exists()  # nothing written by this stage
    assert len(data.train_vols) == 2 and len(data.val_vols) == 2
    assert data.new_splits is not None and len(data.new_splits) == 2
    assert data.num_classes == 3 and data.in_channels == 1
    assert data.class_names == {0: "background", 1: "blob", 2: "ball"}
    assert data.provenance["package"] == "fdseg"


def test_input_shape_of_whole_volumes_is_the_largest_extent_rounded_to_the_divisor(ds, tmp_path):
    data = prepare_data(cfg(ds, tmp_path, patch_size="full"), tmp_path)
    assert {v.image.shape[1:] for v in data.train_vols} == {(24, 24, 16)}
    assert input_shape(cfg(ds, tmp_path, patch_size="full"), data.train_vols, 8) == (24, 24, 16)
    assert input_shape(cfg(ds, tmp_path, patch_size="full"), data.train_vols, 5) == (25, 25, 20)
    assert input_shape(cfg(ds, tmp_path), data.train_vols, 8) == (16, 16, 8)


def test_steps_per_epoch_is_one_pass_when_not_given(ds, tmp_path):
    assert steps_per_epoch(cfg(ds, tmp_path, iters_per_epoch=None), 8, 1) == 4
    assert steps_per_epoch(cfg(ds, tmp_path, iters_per_epoch=None, batch_size=3), 8, 1) == 3
    assert steps_per_epoch(cfg(ds, tmp_path, iters_per_epoch=None), 8, 2) == 2
    assert steps_per_epoch(cfg(ds, tmp_path, iters_per_epoch=7), 8, 1) == 7


@pytest.mark.parametrize("name", ["adamw", "adam", "sgd"])
def test_one_step_updates_the_weights_and_steps_the_schedule(ds, tmp_path, name):
    config = cfg(ds, tmp_path, optimizer=name, schedule="poly", epochs=2)
    model = build_model(config.to_dict(), 1, 3)
    opt = Trainer(config).build_optimisation(model, total_steps=2, device=torch.device("cpu"))
    assert type(opt.optimizer).__name__.lower() == name
    before = [p.detach().clone() for p in model.parameters()]
    x, y = torch.randn(2, 1, 16, 16, 8), torch.randint(0, 3, (2, 16, 16, 8))
    loss = train_step(model, opt, x, y)
    assert loss.ndim == 0 and not loss.requires_grad and math.isfinite(float(loss))
    assert any(not torch.equal(a, b) for a, b in zip(model.parameters(), before, strict=True))
    assert opt.optimizer.param_groups[0]["lr"] < config.lr  # poly stepped once


def test_validate_gives_one_dice_per_class(ds, tmp_path):
    from fdseg_core.train.distributed import DistInfo

    data = prepare_data(cfg(ds, tmp_path), tmp_path)
    model = build_model(cfg(ds, tmp_path).to_dict(), 1, 3)
    dice = validate(
        model, data.val_vols, 3, (16, 16, 8), overlap=0.5, device=torch.device("cpu"),
        dist_info=DistInfo(),
    )  # fmt: skip
    assert dice.shape == (3,) and np.all((dice >= 0) & (dice <= 1))


# ---- the paper's loss ----


def test_sigmoid_dice_loss_equals_its_closed_form():
    torch.manual_seed(0)
    logits = torch.randn(2, 3, 5, 4, 3, dtype=torch.float64)
    target = torch.randint(0, 3, (2, 5, 4, 3))
    p = torch.sigmoid(logits)
    dices = []
    for c in range(3):
        t = (target == c).double()
        pc = p[:, c]
        dices.append(2 * (pc * t).sum() / ((pc * pc).sum() + (t * t).sum()))
    want = 1 - (dices[1] + dices[2]) / 2
    torch.testing.assert_close(SigmoidDiceLoss()(logits, target), want.float())
    perfect = torch.where(torch.nn.functional.one_hot(target, 3).movedim(-1, 1) > 0, 50.0, -50.0)
    assert float(SigmoidDiceLoss()(perfect, target)) < 1e-6
    with pytest.raises(ValueError, match="do not match"):
        SigmoidDiceLoss()(logits, target[:, :4])


# ---- recipes ----


def test_paper_recipe_sets_its_values_and_explicit_options_win():
    merged, applied = apply_recipe("paper", {"lr": 0.01, "epochs": 5}, explicit={"epochs"})
    assert merged["recipe"] == "paper" and merged["epochs"] == 5 and "epochs" not in applied
    assert merged["lr"] == 1e-3 and applied["lr"] == 1e-3  # lr was a default, not given
    assert merged["backbone"] == "paper_unet3d" and merged["patch_size"] == "full"
    assert merged["loss"] == "sigmoid_dice" and merged["optimizer"] == "adam"
    # the paper recipe keeps its early fusion over fdseg's default
    assert merged["fusion"] == "early"
    assert TrainConfig(dataset="d", out="o").fusion != "early"
    given, _ = apply_recipe("paper", {"fusion": "late"}, explicit={"fusion"})
    assert given["fusion"] == "late"
    with pytest.raises(ValueError, match="unknown recipe 'nnunet'"):
        apply_recipe("nnunet", {})
    # the default recipe sets only the sizes it was measured with (so that they win over a
    # plan), and they are TrainConfig's defaults
    default = TrainConfig(dataset="d", out="o")
    assert RECIPES["default"] == {"patch_size": (48, 48, 32), "batch_size": 2}
    assert all(getattr(default, k) == v for k, v in RECIPES["default"].items())


def test_the_nnunet_like_recipe_gives_the_earlier_default_back():
    fields, applied = resolve_fields({}, recipe="nnunet_like")
    config = TrainConfig(dataset="d", out="o", **fields)
    assert (config.backbone, config.fusion, config.loss) == ("unet3d", "late", "dice_ce")
    assert (config.optimizer, config.schedule, config.weight_decay) == ("adamw", "poly", 1e-5)
    assert config.grad_clip == 12.0 and config.augment is True
    assert "patch_size" not in applied  # sizes stay planned, as they were
    given, applied = resolve_fields({"fusion": "none"}, recipe="nnunet_like")
    assert given["fusion"] == "none" and "fusion" not in applied


def test_cli_paper_recipe_builds_the_papers_late_model_and_prints_every_value(ds, tmp_path):
    run = tmp_path / "run"
    args = ["train", str(ds), "--out", str(run), "--recipe", "paper", "--fusion", "late"]
    args += ["--epochs", "1", "--folds", "2", "--no-progress"]
    r = CliRunner().invoke(cli, args)
    assert r.exit_code == 0, r.output
    config = json.loads((run / "config.json").read_text())
    for key, value in RECIPES["paper"].items():
        if key not in ("epochs", "fusion"):
            assert f"  {key} = {value!r}" in r.output
            assert config[key] == (list(value) if isinstance(value, tuple) else value), key
    assert "epochs = 1   (overridden by your option)" in r.output
    assert "fusion = 'late'   (overridden by your option)" in r.output
    assert config["recipe"] == "paper" and config["epochs"] == 1 and config["fusion"] == "late"
    model, meta = load_model(run / "best.pt")
    assert type(model.backbone).__name__ == "PaperUNet3D" and model.fused_at == "decoder"
    assert model.layout == "reference"
    assert meta.patch_size == (24, 24, 16)  # the whole volume, divisible by 4


# ---- whole volumes ----


def test_whole_volume_samples_visit_every_volume_once_per_epoch(ds, tmp_path):
    data = prepare_data(cfg(ds, tmp_path, n_folds=None, fold="all"), tmp_path)
    samples = PatchDataset(
        data.train_vols, patch_size=(32, 24, 16), samples_per_epoch=4, augment=False,
        whole_volumes=True,
    )  # fmt: skip
    seen = []
    for i in range(4):
        image, label = samples[i]
        assert image.shape == (1, 32, 24, 16)
        assert torch.all(image[:, :4] == 0) and torch.all(image[:, -4:] == 0)  # centred padding
        seen.append(int(label.sum()))
    expected = sorted(int(v.label.sum()) for v in data.train_vols)
    assert sorted(seen) == expected


def test_whole_volume_training_and_prediction_in_one_pass(ds, tmp_path, monkeypatch):
    run = tmp_path / "run"
    result = train(cfg(ds, run, patch_size="full", fusion="early", epochs=2))
    assert result.best_epoch >= 1
    model, meta = load_model(run / "best.pt")
    assert meta.patch_size == (24, 24, 16)
    import fdseg_core.infer.sliding_window as sw

    calls = []
    monkeypatch.setattr(sw, "gaussian_importance", lambda *a, **k: calls.append(a))
    from fdseg_core.infer import gather_inputs, predict_cases

    written = predict_cases(
        model, meta, gather_inputs([ds / "imagesTs"], 1), tmp_path / "pred", progress=False
    )
    assert len(written) == 1 and not calls  # one window: no tiling weights


# ---- pipeline bands ----


def test_pipeline_bands_are_the_whole_volumes_split(ds):
    from fdseg_core import band_split
    from fdseg_core.data import load_dataset

    case = load_dataset(ds).training[0]
    plain = Preprocessor(("zscore",))(case)
    split = Preprocessor(("zscore",), bands=VolumeBands(0.25))(case)
    assert split.image.shape == (2, 24, 24, 16)
    x = torch.from_numpy(plain.image)[None].double()
    _, high = band_split(x, 0.25)
    np.testing.assert_allclose(split.image[1], high[0, 0].numpy(), atol=1e-5)
    np.testing.assert_allclose(split.image[0] + split.image[1], plain.image[0], atol=1e-5)


def test_pipeline_bands_train_predict_and_need_the_centred_layout(ds, tmp_path):
    run = tmp_path / "run"
    train(cfg(ds, run, bands="volume", fusion="late", epochs=1))
    model, meta = load_model(run / "last.pt")
    assert meta.bands == {"beta": 0.1, "dims": [2, 3]} and model.input_bands == "volume"
    prep = meta.preprocessor()
    assert prep.bands == VolumeBands(0.1, (2, 3))
    from fdseg_core.infer import gather_inputs, predict_cases

    written = predict_cases(
        model, meta, gather_inputs([ds / "imagesTs"], 1), tmp_path / "pred", progress=False
    )
    assert len(written) == 1
    with pytest.raises(ValueError, match="--bands volume needs --layout centered"):
        train(cfg(ds, tmp_path / "ref", bands="volume", fusion="late", layout="reference"))
    with pytest.raises(ValueError, match="the baseline has none"):
        cfg(ds, tmp_path, bands="volume", fusion="none")


# ---- early stopping ----


def test_early_stopping_on_a_plateau_keeps_its_state_across_resume(ds, tmp_path):
    scripted = trainer_validating([0.35, 0.495, 0.70, 0.9])  # mean foreground Dice per epoch
    run = tmp_path / "run"
    # patience 1, min delta 0.2: epoch 2 (0.495) does not beat 0.35 + 0.2 -> stop
    result = train(
        cfg(ds, run, epochs=10, early_stop_patience=1, early_stop_min_delta=0.2), trainer=scripted
    )
    assert result.stopped_early and result.epochs_run == 2 and result.best_epoch == 1
    ckpt = load_checkpoint(run / "last.pt")
    assert ckpt["stopped_early"] and ckpt["stale_validations"] == 1
    assert "stopped early" in result.report
    again = train(
        cfg(ds, run, epochs=10, early_stop_patience=1, early_stop_min_delta=0.2), resume=True
    )
    assert again.epochs_run == 2  # a stopped run stays stopped


def test_early_stopping_waits_for_the_minimum_epochs(ds, tmp_path):
    sags = trainer_validating([0.5, 0.3, 0.3, 0.3, 0.9, 0.9])  # takes off at epoch 5
    config = cfg(ds, tmp_path / "run", epochs=6, early_stop_patience=2, early_stop_min_epochs=5)
    result = train(config, trainer=sags)
    # without the minimum it would stop at epoch 3; with it, epoch 5 improves
    assert result.best_epoch == 5 and result.epochs_run == 6
    assert not result.stopped_early


def test_version_1_checkpoints_load_with_the_generic_fusion(ds, tmp_path):
    run = tmp_path / "run"
    train(cfg(ds, run, fusion="late", fusion_at="generic"))
    ckpt = load_checkpoint(run / "last.pt")
    ckpt["format_version"] = 1
    del ckpt["config"]["fusion_at"]
    torch.save(ckpt, run / "old.pt")
    model, _ = load_model(run / "old.pt")
    assert model.fused_at == "output head"


def test_channels_last_steps_match_the_contiguous_ones(ds, tmp_path):
    config = cfg(ds, tmp_path, optimizer="sgd", fusion="early", backbone="paper_unet3d")
    config = config.replace(backbone_options={})
    x, y = torch.randn(2, 1, 16, 16, 8), torch.randint(0, 3, (2, 16, 16, 8))
    losses, weights = [], []
    for channels_last in (False, True):
        torch.manual_seed(0)
        model = build_model(config.to_dict(), 1, 3).eval()  # eval: no dropout
        if channels_last:
            model = model.to(memory_format=torch.channels_last_3d)
        opt = Trainer(config).build_optimisation(model, total_steps=2, device=torch.device("cpu"))
        losses.append([float(train_step(model, opt, x, y, channels_last=channels_last))
                       for _ in range(2)])  # fmt: skip
        weights.append(model.backbone.conv3d_c1_1.weight.detach().contiguous())
    np.testing.assert_allclose(losses[0], losses[1], rtol=1e-5)
    torch.testing.assert_close(weights[0], weights[1], atol=1e-5, rtol=1e-4)


@pytest.mark.slow
def test_compiled_training_runs_and_writes_an_eager_loadable_checkpoint(ds, tmp_path):
    run = tmp_path / "run"
    result = train(cfg(ds, run, compile=True, fusion="late", epochs=1, iters_per_epoch=2))
    assert result.best_epoch == 1
    model, _ = load_model(run / "best.pt")  # plain module keys, no compile wrapper
    assert model(torch.randn(1, 1, 16, 16, 8)).shape == (1, 3, 16, 16, 8)
    with pytest.raises(ValueError, match="compile_mode must be one of"):
        cfg(ds, tmp_path, compile=True, compile_mode="fastest")


@pytest.mark.parametrize(
    ("loss", "label"), [("dice_ce", "Dice + CE loss"), ("sigmoid_dice", "sigmoid Dice loss")]
)
def test_curves_name_the_loss_that_was_trained(tmp_path, monkeypatch, loss, label):
    import matplotlib.figure

    from fdseg_core.train.logs import plot_curves

    seen = {}
    real_savefig = matplotlib.figure.Figure.savefig

    def record(fig, *args, **kwargs):
        seen["ylabels"] = [ax.get_ylabel() for ax in fig.axes]
        return real_savefig(fig, *args, **kwargs)

    monkeypatch.setattr(matplotlib.figure.Figure, "savefig", record)
    rows = [{"epoch": e, "train_loss": 1.0 / e, "val_dice_a": 0.1 * e} for e in (1, 2, 3)]
    plot_curves(rows, tmp_path / "curves.png", loss=loss)
    assert seen["ylabels"] == [label, "validation Dice"]
    assert (tmp_path / "curves.png").stat().st_size > 0


def test_many_classes_stay_readable_in_the_summary_the_epoch_lines_and_the_curves(tmp_path):
    """Twelve classes: the summary gives the mean, the median and the five worst (every
    class is in metrics.csv), each epoch line the worst only, the curves the mean and the
    worst, and no third-party warning reaches the output."""
    import warnings

    import nibabel as nib

    from fdseg_core.train.logs import plot_curves

    root = tmp_path / "many"
    for sub in ("imagesTr", "labelsTr"):
        (root / sub).mkdir(parents=True)
    rng = np.random.default_rng(0)
    for i in range(4):
        image = rng.normal(0, 1, (24, 24, 16)).astype(np.float32)
        label = np.zeros((24, 24, 16), dtype=np.uint8)
        for c in range(1, 13):  # twelve small cubes, one per class
            x, y = (c - 1) % 4 * 6, (c - 1) // 4 * 8
            label[x : x + 4, y : y + 4, 4:10] = c
            image[label == c] += c
        nib.save(
            nib.Nifti1Image(image, np.eye(4)), str(root / "imagesTr" / f"m_{i:03d}_0000.nii.gz")
        )
        nib.save(nib.Nifti1Image(label, np.eye(4)), str(root / "labelsTr" / f"m_{i:03d}.nii.gz"))
    labels = {"background": 0, **{f"class_{c:02d}": c for c in range(1, 13)}}
    (root / "dataset.json").write_text(
        json.dumps(
            {
                "channel_names": {"0": "MR"},
                "labels": labels,
                "numTraining": 4,
                "file_ending": ".nii.gz",
            }
        )
    )
    args = ["train", str(root), "--out", str(tmp_path / "run"), "--epochs", "1"]
    args += ["--iters-per-epoch", "1", "--patch-size", "16", "16", "8", "--folds", "2"]
    args += ["--no-progress"]
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        r = CliRunner().invoke(cli, args)
    assert r.exit_code == 0, r.output
    assert "validation Dice over 12 classes: mean" in r.output
    assert sum(line.strip().startswith("worst ") for line in r.output.splitlines()) == 5
    epoch = next(line for line in r.output.splitlines() if line.startswith("epoch 1/1"))
    assert "Dice worst " in epoch and epoch.count("class_") == 5
    assert not [w for w in caught if "matplotlib" in str(w.filename)]
    header = (tmp_path / "run" / "metrics.csv").read_text().splitlines()[0]
    assert all(f"val_dice_class_{c:02d}" in header for c in range(1, 13))
    # the curves' legend: the mean and the five worst
    rows = [{"epoch": 1, "train_loss": 0.5, "val_dice_mean": 0.5}]
    rows[0] |= {f"val_dice_class_{c:02d}": c / 20 for c in range(1, 13)}
    fig = plot_curves(rows, tmp_path / "curves.png")
    legend = fig.get_axes()[1].get_legend()
    assert [t.get_text() for t in legend.get_texts()] == ["mean"] + [
        f"class_{c:02d}" for c in range(1, 6)
    ]
