"""Metrics against hand-computed values."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest
import torch

from fdseg_core.data import save_nifti
from fdseg_core.metrics import (
    assd,
    dice,
    dice_per_class,
    evaluate_folder,
    hd95,
    volume_ml,
    write_report,
)


def cube(shape, lo, hi):
    m = np.zeros(shape, bool)
    m[tuple(slice(a, b) for a, b in zip(lo, hi, strict=True))] = True
    return m


def test_dice_of_two_overlapping_cubes_has_the_closed_form():
    a = cube((20, 20, 20), (2, 2, 2), (12, 12, 12))  # 1000 voxels
    b = cube((20, 20, 20), (7, 2, 2), (17, 12, 12))  # shifted by 5: overlap 500
    assert dice(a, b) == pytest.approx(2 * 500 / 2000)
    assert dice(a, a) == 1.0
    assert dice(a, np.zeros_like(a)) == 0.0
    assert math.isnan(dice(np.zeros_like(a), np.zeros_like(a)))


def test_single_voxels_have_their_euclidean_distance_in_mm():
    a = np.zeros((10, 10, 10), bool)
    b = np.zeros_like(a)
    a[2, 3, 4] = True
    b[5, 3, 8] = True
    spacing = (2.0, 1.0, 0.5)
    expected = math.hypot(3 * 2.0, 4 * 0.5)
    assert hd95(a, b, spacing) == pytest.approx(expected)
    assert assd(a, b, spacing) == pytest.approx(expected)


def test_shifted_cube_max_surface_distance_is_the_shift_in_mm():
    a = cube((30, 20, 20), (5, 5, 5), (15, 15, 15))
    b = cube((30, 20, 20), (8, 5, 5), (18, 15, 15))  # 3 voxels along x at 2 mm
    spacing = (2.0, 1.0, 1.0)
    assert hd95(a, b, spacing, percentile=100) == pytest.approx(6.0)
    assert 0 < assd(a, b, spacing) < 6.0


def test_concentric_cubes_inner_surface_is_two_voxels_from_the_outer():
    outer = cube((20, 20, 20), (4, 4, 4), (16, 16, 16))
    inner = cube((20, 20, 20), (6, 6, 6), (14, 14, 14))
    from fdseg_core.metrics import surface_distances

    d_in, d_out = surface_distances(inner, outer, (1.5, 1.5, 1.5))
    np.testing.assert_allclose(d_in, 3.0)  # every inner surface voxel: 2 voxels x 1.5 mm
    assert d_out.min() == pytest.approx(3.0) and d_out.max() == pytest.approx(1.5 * math.sqrt(12))


def test_empty_masks_give_nan_distances():
    a = cube((8, 8, 8), (1, 1, 1), (3, 3, 3))
    assert math.isnan(hd95(a, np.zeros_like(a), (1, 1, 1)))
    assert math.isnan(assd(np.zeros_like(a), a, (1, 1, 1)))


def test_volume_in_millilitres():
    a = cube((20, 20, 20), (0, 0, 0), (10, 10, 10))  # 1000 voxels
    assert volume_ml(a, (0.5, 1.0, 2.0)) == pytest.approx(1.0)


def test_torch_dice_per_class_matches_numpy():
    rng = np.random.default_rng(0)
    p = rng.integers(0, 3, (10, 10, 10))
    t = rng.integers(0, 3, (10, 10, 10))
    d = dice_per_class(torch.from_numpy(p), torch.from_numpy(t), 4)
    for c in range(3):
        assert d[c].item() == pytest.approx(dice(p == c, t == c))
    assert math.isnan(d[3])


def test_evaluate_folder_per_case_summary_and_grid_mismatch(tmp_path):
    pred, ref = tmp_path / "pred", tmp_path / "ref"
    affine = np.diag([2.0, 1.0, 1.0, 1.0])
    a = cube((20, 20, 20), (2, 2, 2), (12, 12, 12)).astype(np.uint8)
    b = cube((20, 20, 20), (7, 2, 2), (17, 12, 12)).astype(np.uint8)
    save_nifti(a, affine, ref / "c1.nii.gz")
    save_nifti(b, affine, pred / "c1.nii.gz")
    save_nifti(a, affine, ref / "c2.nii.gz")
    save_nifti(a, affine, pred / "c2.nii.gz")
    report = evaluate_folder(pred, ref, labels={"background": 0, "nucleus": 1})
    dices = {r.case: r.dice for r in report.cases}
    assert dices == {"c1": pytest.approx(0.5), "c2": 1.0}
    assert report.dice("c1", "nucleus") == pytest.approx(0.5)
    s = report.summary["nucleus"]
    assert s["dice"].mean == pytest.approx(0.75)
    assert s["dice"].std == pytest.approx(np.std([0.5, 1.0], ddof=1))
    assert s["ref_ml"].mean == pytest.approx(2.0)  # 1000 voxels x 2 mm^3
    write_report(report, json_path=tmp_path / "m.json", csv_path=tmp_path / "m.csv")
    assert (tmp_path / "m.csv").read_text().count("\n") == 3
    written = json.loads((tmp_path / "m.json").read_text())
    assert written["summary"]["nucleus"]["dice"] == {"mean": pytest.approx(0.75), "std":
        pytest.approx(np.std([0.5, 1.0], ddof=1)), "n": 2}  # fmt: skip
    assert written["cases"][0]["case"] == "c1" and written["cases"][0]["class"] == "nucleus"
    save_nifti(a, np.diag([1.0, 1.0, 1.0, 1.0]), pred / "c2.nii.gz")
    with pytest.raises(ValueError, match="case 'c2': prediction .* not on the grid"):
        evaluate_folder(pred, ref)


def _first_voxels(shape, count):
    m = np.zeros(int(np.prod(shape)), np.uint8)
    m[:count] = 1
    return m.reshape(shape)


def test_volume_means_leave_out_cases_where_the_class_is_absent_from_both(tmp_path):
    """The defect issue 10 measured: class 'b' is in 3 of 20 cases (4.000, 4.406 and
    4.812 mL); its mean volume is 4.406 mL over n=3, not 0.661 mL over the 20 cases."""
    from click.testing import CliRunner

    from fdseg_cli.main import cli

    pred, ref = tmp_path / "pred", tmp_path / "ref"
    shape, affine = (20, 20, 20), np.eye(4)  # 1 mm voxels: 1000 voxels = 1 mL
    always = cube(shape, (0, 0, 0), (5, 5, 5)).astype(np.uint8)  # class a: 0.125 mL
    volumes = {3: 4000, 9: 4406, 15: 4812}
    for i in range(20):
        label = always.copy()
        if i in volumes:
            label[_first_voxels(shape, volumes[i] + 125).astype(bool) & (always == 0)] = 2
        save_nifti(label, affine, ref / f"c{i:02d}.nii.gz")
        save_nifti(label, affine, pred / f"c{i:02d}.nii.gz")
    (tmp_path / "dataset.json").write_text('{"labels": {"background": 0, "a": 1, "b": 2}}')
    report = evaluate_folder(pred, ref, labels={"background": 0, "a": 1, "b": 2})
    b = report.summary["b"]
    assert (b["ref_ml"].mean, b["ref_ml"].std, b["ref_ml"].n) == (
        pytest.approx(4.406),
        pytest.approx(0.406),
        3,
    )
    assert b["pred_ml"].n == b["dice"].n == b["hd95_mm"].n == 3
    assert b.n_cases == 20 and b.n_absent == 17
    wrong = np.mean([volumes.get(i, 0) / 1000 for i in range(20)])
    assert wrong == pytest.approx(0.661, abs=1e-3) and b["ref_ml"].mean != pytest.approx(wrong)
    a = report.summary["a"]
    assert a["ref_ml"].n == 20 and a.n_absent == 0
    r = CliRunner().invoke(
        cli, ["evaluate", str(pred), str(ref), "--dataset-json", str(tmp_path / "dataset.json")]
    )
    assert r.exit_code == 0, r.output
    row_b = next(line for line in r.output.splitlines() if line.startswith("b "))
    assert "4.406 ± 0.406 (n=3)" in row_b and "(n=20)" not in row_b
    assert "absent from both and left out: b in 17" in r.output


def test_a_false_negative_keeps_its_zero_predicted_volume_in_the_mean():
    from fdseg_core.metrics import ClassMetrics
    from fdseg_core.metrics.evaluate import summarise

    nan = float("nan")
    rows = [
        ClassMetrics("c1", "x", dice=0.0, hd95_mm=nan, assd_mm=nan, pred_ml=0.0, ref_ml=2.0),
        ClassMetrics("c2", "x", dice=1.0, hd95_mm=0.0, assd_mm=0.0, pred_ml=4.0, ref_ml=4.0),
    ]
    s = summarise(rows)["x"]
    assert (s["pred_ml"].mean, s["pred_ml"].std, s["pred_ml"].n) == (
        2.0,
        pytest.approx(np.std([0, 4], ddof=1)),
        2,
    )
    assert s["hd95_mm"].n == 1 and s["dice"].mean == 0.5 and s.n_absent == 0
    # undefined values are null in the JSON rows
    assert rows[0].to_dict()["hd95_mm"] is None and rows[1].to_dict()["hd95_mm"] == 0.0
