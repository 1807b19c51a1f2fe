"""fdseg's planner against nnU-Net's on the same datasets: the same target spacing
(nnU-Net's own rule, anisotropic case included); the patch sizes differ in documented
ways (docs/planning.md): nnU-Net crops each case to its non-zero box and orders axes by
spacing, fdseg plans on whole cases in their stored order."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import nibabel as nib
import numpy as np
import pytest

pytest.importorskip(
    "nnunetv2", reason="nnU-Net v2 is the nnunet extra: pip install 'fdseg[nnunet]'"
)

from builders import make_toy_dataset  # noqa: E402

from fdseg_core.data import load_dataset  # noqa: E402
from fdseg_core.planning import plan_run  # noqa: E402
from fdseg_core.train import TrainConfig  # noqa: E402

pytestmark = pytest.mark.slow
BIN = Path(sys.executable).parent


def _nnunet_plan(root: Path, raw_name: str, dataset_id: str) -> dict:
    env = {
        **os.environ,
        "nnUNet_raw": str(root / "raw"),
        "nnUNet_preprocessed": str(root / "pre"),
        "nnUNet_results": str(root / "res"),
        "nnUNet_n_proc_DA": "1",
    }
    for cmd in (
        ["nnUNetv2_extract_fingerprint", "-d", dataset_id, "-np", "1"],
        ["nnUNetv2_plan_experiment", "-d", dataset_id],
    ):
        done = subprocess.run([str(BIN / cmd[0]), *cmd[1:]], env=env, capture_output=True)
        assert done.returncode == 0, done.stderr.decode()[-3000:]
    plans = json.loads((root / "pre" / raw_name / "nnUNetPlans.json").read_text())
    return plans


def _in_stored_order(plans: dict, values) -> list[float]:
    """nnU-Net's per-axis values (in its transposed, SimpleITK z-y-x order) back in the
    stored x-y-z order of the NIfTI files."""
    backward = plans["transpose_backward"]
    zyx = [values[i] for i in backward]
    return zyx[::-1]


def _fdseg_plan(dataset: Path, tmp: Path):
    config = TrainConfig(dataset=str(dataset), out=str(tmp / "run"), fusion="none")
    return plan_run(config)[0]


def test_the_target_spacing_is_nnunets_on_an_isotropic_phantom(tmp_path):
    raw = tmp_path / "raw" / "Dataset503_Phantom"
    done = subprocess.run(
        [str(BIN / "fdseg"), "phantom", str(raw), "--cases", "5", "--test-cases", "0"]
        + ["--seed", "2", "--shape", "48", "48", "40", "--spacing", "3.4", "--no-progress"],
        capture_output=True,
    )
    assert done.returncode == 0, done.stderr.decode()
    plans = _nnunet_plan(tmp_path, "Dataset503_Phantom", "503")
    theirs = plans["configurations"]["3d_fullres"]
    ours = _fdseg_plan(raw, tmp_path)
    np.testing.assert_allclose(
        ours.target_spacing, _in_stored_order(plans, theirs["spacing"]), rtol=1e-5
    )
    their_patch = _in_stored_order(plans, theirs["patch_size"])
    # fdseg: the whole uncropped case; nnU-Net: the case cropped to its non-zero box
    assert ours.patch_size == (48, 48, 40)
    assert all(o >= t for o, t in zip(ours.patch_size, their_patch, strict=True))
    assert ours.batch_size == theirs["batch_size"] == 2


def test_the_anisotropic_rule_gives_nnunets_target_spacing(tmp_path):
    raw = tmp_path / "raw" / "Dataset504_Aniso"
    root = make_toy_dataset(raw, n_cases=5, n_test=0, shape=(48, 48, 8))
    for case, dz in zip(load_dataset(root).training, [4.0, 5.0, 3.0, 4.5, 5.5], strict=True):
        for path in (*case.image_paths, case.label_path):
            img = nib.load(str(path))
            nib.save(
                nib.Nifti1Image(np.asarray(img.dataobj), np.diag([0.8, 0.8, dz, 1.0])), str(path)
            )
    plans = _nnunet_plan(tmp_path, "Dataset504_Aniso", "504")
    theirs = _in_stored_order(plans, plans["configurations"]["3d_fullres"]["spacing"])
    ours = _fdseg_plan(raw, tmp_path)
    np.testing.assert_allclose(ours.target_spacing, theirs, rtol=1e-4)
    assert ours.target_spacing[2] == pytest.approx(np.percentile([4.0, 5.0, 3.0, 4.5, 5.5], 10))
