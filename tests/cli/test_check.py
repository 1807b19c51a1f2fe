"""``fdseg check``: every problem of a real dataset at once, each naming its case, and the
same checks before plan and train; a remapped copy of an atlas-labelled dataset.

The datasets are written at test time from MSD hippocampus cases (tests/builders.py) and
then damaged, one problem each; nothing is copied into the repository.
"""

from __future__ import annotations

import json

import nibabel as nib
import numpy as np
import pytest
from builders import hippocampus_nnunet
from click.testing import CliRunner

from fdseg_cli.main import cli

pytestmark = pytest.mark.slow
CASES = ("033", "160", "243", "003", "004", "006")


@pytest.fixture(autouse=True)
def own_cache(tmp_path, monkeypatch):
    monkeypatch.setenv("FDSEG_CACHE", str(tmp_path / "cache"))


def _label(ds, case):
    return ds / "labelsTr" / f"hippocampus_{case}.nii.gz"


def _image(ds, case):
    return ds / "imagesTr" / f"hippocampus_{case}_0000.nii.gz"


def _crop_label(ds, case):
    img = nib.load(str(_label(ds, case)))
    data = np.asarray(img.dataobj)[:-1]
    nib.save(nib.Nifti1Image(data, img.affine, img.header), str(_label(ds, case)))


def _float_label(ds, case, value=1.0000002):
    img = nib.load(str(_label(ds, case)))
    data = np.asarray(img.dataobj).astype(np.float32)
    data[data == 1] = value
    header = img.header.copy()
    header.set_data_dtype(np.float32)
    nib.save(nib.Nifti1Image(data, img.affine, header), str(_label(ds, case)))


def _check(ds, *extra):
    return CliRunner().invoke(cli, ["check", str(ds), "--no-progress", "--jobs", "1", *extra])


def test_a_clean_dataset_passes_with_a_summary_and_a_second_check_reads_nothing(tmp_path):
    ds = hippocampus_nnunet(tmp_path / "ds", CASES)
    r = _check(ds, "--json", str(tmp_path / "out" / "check.json"))
    assert r.exit_code == 0, r.output
    assert "0 error(s)" in r.output and "6 readable case(s)" in r.output
    assert "orientations RAS (6)" in r.output and "class Anterior: in 6 case(s)" in r.output
    assert "warning: mixed stored intensity types: float32 (5 cases), uint8 (1 cases)" in r.output
    report = json.loads((tmp_path / "out" / "check.json").read_text())
    assert report["errors"] == 0 and report["summary"]["cases"] == 6
    # cached by the files' stamps: a second check gives the same report without reading
    cached = list((tmp_path / "cache" / "checks").glob("*.json"))
    assert len(cached) == 1
    import fdseg_core.data.checks as checks

    calls = []
    real = checks.inspect_case
    checks.inspect_case = lambda *a: calls.append(a) or real(*a)
    try:
        again = checks.check_dataset(ds)
    finally:
        checks.inspect_case = real
    assert calls == [] and len(again.facts) == 6
    # a changed file is read again
    _float_label(ds, "003", value=1.0)  # same values, new file
    calls.clear()
    checks.inspect_case = lambda *a: calls.append(a) or real(*a)
    try:
        checks.check_dataset(ds)
    finally:
        checks.inspect_case = real
    assert [c[0].case_id for c in calls] == ["hippocampus_003"]


def test_three_problems_at_once_are_all_named_with_their_cases(tmp_path):
    """The issue's dataset: a label cropped by one voxel, a label holding 1.0000002 and
    a missing image: one check names all three cases and exits 2."""
    ds = hippocampus_nnunet(tmp_path / "ds", CASES)
    _crop_label(ds, "033")
    _float_label(ds, "160")
    _image(ds, "243").unlink()
    r = _check(ds)
    assert r.exit_code == 2, r.output
    errors = [line for line in r.output.splitlines() if line.startswith("error: ")]
    assert len(errors) == 3, r.output
    text = "\n".join(errors)
    assert "hippocampus_033" in text and "has shape (32, 48, 38) but image" in text
    assert "hippocampus_160" in text and "non-integer values (largest distance to an" in text
    assert "numpy.rint" in text  # how to round them
    assert "hippocampus_243" in text and "has no image" in text
    assert "3 error(s)" in r.output


@pytest.mark.parametrize(
    ("damage", "expected"),
    [
        ("nan", "NaN or Inf voxels"),
        ("affine", "different affines"),
        ("value", "holds values [5] outside the declared labels"),
        ("truncated", "could not be read"),
        ("count", "numTraining is 7 but imagesTr holds 6 cases"),
    ],
)
def test_each_problem_ends_in_exit_2_naming_the_case_and_nothing_is_written(
    tmp_path, damage, expected
):
    ds = hippocampus_nnunet(tmp_path / "ds", CASES)
    if damage == "nan":
        img = nib.load(str(_image(ds, "004")))
        data = np.asarray(img.dataobj).astype(np.float32)
        data[0, 0, 0] = np.nan
        nib.save(nib.Nifti1Image(data, img.affine), str(_image(ds, "004")))
    elif damage == "affine":
        img = nib.load(str(_label(ds, "004")))
        affine = img.affine.copy()
        affine[0, 3] += 0.5
        nib.save(
            nib.Nifti1Image(np.asarray(img.dataobj), affine, img.header), str(_label(ds, "004"))
        )
    elif damage == "value":
        img = nib.load(str(_label(ds, "004")))
        data = np.asarray(img.dataobj).copy()
        data[data == 2] = 5
        nib.save(nib.Nifti1Image(data, img.affine, img.header), str(_label(ds, "004")))
    elif damage == "truncated":
        path = _image(ds, "004")
        path.write_bytes(path.read_bytes()[:300])
    else:
        meta = json.loads((ds / "dataset.json").read_text())
        meta["numTraining"] = 7
        (ds / "dataset.json").write_text(json.dumps(meta))
    before = sorted(p.name for p in tmp_path.iterdir())
    r = _check(ds)
    assert r.exit_code == 2, r.output
    assert expected in r.output
    if damage != "count":
        assert "hippocampus_004" in r.output
    # train refuses the same way, before anything is written
    out = tmp_path / "run"
    r = CliRunner().invoke(cli, ["train", str(ds), "--out", str(out), "--no-progress"])
    assert r.exit_code == 2, r.output
    assert expected in r.output
    assert not out.exists() and sorted(p.name for p in tmp_path.iterdir()) == sorted(
        [*before, "cache"]
    )


def test_plan_and_train_on_a_cropped_label_exit_2_in_one_line_and_write_nothing(tmp_path):
    ds = hippocampus_nnunet(tmp_path / "ds", CASES)
    _crop_label(ds, "033")
    for args in (["plan", str(ds)], ["train", str(ds), "--out", str(tmp_path / "run")]):
        r = CliRunner().invoke(cli, [*args, "--no-progress"])
        assert r.exit_code == 2, r.output
        last = r.output.strip().splitlines()[-1]
        assert last.startswith("Error: case 'hippocampus_033': label ")
        assert "internal error" not in r.output and "plan:" not in r.output
    assert not (tmp_path / "run").exists()


def test_labels_that_are_not_consecutive_are_refused_and_a_remapped_copy_trains(tmp_path):
    ds = hippocampus_nnunet(
        tmp_path / "ds", CASES, labels={"background": 0, "head": 36, "body": 37}
    )
    for case in CASES:  # the labels carry the atlas's own ids
        img = nib.load(str(_label(ds, case)))
        data = np.asarray(img.dataobj).astype(np.int16)
        data[data > 0] += 35
        nib.save(nib.Nifti1Image(data, img.affine), str(_label(ds, case)))
    r = CliRunner().invoke(cli, ["train", str(ds), "--out", str(tmp_path / "r"), "--no-progress"])
    assert r.exit_code == 2, r.output
    line = r.output.strip().splitlines()[-1]
    assert "the labels [0, 36, 37] are not consecutive" in line
    assert "--remap 36:1 --remap 37:2 --out NEWDIR" in line
    new = tmp_path / "remapped"
    r = _check(ds, "--remap", "36:1:head", "--remap", "37:2", "--out", str(new))
    assert r.exit_code == 0, r.output
    assert "class 1 'head': old values [36]" in r.output and "0 error(s)" in r.output
    meta = json.loads((new / "dataset.json").read_text())
    assert meta["labels"] == {"background": 0, "head": 1, "body": 2}
    original = np.asarray(nib.load(str(_label(ds, "033"))).dataobj)
    copy = nib.load(str(new / "labelsTr" / "hippocampus_033.nii.gz"))
    np.testing.assert_array_equal(
        np.asarray(copy.dataobj), np.where(original > 0, original - 35, 0)
    )
    np.testing.assert_allclose(copy.affine, nib.load(str(_label(ds, "033"))).affine)
    # the user's own files are as they were, and the copy trains
    assert json.loads((ds / "dataset.json").read_text())["labels"]["head"] == 36
    args = ["train", str(new), "--out", str(tmp_path / "run"), "--epochs", "1"]
    args += ["--iters-per-epoch", "2", "--folds", "3", "--no-progress"]
    r = CliRunner().invoke(cli, args)
    assert r.exit_code == 0, r.output
    # merging: both old values into one class
    merged = tmp_path / "merged"
    r = _check(ds, "--remap", "36,37:1:hippocampus", "--out", str(merged))
    assert r.exit_code == 0, r.output
    data = np.asarray(nib.load(str(merged / "labelsTr" / "hippocampus_033.nii.gz")).dataobj)
    assert set(np.unique(data)) == {0, 1}
