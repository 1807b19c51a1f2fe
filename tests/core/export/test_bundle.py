"""A trained model as a MONAI bundle: MONAI's own bundle runner segments a folder with it,
and its labels are fdseg predict's."""

from __future__ import annotations

import json
import subprocess
import sys

import nibabel as nib
import numpy as np
import pytest
from builders import fdseg_ok, make_toy_dataset, tiny_args
from click.testing import CliRunner

from fdseg_cli.main import cli

pytest.importorskip("monai", reason="MONAI bundles need the monai extra")
pytestmark = pytest.mark.slow


def test_monais_bundle_runner_segments_as_fdseg_predict_does(tmp_path):
    ds = make_toy_dataset(tmp_path / "ds", n_cases=4, n_test=2, spacing=(1.0, 1.0, 2.0))
    run = tmp_path / "run"
    args = ["train", str(ds), "--out", str(run), *tiny_args(epochs=2, iters=3)]
    r = CliRunner().invoke(cli, [*args, "--target-spacing", "1", "1", "1"])
    assert r.exit_code == 0, r.output
    bundle = tmp_path / "bundle"
    r = CliRunner().invoke(cli, ["export", str(run / "best.pt"), "--bundle", str(bundle)])
    assert r.exit_code == 0, r.output
    for part in ("configs/metadata.json", "configs/inference.json", "models/model.pt"):
        assert (bundle / part).is_file(), part
    meta = json.loads((bundle / "configs" / "metadata.json").read_text())
    for key in ("version", "changelog", "monai_version", "pytorch_version", "numpy_version",
                "task", "description", "authors", "copyright", "network_data_format"):  # fmt: skip
        assert key in meta, key
    assert meta["network_data_format"]["outputs"]["pred"]["channel_def"] == {
        "0": "background",
        "1": "blob",
        "2": "ball",
    }
    readme = (bundle / "README.md").read_text()
    assert "fusion" in readme and "best mean Dice" in readme and "fdseg train" in readme
    # MONAI's own runner, in a process of its own
    out = tmp_path / "monai-out"
    done = subprocess.run(
        [sys.executable, "-m", "monai.bundle", "run", "--config_file",
         str(bundle / "configs" / "inference.json"), "--bundle_root", str(bundle),
         "--dataset_dir", str(ds / "imagesTs"), "--output_dir", str(out)],
        capture_output=True, text=True, timeout=600,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr[-3000:]
    pred = tmp_path / "fdseg-out"
    fdseg_ok("predict", run / "best.pt", ds / "imagesTs", "--out", pred, "--no-progress")
    fdseg = sorted(pred.glob("*.nii.gz"))
    assert len(fdseg) == 2
    for path in fdseg:
        name = path.name.replace(".nii.gz", "_0000.nii.gz")  # the runner names by file
        theirs = nib.load(str(out / name))
        ours = nib.load(str(path))
        np.testing.assert_array_equal(np.asarray(theirs.dataobj), np.asarray(ours.dataobj))
        np.testing.assert_allclose(theirs.affine, ours.affine)
