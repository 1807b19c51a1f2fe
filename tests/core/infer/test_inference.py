"""Sliding-window inference, TTA, prediction writing and overlays."""

from __future__ import annotations

from dataclasses import replace

import nibabel as nib
import numpy as np
import pytest
import torch
from builders import make_toy_dataset, model_card

from fdseg_core.data import load_dataset
from fdseg_core.infer import (
    gather_inputs,
    predict_cases,
    render_overlay,
    sliding_window_inference,
    window_starts,
)


def pointwise():
    torch.manual_seed(0)
    return torch.nn.Conv3d(2, 3, 1).eval()


@pytest.mark.parametrize("overlap", [0.0, 0.25, 0.5])
@pytest.mark.parametrize("gaussian", [True, False])
def test_tiling_equals_a_full_volume_pass_for_a_pointwise_model(overlap, gaussian):
    net = pointwise()
    x = torch.randn(1, 2, 23, 17, 9)
    probs = sliding_window_inference(x, net, (8, 8, 8), overlap=overlap, gaussian=gaussian)
    torch.testing.assert_close(probs, net(x).softmax(1), atol=1e-5, rtol=1e-5)


@pytest.mark.parametrize("batch_size", [2, 5, 64])
def test_batched_windows_give_the_probabilities_of_one_window_at_a_time(batch_size):
    # a 3x3x3 convolution sees each window's border, so every window's output differs;
    # 5 does not divide the 24 windows (a last, smaller batch), 64 takes them all at once
    torch.manual_seed(0)
    net = torch.nn.Sequential(
        torch.nn.Conv3d(1, 4, 3, padding=1), torch.nn.ReLU(), torch.nn.Conv3d(4, 3, 3, padding=1)
    ).eval()
    x = torch.randn(2, 1, 20, 16, 12)
    one = sliding_window_inference(x, net, (8, 8, 8), overlap=0.5, batch_size=1)
    batched = sliding_window_inference(x, net, (8, 8, 8), overlap=0.5, batch_size=batch_size)
    n_windows = [len(window_starts(s, 8, 0.5)) for s in (20, 16, 12)]
    assert np.prod(n_windows) == 24
    torch.testing.assert_close(batched, one, atol=1e-6, rtol=1e-5)


@pytest.mark.parametrize("batch_size", [0, -1, 1.5, True])
def test_bad_window_batch_size_is_refused_by_name(batch_size):
    with pytest.raises(ValueError, match=r"batch_size must be a positive int, got"):
        sliding_window_inference(
            torch.zeros(1, 1, 8, 8, 8), pointwise(), (4, 4, 4), batch_size=batch_size
        )


def test_volume_smaller_than_patch_is_padded_and_cropped_back():
    net = pointwise()
    x = torch.randn(2, 2, 5, 6, 7)
    probs = sliding_window_inference(x, net, (8, 8, 8))
    assert probs.shape == (2, 3, 5, 6, 7)
    torch.testing.assert_close(probs, net(x).softmax(1), atol=1e-5, rtol=1e-5)


def test_flip_tta_with_a_flip_equivariant_model_changes_nothing():
    net = pointwise()
    x = torch.randn(1, 2, 12, 10, 8)
    a = sliding_window_inference(x, net, (8, 8, 8), tta_flips=False)
    b = sliding_window_inference(x, net, (8, 8, 8), tta_flips=True)
    torch.testing.assert_close(a, b, atol=1e-6, rtol=1e-6)


def test_tta_averages_the_flipped_predictions_of_a_non_equivariant_model():
    net = torch.nn.Conv3d(1, 2, 3, padding=1).eval()
    x = torch.randn(1, 1, 8, 8, 8)
    got = sliding_window_inference(x, net, (8, 8, 8), tta_flips=True)
    import itertools

    flips = [c for r in range(4) for c in itertools.combinations((2, 3, 4), r)]
    with torch.no_grad():
        expected = sum(
            net(x.flip(f)).softmax(1).flip(f) if f else net(x).softmax(1) for f in flips
        ) / len(flips)
    torch.testing.assert_close(got, expected, atol=1e-5, rtol=1e-5)


def test_tta_flips_only_the_axes_it_is_given():
    calls = []

    def predictor(windows):
        calls.append(windows.clone())
        return torch.cat([torch.zeros_like(windows), windows], 1)

    x = torch.randn(1, 1, 8, 8, 8)
    sliding_window_inference(x, predictor, (8, 8, 8), tta_flips=(0,))
    assert len(calls) == 2
    torch.testing.assert_close(calls[1], x.flip(2))
    calls.clear()
    none = sliding_window_inference(x, predictor, (8, 8, 8), tta_flips=())
    plain = sliding_window_inference(x, predictor, (8, 8, 8))
    assert len(calls) == 2 and torch.equal(none, plain)
    with pytest.raises(ValueError, match="tta_flips must be distinct spatial axes < 3"):
        sliding_window_inference(x, predictor, (8, 8, 8), tta_flips=(3,))


@pytest.mark.parametrize(
    ("flip_axes", "expected", "note"),
    [
        ([[0, 1, 2]], (0, 1, 2), None),
        ([[]], (), "trained without flips"),
        ([[0, 1, 2], []], (), "trained without flips"),
        ([[0, 1, 2], [0, 2]], (0, 2), "along the axes [0, 2] only"),
        ([None], (0, 1, 2), "does not record the flips of its training"),
    ],
)
def test_test_time_flips_follow_the_flips_each_model_saw_in_training(flip_axes, expected, note):
    from fdseg_core.infer import tta_axes

    cards = [model_card(flip_axes=None if axes is None else tuple(axes)) for axes in flip_axes]
    axes, line = tta_axes(cards)
    assert axes == expected
    assert (line is None) if note is None else (note in line)


class LeftOnly(torch.nn.Module):
    """Logits of a model that learnt where its structure lies: class 1 only in the first
    half of the first axis (as a hippocampus cropped around one hemisphere)."""

    def forward(self, x):
        ramp = torch.linspace(1, -1, x.shape[2]).view(1, 1, -1, 1, 1).expand_as(x[:, :1])
        return torch.cat([torch.zeros_like(ramp), 10 * ramp], 1)


def test_a_model_trained_without_flips_predicts_the_same_with_and_without_tta(tmp_path):
    root = make_toy_dataset(tmp_path / "ds", n_cases=2, n_test=1)
    cases = gather_inputs([root], 1)
    meta = model_card(patch_size=(24, 24, 16), flip_axes=())
    plain = predict_cases(LeftOnly(), meta, cases, tmp_path / "plain", progress=False)[0]
    tta = predict_cases(LeftOnly(), meta, cases, tmp_path / "tta", tta=True, progress=False)[0]
    seg = np.asarray(nib.load(str(tta)).dataobj)
    assert np.array_equal(seg, np.asarray(nib.load(str(plain)).dataobj))
    assert seg[: seg.shape[0] // 2].all() and not seg[-(seg.shape[0] // 2) :].any()
    # flipped along the first axis, half the passes contradict the model's own answer
    flipped = replace(meta, flip_axes=(0, 1, 2))
    both = predict_cases(LeftOnly(), flipped, cases, tmp_path / "flip", tta=True, progress=False)
    assert not np.array_equal(np.asarray(nib.load(str(both[0])).dataobj), seg)


def test_window_starts_cover_the_axis():
    assert window_starts(10, 16, 0.5) == [0]
    s = window_starts(50, 16, 0.5)
    assert s[0] == 0 and s[-1] == 34 and all(b - a <= 8 for a, b in zip(s, s[1:], strict=False))


class Threshold(torch.nn.Module):
    """Logits that make voxels above 0.5 (after normalisation) class 1."""

    def forward(self, x):
        return torch.cat([torch.zeros_like(x[:, :1]), x[:, :1] - 0.5], 1) * 10


def test_predictions_are_written_on_the_input_grid(tmp_path):
    root = make_toy_dataset(tmp_path / "ds", n_cases=2, n_test=2)
    info = load_dataset(root)
    cases = gather_inputs([root], 1)
    assert [c.case_id for c in cases] == [c.case_id for c in info.test]
    meta = model_card(labels={"background": 0, "blob": 1})
    out = tmp_path / "pred"
    written = predict_cases(
        Threshold(), meta, cases, out, overlay=True, progress=False, save_probabilities=True
    )
    for path, case in zip(written, cases, strict=True):
        src = nib.load(str(case.image_paths[0]))
        seg = nib.load(str(path))
        assert seg.shape == src.shape
        np.testing.assert_allclose(seg.affine, src.affine)
        assert seg.get_data_dtype() == np.uint8
        assert set(np.unique(np.asarray(seg.dataobj))) <= {0, 1}
        assert (out / f"{case.case_id}_probabilities.nii.gz").is_file()
        assert (out / "overlays" / f"{case.case_id}.png").stat().st_size > 5000


def test_prediction_never_overwrites_an_input(tmp_path):
    root = make_toy_dataset(tmp_path / "ds", n_cases=2, n_test=1)
    src = root / "imagesTs" / "toy_002_0000.nii.gz"
    target = root / "imagesTs" / "toy_002.nii.gz"
    src.rename(target)  # a single-channel file named like its case
    before = target.read_bytes()
    meta = model_card()
    with pytest.raises(ValueError, match="refusing to overwrite input file"):
        predict_cases(
            Threshold(), meta, gather_inputs([target], 1), root / "imagesTs", progress=False
        )
    assert target.read_bytes() == before


def test_gather_inputs_errors_name_the_path(tmp_path):
    with pytest.raises(FileNotFoundError, match="input .*nope.nii.gz does not exist"):
        gather_inputs([tmp_path / "nope.nii.gz"], 1)
    (tmp_path / "notes.txt").write_text("x")
    with pytest.raises(ValueError, match="is not a NIfTI file"):
        gather_inputs([tmp_path / "notes.txt"], 1)


def test_overlay_png_shows_three_views(tmp_path):
    image = np.random.default_rng(0).normal(size=(30, 30, 20))
    label = np.zeros((30, 30, 20), np.uint8)
    label[10:15, 12:18, 8:12] = 1
    path = render_overlay(image, label, tmp_path / "o.png", labels={"nucleus": 1})
    import matplotlib.image as mpimg

    png = mpimg.imread(path)
    assert png.shape[1] > 2 * png.shape[0]  # three panels side by side
    red = (png[..., 0] > 0.8) & (png[..., 1] < 0.3)
    assert red.sum() > 50  # the label's colour is visible


def test_a_line_per_case_says_what_tta_costs_with_or_without_a_bar(tmp_path, caplog):
    root = make_toy_dataset(tmp_path / "ds", n_cases=2, n_test=1)
    cases = gather_inputs([root], 1)
    meta = model_card(patch_size=(24, 24, 16), flip_axes=(0, 1, 2))
    with caplog.at_level("INFO", logger="fdseg_core"):
        predict_cases(LeftOnly(), meta, cases, tmp_path / "p", tta=True, progress=True)
    assert "predict toy_002 (1 of 1): 8 passes over the volume (test-time flips)" in caplog.text


def test_prediction_reads_every_input_first_and_refuses_a_bad_one_before_any_output(tmp_path):
    root = make_toy_dataset(tmp_path / "ds", n_cases=2, n_test=2)
    bad = root / "imagesTs" / "toy_003_0000.nii.gz"
    img = nib.load(str(bad))
    data = np.asarray(img.dataobj).astype(np.float32)
    data[0, 0, 0] = np.nan
    nib.save(nib.Nifti1Image(data, img.affine), str(bad))
    meta = model_card(patch_size=(24, 24, 16))
    out = tmp_path / "pred"
    with pytest.raises(ValueError, match=r"case 'toy_003': .* has 1 NaN or Inf voxels"):
        predict_cases(Threshold(), meta, gather_inputs([root], 1), out, progress=False)
    assert not out.exists()
