"""The perturbation suite: strength 0 is the identity, a seed gives the same image, the
spectral kinds change exactly the band they name, levels grow, and an unknown kind is
one clear error."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from fdseg_core.bands import band_split
from fdseg_core.errors import InputError
from fdseg_core.robustness.perturbations import (
    KINDS,
    Perturbation,
    PerturbationSuite,
    perturb,
)

AFFINE = np.diag([1.0, 1.0, 2.0, 1.0])


def _image(seed: int = 0) -> np.ndarray:
    """A smooth blob on a noisy background: (1, 24, 28, 12), positive."""
    rng = np.random.default_rng(seed)
    x, y, z = np.meshgrid(*(np.linspace(-1, 1, n) for n in (24, 28, 12)), indexing="ij")
    blob = 4.0 * np.exp(-(x**2 + y**2 + z**2) / 0.2)
    return (2.0 + blob + 0.3 * rng.normal(size=blob.shape))[None].astype(np.float32)


def _kinds() -> list[str]:
    kinds = list(KINDS)
    try:
        import torchio  # noqa: F401
    except ImportError:
        kinds = [k for k in kinds if KINDS[k][0] != "artifact"]
    return kinds


@pytest.mark.parametrize("kind", _kinds())
def test_strength_0_is_the_identity_and_every_level_changes_the_image(kind):
    suite = PerturbationSuite(kinds=(kind,))
    image = _image()
    same = perturb(image, AFFINE, Perturbation(kind, 0.0, 0), suite, "c")
    assert same is image
    levels = [p for p in suite.perturbations() if p.kind == kind]
    assert [p.level for p in levels] == [1, 2, 3]
    for p in levels:
        out = perturb(image, AFFINE, p, suite, "c")
        assert out.shape == image.shape and out.dtype == np.float32
        assert np.isfinite(out).all() and not np.array_equal(out, image), p.name


@pytest.mark.parametrize("kind", _kinds())
def test_the_same_seed_gives_the_same_image_and_another_seed_may_not(kind):
    image = _image()
    p = Perturbation(kind, KINDS[kind][1][1], 2)
    a = perturb(image, AFFINE, p, PerturbationSuite(kinds=(kind,), seed=3), "case_1")
    b = perturb(image, AFFINE, p, PerturbationSuite(kinds=(kind,), seed=3), "case_1")
    np.testing.assert_array_equal(a, b)
    if kind in ("bias", "motion", "spike", "noise"):  # random draws: another seed, another image
        c = perturb(image, AFFINE, p, PerturbationSuite(kinds=(kind,), seed=4), "case_1")
        assert not np.array_equal(a, c)


def test_a_kinds_levels_scale_one_draw_so_the_change_grows():
    pytest.importorskip("torchio", reason="the artifact kinds are the robustness extra")
    image = _image()
    suite = PerturbationSuite(kinds=("noise", "bias"))
    for kind in ("noise", "bias"):
        changes = [
            float(np.abs(perturb(image, AFFINE, p, suite, "c") - image).mean())
            for p in suite.perturbations()
            if p.kind == kind
        ]
        assert changes == sorted(changes) and changes[0] > 0, (kind, changes)


SPECTRAL = [("low_band", 0.5), ("low_band", 1.0), ("high_band", 0.25), ("high_band", 1.0)]


@pytest.mark.parametrize(("kind", "strength"), SPECTRAL)
def test_a_spectral_kind_changes_exactly_the_band_it_names(kind, strength):
    """Checked with the band operators themselves, in float64: the named band is scaled
    by 1 - strength and the other is untouched."""
    suite = PerturbationSuite(kinds=(kind,), beta=0.25)
    image = _image()
    out = perturb(image, AFFINE, Perturbation(kind, strength, 1), suite, "c")

    def bands(a):
        x = torch.from_numpy(a.astype(np.float64))[None]
        _, high = band_split(x, 0.25, dims=(2, 3))
        return (x - high).numpy(), high.numpy()

    low0, high0 = bands(image)
    low1, high1 = bands(out)
    if kind == "low_band":
        np.testing.assert_allclose(high1, high0, atol=1e-5)
        np.testing.assert_allclose(low1, (1 - strength) * low0, atol=1e-5)
    else:
        np.testing.assert_allclose(low1, low0, atol=1e-5)
        np.testing.assert_allclose(high1, (1 - strength) * high0, atol=1e-5)


def test_gamma_and_contrast_keep_the_range_and_the_order_of_intensities():
    image = _image()
    suite = PerturbationSuite(kinds=("gamma", "contrast"))
    gamma = perturb(image, AFFINE, Perturbation("gamma", 1.0, 2), suite, "c")
    assert gamma.min() == pytest.approx(image.min()) and gamma.max() == pytest.approx(image.max())
    order = np.argsort(image.ravel())
    assert (np.diff(gamma.ravel()[order]) >= -1e-5).all()  # monotone
    contrast = perturb(image, AFFINE, Perturbation("contrast", 5.0, 2), suite, "c")
    lo, hi = np.percentile(image, [5, 95])
    assert contrast.min() == pytest.approx(lo) and contrast.max() == pytest.approx(hi)


def test_an_unknown_kind_is_one_error_naming_the_known_ones():
    with pytest.raises(InputError, match=r"unknown perturbation 'jpeg'; expected some of \['bias'"):
        PerturbationSuite(kinds=("noise", "jpeg"))


def test_the_suite_records_its_version_seed_cut_off_and_levels():
    d = PerturbationSuite(kinds=("noise", "low_band"), seed=7, beta=0.2).to_dict()
    assert d["version"] == "1" and d["seed"] == 7 and d["beta"] == 0.2
    assert d["kinds"]["low_band"]["strengths"] == [0.25, 0.5, 1.0]
    assert list(d["kinds"]) == ["noise", "low_band"]
