"""Keep the largest connected component: per class, per class and hemisphere, and in
prediction a planted spurious blob is removed."""

from __future__ import annotations

import nibabel as nib
import numpy as np
import torch
from builders import make_toy_dataset, model_card

from fdseg_core.data import load_dataset
from fdseg_core.infer import gather_inputs, keep_largest_per_class, predict_ensemble
from fdseg_core.infer.postprocess import hemisphere_of_voxels


def labels_with_a_blob() -> np.ndarray:
    lab = np.zeros((20, 10, 10), np.uint8)
    lab[2:5, 2:5, 2:5] = 1  # left structure, 27 voxels
    lab[14:18, 2:6, 2:6] = 1  # right structure, 64 voxels
    lab[8, 8, 8] = 1  # a spurious voxel, left of the middle (x = 9.5)
    lab[1:3, 7:9, 7:9] = 2
    return lab


def test_per_class_keeps_one_component_of_each_class():
    out = keep_largest_per_class(labels_with_a_blob(), "class")
    assert (out == 1).sum() == 64 and (out == 2).sum() == 8


def test_per_hemisphere_keeps_the_largest_on_each_side():
    lab = labels_with_a_blob()
    out = keep_largest_per_class(lab, "hemisphere", affine=np.eye(4))
    assert (out == 1).sum() == 27 + 64 and out[8, 8, 8] == 0
    # the side is the world's: mirror the x axis in the affine and the data together
    flipped = np.diag([-1.0, 1.0, 1.0, 1.0])
    flipped[0, 3] = 19.0
    again = keep_largest_per_class(lab[::-1], "hemisphere", affine=flipped)
    np.testing.assert_array_equal(again[::-1], out)


def test_modes_per_class_leave_other_classes_alone():
    lab = labels_with_a_blob()
    lab[0, 0, 0] = 2  # a second component of class 2
    out = keep_largest_per_class(lab, {2: "class"})
    assert (out == 1).sum() == (lab == 1).sum() and (out == 2).sum() == 8


def test_hemisphere_map_splits_at_the_volume_centre():
    sides = hemisphere_of_voxels((4, 2, 2), np.eye(4))
    assert sides[:, 0, 0].tolist() == [False, False, True, True]


class Threshold(torch.nn.Module):
    def forward(self, x):
        return torch.cat([torch.zeros_like(x[:, :1]), x[:, :1] - 0.5], 1) * 10


def test_prediction_removes_a_planted_blob(tmp_path):
    root = make_toy_dataset(tmp_path / "ds", n_cases=1, n_test=1)
    case = load_dataset(root).test[0]
    img = nib.load(str(case.image_paths[0]))
    data = np.zeros(img.shape, np.float32)
    data[4:12, 4:12, 4:10] = 1.0  # the structure
    data[20:22, 20:22, 12:14] = 1.0  # a spurious blob, far from it
    nib.save(nib.Nifti1Image(data, img.affine), str(case.image_paths[0]))
    meta = model_card(normalization=("none",), labels={"background": 0, "x": 1})
    cases = gather_inputs([case.image_paths[0]], 1)
    for mode, blob in (("none", 1), ("class", 0)):
        out = tmp_path / mode
        predict_ensemble([(Threshold(), meta)], cases, out, keep_largest=mode, progress=False)
        seg = np.asarray(nib.load(str(out / f"{case.case_id}.nii.gz")).dataobj)
        assert seg[4:12, 4:12, 4:10].all()
        assert seg[20:22, 20:22, 12:14].all() == bool(blob)
