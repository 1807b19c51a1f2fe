"""Real MRI cases (MSD Task04 Hippocampus, read where they lie): per-case normalisation of
uint8 and float32 images whose scales differ by four orders of magnitude, headers read
as written, and the band operators on volumes near their smallest band."""

from __future__ import annotations

import nibabel as nib
import numpy as np
import pytest
import torch
from builders import hippocampus_root

from fdseg_core.bands import band_fuse, band_split
from fdseg_core.data import Case, Preprocessor, load_case, load_dataset
from fdseg_core.data.preprocess import default_normalization, normalize


def _case(name: str) -> Case:
    root = hippocampus_root()
    return Case(
        name,
        (root / "imagesTr" / f"{name}.nii.gz",),
        root / "labelsTr" / f"{name}.nii.gz",
    )


@pytest.mark.parametrize(
    ("name", "dtype"),
    [("hippocampus_033", "uint8"), ("hippocampus_160", "float32"), ("hippocampus_003", "float32")],
)
def test_every_case_is_normalised_to_zero_mean_and_unit_variance_whatever_its_type(name, dtype):
    case = _case(name)
    assert nib.load(str(case.image_paths[0])).get_data_dtype() == np.dtype(dtype)
    info = load_dataset(hippocampus_root())
    assert default_normalization(info) == ("zscore",)  # the channel is named "MRI"
    vol = Preprocessor(default_normalization(info))(case)
    image = vol.image[0].astype(np.float64)
    assert image.mean() == pytest.approx(0.0, abs=1e-5)
    assert image.std() == pytest.approx(1.0, abs=1e-4)
    # the closed form, in float64 from the stored values
    raw = np.asarray(nib.load(str(case.image_paths[0])).dataobj).astype(np.float64)
    np.testing.assert_allclose(image, (raw - raw.mean()) / raw.std(), atol=1e-4)


def test_normalisation_does_not_depend_on_the_intensity_scale_or_the_stored_type():
    raw = load_case(_case("hippocampus_033")).image[0]  # uint8 values 0..255
    as_uint8 = normalize(raw.astype(np.uint8), "zscore")
    scaled = normalize(raw.astype(np.float32) * 4000.0, "zscore")  # the float cases' range
    np.testing.assert_allclose(as_uint8, scaled, atol=1e-5)


def test_labels_hold_the_two_adjacent_classes_and_the_header_is_kept():
    case = _case("hippocampus_243")
    loaded = load_case(case)
    assert set(np.unique(loaded.label)) == {0, 1, 2}
    # anterior and posterior touch: some voxel of one has a face neighbour of the other
    a, p = loaded.label == 1, loaded.label == 2
    touching = any((a & np.roll(p, s, axis)).any() for axis in range(3) for s in (1, -1))
    assert touching
    src = nib.load(str(case.image_paths[0]))
    np.testing.assert_allclose(loaded.affine, src.affine)
    assert loaded.spacing == pytest.approx((1.0, 1.0, 1.0))


@pytest.mark.parametrize("backend", ["torch", "matmul"])
def test_bands_of_a_real_case_of_24_slices_reconstruct_it_and_agree_between_backends(backend):
    image = load_case(_case("hippocampus_243")).image  # (1, 34, 53, 24)
    x = torch.from_numpy(Preprocessor(("zscore",))(_case("hippocampus_243")).image)[None]
    assert tuple(x.shape[2:]) == image.shape[1:] == (34, 53, 24)
    low, high = band_split(x, beta=0.1, backend=backend)
    assert tuple(low.shape[2:]) == (3, 5, 24)  # int(34 * 0.1), int(53 * 0.1): 3 and 5 samples
    fused = band_fuse(low, high, beta=0.1, backend=backend)
    torch.testing.assert_close(fused, x, atol=1e-4, rtol=0)
    ref_low, ref_high = band_split(x.double(), beta=0.1, backend="torch")
    torch.testing.assert_close(low.double(), ref_low, atol=1e-4, rtol=0)
    torch.testing.assert_close(high.double(), ref_high, atol=1e-4, rtol=0)
    # the low band keeps the volume's mean intensity (the DC term)
    assert float(low.mean()) == pytest.approx(float(x.mean()), abs=1e-4)
