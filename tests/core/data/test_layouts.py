"""Dataset layouts, NIfTI round trips and every case check."""

from __future__ import annotations

import json

import nibabel as nib
import numpy as np
import pytest
from builders import make_toy_dataset

from fdseg_core.data import (
    Preprocessor,
    check_cases,
    default_normalization,
    load_case,
    load_dataset,
    save_nifti,
)


@pytest.mark.parametrize("layout", ["nnunet", "msd"])
@pytest.mark.parametrize("channels", [1, 2])
def test_both_layouts_load_with_channels_and_labels(tmp_path, layout, channels):
    root = make_toy_dataset(tmp_path / "ds", layout=layout, n_cases=3, channels=channels)
    info = load_dataset(root)
    assert info.layout == layout
    assert len(info.channel_names) == channels
    assert info.labels == {"background": 0, "blob": 1, "ball": 2}
    assert [c.case_id for c in info.training] == ["toy_000", "toy_001", "toy_002"]
    check_cases(info)
    case = load_case(info.training[0])
    assert case.image.shape == (channels, 24, 24, 16)
    assert case.label.shape == (24, 24, 16)
    assert case.spacing == pytest.approx((1.0, 1.0, 2.0))


def test_nii_without_gz_reads(tmp_path):
    root = tmp_path / "ds"
    for sub in ("imagesTr", "labelsTr"):
        (root / sub).mkdir(parents=True)
    save_nifti(np.ones((8, 8, 8), np.float32), np.eye(4), root / "imagesTr" / "a_0000.nii")
    save_nifti(np.zeros((8, 8, 8), np.uint8), np.eye(4), root / "labelsTr" / "a.nii")
    (root / "dataset.json").write_text(
        json.dumps(
            {
                "channel_names": {"0": "T1"},
                "labels": {"background": 0, "x": 1},
                "numTraining": 1,
                "file_ending": ".nii",
            }
        )
    )
    info = load_dataset(root)
    check_cases(info)
    assert info.training[0].image_paths[0].name == "a_0000.nii"


def test_affine_and_header_round_trip(tmp_path):
    affine = np.array(
        [[0.0, -1.2, 0.0, 30.0], [1.1, 0.0, 0.0, -20.0], [0.0, 0.0, 2.5, 7.0], [0, 0, 0, 1]]
    )
    hdr = nib.Nifti1Header()
    hdr.set_xyzt_units("mm", "sec")
    data = np.random.default_rng(0).normal(size=(6, 7, 5)).astype(np.float32)
    path = save_nifti(data, affine, tmp_path / "x.nii.gz", header=hdr)
    img = nib.load(str(path))
    np.testing.assert_allclose(img.affine, affine, atol=1e-6)
    np.testing.assert_allclose(img.get_qform(), affine, atol=1e-5)
    np.testing.assert_array_equal(img.get_fdata(dtype=np.float32), data)
    assert img.header.get_xyzt_units() == ("mm", "sec")
    assert not list(tmp_path.glob(".*"))  # no temp file left behind


def _break(root, case="toy_001"):
    return root / "labelsTr" / f"{case}.nii.gz", root / "imagesTr" / f"{case}_0000.nii.gz"


@pytest.fixture
def ds(tmp_path):
    return make_toy_dataset(tmp_path / "ds", n_cases=3)


def test_shape_mismatch_names_case_and_file(ds):
    label, _ = _break(ds)
    save_nifti(np.zeros((24, 24, 15), np.uint8), np.diag([1, 1, 2, 1.0]), label)
    with pytest.raises(ValueError, match=r"case 'toy_001': label .*toy_001.nii.gz has shape"):
        check_cases(load_dataset(ds))


def test_affine_mismatch_names_case_and_file(ds):
    label, image = _break(ds)
    img = nib.load(str(image))
    shifted = img.affine.copy()
    shifted[0, 3] += 0.5
    save_nifti(np.asarray(nib.load(str(label)).dataobj), shifted, label)
    with pytest.raises(ValueError, match=r"case 'toy_001': label .* different affines"):
        check_cases(load_dataset(ds))


def test_non_integer_label_raises(ds):
    label, image = _break(ds)
    save_nifti(np.full((24, 24, 16), 0.5, np.float32), nib.load(str(image)).affine, label)
    with pytest.raises(ValueError, match=r"case 'toy_001': label .* non-integer"):
        check_cases(load_dataset(ds))


def test_label_outside_declared_set_raises(ds):
    label, image = _break(ds)
    data = np.asarray(nib.load(str(label)).dataobj).copy()
    data[0, 0, 0] = 7
    save_nifti(data, nib.load(str(image)).affine, label)
    with pytest.raises(ValueError, match=r"case 'toy_001': .* values \[7\] outside"):
        check_cases(load_dataset(ds))


@pytest.mark.parametrize("bad", [np.nan, np.inf])
def test_nan_or_inf_image_raises(ds, bad):
    _, image = _break(ds)
    img = nib.load(str(image))
    data = np.asarray(img.dataobj).copy()
    data[1, 2, 3] = bad
    save_nifti(data, img.affine, image)
    with pytest.raises(ValueError, match=r"case 'toy_001': .*toy_001_0000.nii.gz has 1 NaN or Inf"):
        check_cases(load_dataset(ds))


def test_unreadable_file_raises(ds):
    _, image = _break(ds)
    image.write_bytes(b"this is not a nifti file")
    with pytest.raises(ValueError, match=r"case 'toy_001': .*toy_001_0000.nii.gz could not be"):
        check_cases(load_dataset(ds))


def test_missing_label_names_the_file(ds):
    label, _ = _break(ds)
    label.unlink()
    with pytest.raises(FileNotFoundError, match=r"case 'toy_001': label .*toy_001.nii.gz"):
        load_dataset(ds)


def test_missing_dataset_json_and_bad_num_training(tmp_path, ds):
    with pytest.raises(FileNotFoundError, match="dataset.json"):
        load_dataset(tmp_path)
    meta = json.loads((ds / "dataset.json").read_text())
    meta["numTraining"] = 9
    (ds / "dataset.json").write_text(json.dumps(meta))
    with pytest.raises(ValueError, match="numTraining is 9 but imagesTr holds 3"):
        load_dataset(ds)


def test_qsm_normalisation_is_robust_and_keeps_the_mask(tmp_path):
    root = make_toy_dataset(tmp_path / "ds", n_cases=2)
    meta = json.loads((root / "dataset.json").read_text())
    meta["channel_names"] = {"0": "QSM"}
    (root / "dataset.json").write_text(json.dumps(meta))
    info = load_dataset(root)
    assert default_normalization(info) == ("qsm",)
    case = load_case(info.training[0])
    img = case.image.copy()
    img[0, :4] = 0.0  # outside the brain mask
    img[0, 10, 10, 10] = 1e6  # an outlier
    save_nifti(img[0], case.affine, info.training[0].image_paths[0])
    vol = Preprocessor(("qsm",))(info.training[0])
    mask = img[0] != 0
    assert np.all(vol.image[0][~mask] == 0)
    assert abs(vol.image[0][mask].mean()) < 1e-4
    assert vol.image[0][mask].std() == pytest.approx(1.0, rel=1e-3)
    assert vol.image[0].max() < 10  # the outlier was clipped


def test_resampling_to_target_spacing_changes_the_grid(tmp_path):
    root = make_toy_dataset(tmp_path / "ds", n_cases=2)
    info = load_dataset(root)
    vol = Preprocessor(("zscore",), target_spacing=(2.0, 2.0, 2.0))(info.training[0])
    assert vol.image.shape == (1, 12, 12, 16) and vol.label.shape == (12, 12, 16)
    assert set(np.unique(vol.label)) <= {0, 1, 2}


@pytest.mark.parametrize("key", ["file_ending", "numTraining", "labels", "channel_names"])
def test_a_dataset_json_without_a_key_nnunet_requires_is_refused_naming_it(tmp_path, key):
    root = make_toy_dataset(tmp_path / "ds", n_cases=2)
    meta = json.loads((root / "dataset.json").read_text())
    del meta[key]
    (root / "dataset.json").write_text(json.dumps(meta))
    with pytest.raises(ValueError, match=rf"dataset.json: missing '{key}'; an nnU-Net v2"):
        load_dataset(root)


def test_the_older_modality_key_still_names_the_channels(tmp_path):
    root = make_toy_dataset(tmp_path / "ds", n_cases=2)
    meta = json.loads((root / "dataset.json").read_text())
    meta["modality"] = meta.pop("channel_names")
    (root / "dataset.json").write_text(json.dumps(meta))
    assert len(load_dataset(root).channel_names) == 1
