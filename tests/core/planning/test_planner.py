"""Planning from a fingerprint: known answers on synthetic datasets (isotropic,
anisotropic, small volumes, volumes that fit whole), and the plan a run records."""

from __future__ import annotations

import math

import nibabel as nib
import numpy as np
import pytest
from builders import make_toy_dataset

from fdseg_core.data import load_dataset
from fdseg_core.planning import (
    CaseFingerprint,
    Fingerprint,
    fingerprint,
    plan_run,
    plan_training,
    target_spacing,
)
from fdseg_core.train import TrainConfig


def fp_of(shapes, spacings) -> Fingerprint:
    cases = tuple(
        CaseFingerprint(f"c{i}", tuple(sh), tuple(sp), {})
        for i, (sh, sp) in enumerate(zip(shapes, spacings, strict=True))
    )
    return Fingerprint("d", ("CT",), {"background": 0, "x": 1}, cases)


def test_isotropic_target_spacing_is_the_median():
    spacings = np.array([[1.0, 1.0, 1.0], [1.2, 1.2, 1.2], [0.9, 0.9, 0.9]])
    got, reason = target_spacing(spacings, np.full((3, 3), 100))
    assert got == (1.0, 1.0, 1.0) and "median" in reason


def test_anisotropic_data_takes_the_10th_percentile_along_the_coarse_axis():
    z = [5.0, 4.0, 6.0, 5.0, 3.5, 5.0]
    spacings = np.array([[0.8, 0.8, s] for s in z])
    shapes = np.array([[512, 512, 40]] * len(z))
    got, reason = target_spacing(spacings, shapes)
    assert got[:2] == (0.8, 0.8)
    assert got[2] == pytest.approx(np.percentile(z, 10))  # 3.75, computed by numpy
    assert "10th percentile" in reason


def test_anisotropic_spacing_with_many_voxels_keeps_the_median():
    # coarse z spacing, but as many voxels along z as in-plane: no special rule
    spacings = np.array([[0.8, 0.8, s] for s in (5.0, 4.0, 6.0)])
    got, _ = target_spacing(spacings, np.array([[200, 200, 200]] * 3))
    assert got == (0.8, 0.8, 5.0)


def test_small_volumes_fit_whole_in_the_patch_and_the_batch_is_capped_at_5_percent():
    fp = fp_of([[30, 30, 14]] * 10, [[2.0, 2.0, 2.0]] * 10)
    plan = plan_training(fp, size_divisor=8, bytes_per_voxel=1000.0, memory_gb=8)
    assert plan.patch_size == (32, 32, 16)  # the median case rounded up to 8
    # 5 % of 10 x 30 x 30 x 14 voxels = 6300 < one patch of 16384: the floor of 2 wins
    assert plan.batch_size == 2
    # and the reason says so: one patch is 13 % of the dataset's 126000 voxels
    assert "one patch is already 13% of the dataset's voxels, above the cap of 5%" in (
        plan.report()
    )
    assert "the floor of 2 patches applies" in plan.report()
    assert plan.fields() == {
        "target_spacing": (2.0, 2.0, 2.0),
        "patch_size": (32, 32, 16),
        "batch_size": 2,
    }
    assert not plan.warnings


def test_many_cases_raise_the_batch_to_what_the_budget_holds():
    fp = fp_of([[32, 32, 16]] * 1000, [[1.0, 1.0, 1.0]] * 1000)
    per_voxel = 2**30 / (32 * 32 * 16)  # one patch = 1 GiB
    plan = plan_training(fp, size_divisor=8, bytes_per_voxel=per_voxel, memory_gb=5)
    assert plan.batch_size == 5 and plan.estimated_gb == pytest.approx(5.0)
    # 5 % of 1000 cases of 16384 voxels holds 50 patches
    assert "the cap of 5% of the dataset's voxels per step allows 50" in plan.report()


def test_large_volumes_are_cut_along_the_largest_axis_in_mm_until_a_batch_of_2_fits():
    fp = fp_of([[256, 256, 64]] * 5, [[1.0, 1.0, 3.0]] * 5)
    per_voxel = 1000.0
    plan = plan_training(fp, size_divisor=16, bytes_per_voxel=per_voxel, memory_gb=2)
    x, y, z = plan.patch_size
    assert all(p % 16 == 0 for p in plan.patch_size)
    assert 2 * x * y * z * per_voxel <= 2 * 2**30
    # one more step on any axis would not fit (the cut stops as early as it can)
    assert 2 * (x + 16) * y * z * per_voxel > 2 * 2**30 or x == 256
    # the largest extent (mm) was always cut first: the patch ends about isotropic in mm,
    # within one step (16 voxels of 3 mm) of each other
    extents = [x * 1.0, y * 1.0, z * 3.0]
    assert max(extents) - min(extents) <= 48
    assert any("cut" in r for r in plan.reasons)
    assert any("sliding window" in w for w in plan.warnings)


def test_a_narrow_low_band_is_warned_about():
    fp = fp_of([[24, 24, 16]] * 4, [[1.0, 1.0, 1.0]] * 4)
    plan = plan_training(fp, size_divisor=8, bytes_per_voxel=100.0, beta=0.1)
    assert plan.patch_size[:2] == (24, 24)  # int(24 * 0.1) = 2 low-band samples
    assert any("fewer than 4 in-plane low-band samples" in w for w in plan.warnings)
    wide = plan_training(fp, size_divisor=8, bytes_per_voxel=100.0, beta=0.2)
    assert not any("low-band" in w for w in wide.warnings)


def test_a_budget_below_two_minimal_patches_is_refused():
    fp = fp_of([[64, 64, 64]] * 2, [[1.0, 1.0, 1.0]] * 2)
    with pytest.raises(ValueError, match="memory_gb 1e-06 is below what two patches"):
        plan_training(fp, size_divisor=8, bytes_per_voxel=1e6, memory_gb=1e-6)


def test_fingerprint_reads_shapes_spacings_volumes_and_foreground_intensities(tmp_path):
    root = make_toy_dataset(tmp_path / "ds", n_cases=3, n_test=0, spacing=(1.0, 1.0, 2.0))
    fp = fingerprint(root)
    assert [c.shape for c in fp.cases] == [(24, 24, 16)] * 3
    assert fp.median_spacing() == (1.0, 1.0, 2.0)
    info = load_dataset(root)
    for case, c in zip(info.training, fp.cases, strict=True):
        label = np.asarray(nib.load(str(case.label_path)).dataobj)
        assert c.label_volumes_ml["blob"] == pytest.approx((label == 1).sum() * 2.0 / 1000)
        assert c.label_volumes_ml["ball"] == pytest.approx((label == 2).sum() * 2.0 / 1000)
    stats = fp.foreground_intensity[info.channel_names[0]]
    assert stats["min"] <= stats["percentile_00_5"] <= stats["median"] <= stats["max"]
    again = Fingerprint.from_dict(fp.to_dict())
    assert again == fp


def test_plan_run_measures_the_network_and_plans_the_toy_dataset(tmp_path):
    root = make_toy_dataset(tmp_path / "ds", n_cases=4, n_test=0, spacing=(1.0, 1.0, 2.0))
    config = TrainConfig(
        dataset=str(root),
        out=str(tmp_path / "run"),
        backbone="unet3d",
        backbone_options={"levels": 3},
    )
    plan, fp = plan_run(config)
    assert plan.target_spacing == (1.0, 1.0, 2.0) and plan.size_divisor == (4, 4, 4)
    assert plan.patch_size == (24, 24, 16)  # the whole toy case
    assert plan.bytes_per_voxel > 0 and math.isfinite(plan.estimated_gb)
    bigger = plan_run(config.replace(backbone_options={"levels": 3, "base_filters": 16}), fp=fp)
    assert bigger[0].bytes_per_voxel > plan.bytes_per_voxel  # measured, not assumed
