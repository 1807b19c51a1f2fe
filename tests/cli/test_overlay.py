"""``fdseg overlay``: pictures follow anatomy, whatever axis order a file stores."""

from __future__ import annotations

import nibabel as nib
import numpy as np
import pytest
from builders import hippocampus_nnunet
from click.testing import CliRunner
from matplotlib.image import imread

from fdseg_cli.main import cli
from fdseg_core.infer.overlay import CONVENTION, canonical, render_overlay

pytestmark = pytest.mark.slow


def _as(path, codes, out):
    """The same image stored with its axes in another order (``("P", "S", "R")``)."""
    img = nib.load(str(path))
    now = nib.orientations.io_orientation(img.affine)
    turn = nib.orientations.ornt_transform(now, nib.orientations.axcodes2ornt(codes))
    turned = img.as_reoriented(turn)
    nib.save(turned, str(out))
    return out


def test_one_scan_stored_as_ras_and_as_psr_gives_the_same_picture(tmp_path):
    ds = hippocampus_nnunet(tmp_path / "ds", ("033",))
    image = ds / "imagesTr" / "hippocampus_033_0000.nii.gz"
    label = ds / "labelsTr" / "hippocampus_033.nii.gz"
    psr_image = _as(image, ("P", "S", "R"), tmp_path / "psr_image.nii.gz")
    psr_label = _as(label, ("P", "S", "R"), tmp_path / "psr_label.nii.gz")
    assert nib.aff2axcodes(nib.load(str(psr_image)).affine) == ("P", "S", "R")
    pngs = []
    for img, lab, name in ((image, label, "ras"), (psr_image, psr_label, "psr")):
        out = tmp_path / f"{name}.png"
        r = CliRunner().invoke(
            cli,
            [
                "overlay",
                str(img),
                str(lab),
                "--out",
                str(out),
                "--dataset-json",
                str(ds / "dataset.json"),
            ],
        )
        assert r.exit_code == 0, r.output
        pngs.append(out)
    # the titles name the file; everything else is drawn from the canonical volume
    ras, psr = imread(str(pngs[0])), imread(str(pngs[1]))
    assert ras.shape == psr.shape
    body = slice(int(0.08 * ras.shape[0]), ras.shape[0])  # below the figure's title
    np.testing.assert_array_equal(ras[body], psr[body])
    # drawn without the affine, the PSR arrays give another picture: the test can fail
    raw = tmp_path / "raw.png"
    render_overlay(
        np.asarray(nib.load(str(psr_image)).dataobj, dtype=np.float32),
        np.asarray(nib.load(str(psr_label)).dataobj).astype(np.int64),
        raw,
        title="hippocampus_033_0000.nii.gz",
    )
    other = imread(str(raw))
    assert other.shape != ras.shape or not np.array_equal(other[body], ras[body])


def test_canonical_is_nibabels_closest_canonical():
    rng = np.random.default_rng(0)
    data = rng.random((4, 5, 6)).astype(np.float32)
    affine = np.array([[0, 0, 2.0, 10], [-1.5, 0, 0, 5], [0, 3.0, 0, -7], [0, 0, 0, 1]])
    img = nib.Nifti1Image(data, affine)
    want = nib.as_closest_canonical(img)
    got, got_affine, spacing = canonical(data, affine)
    np.testing.assert_array_equal(got, np.asarray(want.dataobj))
    np.testing.assert_allclose(got_affine, want.affine)
    assert spacing == pytest.approx((2.0, 1.5, 3.0))
    assert "neurological convention" in CONVENTION


def test_a_dataset_gets_one_picture_per_training_case(tmp_path):
    ds = hippocampus_nnunet(tmp_path / "ds", ("033", "160"))
    out = tmp_path / "pngs"
    r = CliRunner().invoke(cli, ["overlay", str(ds), "--out", str(out), "--no-progress"])
    assert r.exit_code == 0, r.output
    assert sorted(p.name for p in out.glob("*.png")) == [
        "hippocampus_033.png",
        "hippocampus_160.png",
    ]
