"""fdseg's metrics against MONAI's with the conventions aligned (MONAI is the ``monai``
extra, which CI installs): a regression in either library shows here.

Aligned: MONAI's surface is the 6-connected erosion (``connectivity=1`` in fdseg), its
HD95 the larger of the two directed 95th percentiles and its ASSD the mean of both
directions' distances pooled, all in the spacing given. Where fdseg differs on purpose
(the 26-connected default surface, Dice of an empty reference) the tests pin the
difference; ``docs/metrics.md`` explains it.
"""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from scipy import ndimage

from fdseg_core.metrics import assd, dice, hd95

pytestmark = pytest.mark.filterwarnings("ignore::FutureWarning")  # inside MONAI 1.6

monai_metrics = pytest.importorskip(
    "monai.metrics", reason="MONAI is an optional extra (pip install 'fdseg[monai]')"
)

SPACINGS = [(1.0, 1.0, 1.0), (1.5, 0.8, 2.5)]


def blobs(seed: int, shape=(40, 36, 28), threshold=0.6) -> tuple[np.ndarray, np.ndarray]:
    """Two irregular, overlapping masks (thresholded smooth noise)."""
    rng = np.random.default_rng(seed)
    fields = [ndimage.gaussian_filter(rng.normal(size=shape), 3.0) for _ in range(2)]
    masks = []
    for f in fields:
        f = (f - f.min()) / (f.max() - f.min())
        masks.append(f > threshold)
    base = masks[0]
    moved = base ^ (masks[1] & ndimage.binary_dilation(base, iterations=3))
    return base, moved


def _onehot(mask: np.ndarray) -> torch.Tensor:
    m = torch.from_numpy(mask.astype(np.float32))
    return torch.stack([1 - m, m])[None]  # (B=1, C=2, X, Y, Z)


@pytest.mark.parametrize("spacing", SPACINGS, ids=["iso", "aniso"])
@pytest.mark.parametrize("seed", [0, 1, 2])
def test_hd95_and_assd_match_monai_with_its_surface(seed, spacing):
    pred, ref = blobs(seed)
    assert pred.any() and ref.any() and (pred ^ ref).any()
    p, r = _onehot(pred), _onehot(ref)
    m_hd95 = monai_metrics.compute_hausdorff_distance(
        p, r, include_background=False, percentile=95, spacing=list(spacing)
    )
    m_assd = monai_metrics.compute_average_surface_distance(
        p, r, include_background=False, symmetric=True, spacing=list(spacing)
    )
    ours_hd95 = hd95(pred, ref, spacing, connectivity=1)
    ours_assd = assd(pred, ref, spacing, connectivity=1)
    assert ours_hd95 == pytest.approx(float(m_hd95), rel=1e-5)
    assert ours_assd == pytest.approx(float(m_assd), rel=1e-5)


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_dice_matches_monai_when_the_reference_is_not_empty(seed):
    pred, ref = blobs(seed)
    m = monai_metrics.compute_dice(_onehot(pred), _onehot(ref), include_background=False)
    assert dice(pred, ref) == pytest.approx(float(m), rel=1e-6)


def test_empty_reference_conventions_differ_as_documented():
    """Prediction without reference: fdseg's Dice is 0 (a false positive is an error),
    MONAI's (``ignore_empty=True``) is NaN; both give no finite HD95."""
    pred = np.zeros((12, 12, 12), bool)
    pred[2:5, 2:5, 2:5] = True
    ref = np.zeros_like(pred)
    m = monai_metrics.compute_dice(_onehot(pred), _onehot(ref), include_background=False)
    assert math.isnan(float(m)) and dice(pred, ref) == 0.0
    with pytest.warns(UserWarning):
        m_hd = monai_metrics.compute_hausdorff_distance(
            _onehot(pred), _onehot(ref), include_background=False, percentile=95
        )
    assert not math.isfinite(float(m_hd)) and math.isnan(hd95(pred, ref, (1, 1, 1)))


def test_default_26_connected_surface_is_thicker_than_monais():
    """fdseg's default surface (erosion by the full 3x3x3 structure) holds every voxel
    with a face, edge or corner neighbour outside the mask; MONAI's (the 6-connected
    cross) only those with a face neighbour outside. The distances therefore differ a
    little; the difference is pinned, not hidden."""
    from fdseg_core.metrics import surface_distances

    pred, ref = blobs(0)
    spacing = SPACINGS[1]
    n_full = sum(d.size for d in surface_distances(pred, ref, spacing))
    n_cross = sum(d.size for d in surface_distances(pred, ref, spacing, connectivity=1))
    assert n_full > n_cross
    full = assd(pred, ref, spacing)
    cross = assd(pred, ref, spacing, connectivity=1)
    m = float(
        monai_metrics.compute_average_surface_distance(
            _onehot(pred), _onehot(ref), include_background=False, symmetric=True,
            spacing=list(spacing),
        )
    )  # fmt: skip
    assert cross == pytest.approx(m, rel=1e-5)
    assert full != pytest.approx(m, rel=1e-3) and abs(full - m) / m < 0.25
    with pytest.raises(ValueError, match="connectivity must be an integer in"):
        assd(pred, ref, spacing, connectivity=4)
