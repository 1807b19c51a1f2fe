"""Every path that reads a model's outputs follows the loss it was trained with.

A sigmoid-trained model's background channel gets no gradient, so its head weights for
channel 0 are arbitrary. Changing them must change no label: in validation, in the
experiment's test evaluation, in ``fdseg predict`` from a checkpoint (with TTA and
saved probabilities) and from an exported ONNX file. Softmax-trained models keep the
argmax of the softmax.
"""

from __future__ import annotations

import itertools

import nibabel as nib
import numpy as np
import pytest
import torch
from builders import make_toy_dataset
from click.testing import CliRunner

from fdseg_cli.main import cli
from fdseg_core.data import load_dataset
from fdseg_core.experiment.protocol import evaluate_run
from fdseg_core.infer.sliding_window import gaussian_importance, window_starts
from fdseg_core.train import TrainConfig, load_checkpoint, load_model, train
from fdseg_core.train.distributed import DistInfo
from fdseg_core.train.steps import validate

pytestmark = pytest.mark.slow  # trains, exports or launches processes

SMALL = {"base_filters": 4, "levels": 3}


def _heads(model: torch.nn.Module, num_classes: int) -> list[torch.nn.Conv3d]:
    """The output convolutions: the head and the deep-supervision heads that the
    backbone adds into its logits (``unet3d`` sums them, as the paper's UNet3D)."""
    heads = [
        m
        for m in model.modules()
        if isinstance(m, torch.nn.Conv3d) and m.out_channels == num_classes
    ]
    assert heads
    return heads


def _perturb_channel0(model: torch.nn.Module, num_classes: int, seed: int) -> None:
    """Redraw every head's channel-0 weights (and bias, where it has one) at a large
    scale: only the background logit changes."""
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for head in _heads(model, num_classes):
            head.weight[0] = torch.randn(head.weight[0].shape, generator=g) * 10
            if head.bias is not None:
                head.bias[0] = float(torch.randn((), generator=g)) * 10


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    """A sigmoid-trained and a softmax-trained checkpoint of a small unet3d, and one of
    fdseg train's defaults (sigmoid-trained), each with two perturbed twins (channel-0
    head weights redrawn with two seeds)."""
    root = tmp_path_factory.mktemp("act")
    ds = make_toy_dataset(root / "ds", n_cases=4, n_test=2)
    out = {}
    sizes = dict(epochs=6, iters_per_epoch=5, val_every=6, n_folds=2, progress=False, seed=1)
    for name in ("sigmoid_dice", "dice_ce", "default"):
        run = root / name
        if name == "default":  # fdseg train's defaults (paper_unet3d, sigmoid Dice, no fusion)
            cfg = TrainConfig(dataset=str(ds), out=str(run), patch_size=(16, 16, 16), **sizes)
        else:
            cfg = TrainConfig(
                dataset=str(ds),
                out=str(run),
                backbone="unet3d",
                loss=name,
                fusion="early",
                patch_size=(16, 16, 8),
                lr=3e-3,
                backbone_options=SMALL,
                **sizes,
            )
        train(cfg)
        ckpt = load_checkpoint(run / "last.pt")
        for seed, twin_name in ((7, "plus"), (8, "minus")):
            twin, _ = load_model(run / "last.pt")
            _perturb_channel0(twin, ckpt["data"]["num_classes"], seed)
            torch.save({**ckpt, "model": twin.state_dict()}, run / f"{twin_name}.pt")
        out[name] = {"dir": run, "ds": ds}
    return out


def _validation_dice(path, ds, activation):
    model, meta = load_model(path)
    info = load_dataset(ds)
    prep = meta.preprocessor()
    vols = [prep(c) for c in info.test]
    return validate(
        model,
        vols,
        meta.num_classes,
        meta.patch_size,
        overlap=0.5,
        device=torch.device("cpu"),
        dist_info=DistInfo(),
        activation=activation,
    )


def test_checkpoints_record_the_activation_of_their_loss(runs):
    for loss, activation in (
        ("sigmoid_dice", "sigmoid"),
        ("dice_ce", "softmax"),
        ("default", "sigmoid"),
    ):
        ckpt = load_checkpoint(runs[loss]["dir"] / "last.pt")
        assert ckpt["data"]["activation"] == activation
        assert load_model(runs[loss]["dir"] / "last.pt")[1].activation == activation


def test_a_checkpoint_without_an_activation_takes_it_from_its_loss(runs, tmp_path):
    ckpt = load_checkpoint(runs["sigmoid_dice"]["dir"] / "last.pt")
    del ckpt["data"]["activation"]
    torch.save(ckpt, tmp_path / "old.pt")
    assert load_model(tmp_path / "old.pt")[1].activation == "sigmoid"


@pytest.mark.parametrize("sig", ["sigmoid_dice", "default"])
def test_validation_of_a_sigmoid_model_ignores_channel0(runs, sig):
    run, ds = runs[sig]["dir"], runs[sig]["ds"]
    dice = {n: _validation_dice(run / f"{n}.pt", ds, "sigmoid") for n in ("last", "plus", "minus")}
    np.testing.assert_array_equal(dice["plus"], dice["last"])
    np.testing.assert_array_equal(dice["minus"], dice["last"])
    assert np.nanmean(dice["last"][1:]) > 0.05  # the labels hold foreground
    # the softmax rule reads the perturbed channel
    soft = _validation_dice(run / "plus.pt", ds, "softmax")
    assert not np.array_equal(soft, dice["last"])


@pytest.mark.parametrize("sig", ["sigmoid_dice", "default"])
def test_experiment_evaluation_of_a_sigmoid_model_ignores_channel0(runs, sig):
    run, ds = runs[sig]["dir"], runs[sig]["ds"]
    cases = load_dataset(ds).test
    rows = {n: evaluate_run(run / f"{n}.pt", cases, torch.device("cpu")) for n in ("last", "plus")}
    assert rows["plus"] == rows["last"]
    assert any(v > 0.05 for case in rows["last"] for v in case.dice.values())


def _predict(args, out):
    r = CliRunner().invoke(cli, [*args, "--out", str(out), "--no-progress"])
    assert r.exit_code == 0, r.output
    return {
        p.name: np.asarray(nib.load(str(p)).dataobj)
        for p in sorted(out.glob("*.nii.gz"))
        if "probabilities" not in p.name
    }


def _same_labels(a: dict, b: dict) -> bool:
    return a.keys() == b.keys() and all(np.array_equal(a[k], b[k]) for k in a)


def _nearly_same_labels(a: dict, b: dict) -> bool:
    """Two runtimes' label maps: logits that differ by float32 rounding (~1e-6) may flip a
    voxel that sits on the decision boundary, and which ones depends on the CPU."""
    return a.keys() == b.keys() and all((a[k] != b[k]).mean() < 1e-3 for k in a)


@pytest.mark.parametrize("sig", ["sigmoid_dice", "default"])
@pytest.mark.parametrize("extra", [[], ["--tta", "--save-probabilities"]], ids=["plain", "tta"])
def test_predict_from_a_sigmoid_checkpoint_ignores_channel0(runs, tmp_path, extra, sig):
    run, ds = runs[sig]["dir"], runs[sig]["ds"]
    got = {
        n: _predict(["predict", str(run / f"{n}.pt"), str(ds), *extra], tmp_path / n)
        for n in ("last", "plus", "minus")
    }
    assert _same_labels(got["plus"], got["last"]) and _same_labels(got["minus"], got["last"])
    assert any(v.any() for v in got["last"].values())
    if extra:  # the foreground probabilities too
        a, b = (sorted((tmp_path / n).glob("*_probabilities.nii.gz")) for n in ("last", "plus"))
        assert [p.name for p in a] == [p.name for p in b] and a
        for pa, pb in zip(a, b, strict=True):
            np.testing.assert_array_equal(nib.load(pa).get_fdata(), nib.load(pb).get_fdata())


def _softmax_blend_labels(model, image: torch.Tensor, patch) -> np.ndarray:
    """The argmax of Gaussian-blended window softmaxes, restated window by window."""
    spatial = image.shape[2:]
    weight = gaussian_importance(patch).double()
    acc = norm = None
    for start in itertools.product(
        *[window_starts(s, p, 0.5) for s, p in zip(spatial, patch, strict=True)]
    ):
        region = tuple(slice(a, a + p) for a, p in zip(start, patch, strict=True))
        with torch.no_grad():
            probs = model(image[(slice(None), slice(None), *region)]).double().softmax(1)[0]
        if acc is None:
            acc = torch.zeros((probs.shape[0], *spatial), dtype=torch.float64)
            norm = torch.zeros(spatial, dtype=torch.float64)
        acc[(slice(None), *region)] += probs * weight
        norm[region] += weight
    return (acc / norm).argmax(0).numpy()


def test_predict_from_a_softmax_checkpoint_is_the_softmax_argmax(runs, tmp_path):
    """Unchanged by the sigmoid rule: labels are the argmax of the blended softmax,
    computed here independently, and channel 0 matters."""
    run, ds = runs["dice_ce"]["dir"], runs["dice_ce"]["ds"]
    got = _predict(["predict", str(run / "last.pt"), str(ds)], tmp_path / "last")
    model, meta = load_model(run / "last.pt")
    prep = meta.preprocessor()
    for case in load_dataset(ds).test:
        image = torch.from_numpy(prep(case, with_label=False).image)[None]
        want = _softmax_blend_labels(model, image, meta.patch_size)
        label = got[f"{case.case_id}.nii.gz"]
        # float32 blending vs float64 here: a tie may flip a voxel on the boundary
        assert (label != want).mean() < 1e-3
        assert len(np.unique(want)) > 1
    plus = _predict(["predict", str(run / "plus.pt"), str(ds)], tmp_path / "plus")
    assert not _same_labels(plus, got)


@pytest.mark.parametrize("sig", ["sigmoid_dice", "default"])
def test_predict_with_onnx_of_a_sigmoid_model_ignores_channel0(runs, sig, tmp_path):
    pytest.importorskip("onnx", reason="ONNX export is the onnx extra")
    pytest.importorskip("onnxscript", reason="ONNX export is the onnx extra")
    pytest.importorskip("onnxruntime", reason="ONNX Runtime is the onnx extra")
    import json

    import onnx

    from fdseg_core.export import METADATA_KEY

    run, ds = runs[sig]["dir"], runs[sig]["ds"]
    got = {}
    for n in ("last", "plus"):
        path = tmp_path / f"{n}.onnx"
        r = CliRunner().invoke(cli, ["export", str(run / f"{n}.pt"), "--out", str(path)])
        assert r.exit_code == 0, r.output
        props = {p.key: p.value for p in onnx.load(str(path)).metadata_props}
        meta = json.loads(props[METADATA_KEY])
        assert meta["activation"] == "sigmoid" and meta["loss"] == "sigmoid_dice"
        got[n] = _predict(["predict", "--onnx", str(path), str(ds)], tmp_path / f"pred-{n}")
    assert _same_labels(got["plus"], got["last"])
    ckpt_labels = _predict(["predict", str(run / "last.pt"), str(ds)], tmp_path / "ckpt")
    assert _nearly_same_labels(got["last"], ckpt_labels)
    assert any(v.any() for v in ckpt_labels.values())
