"""fdseg's sliding-window inference against MONAI's ``sliding_window_inference``.

Conventions aligned: MONAI steps by ``int(roi * (1 - overlap))`` and clamps its last
window, fdseg spreads windows evenly (nnU-Net); on sizes where ``size - roi`` is a
multiple of the step both place the same windows. MONAI blends the predictor's raw
output, fdseg its softmax, so MONAI runs the softmax inside its predictor here. Odd
window sizes, where both Gaussians peak at 1 on the middle voxel.
"""

from __future__ import annotations

import pytest
import torch

from fdseg_core.infer import sliding_window_inference
from fdseg_core.infer.sliding_window import gaussian_importance, window_starts

inferers = pytest.importorskip(
    "monai.inferers", reason="MONAI is an optional extra (pip install 'fdseg[monai]')"
)
monai_data = pytest.importorskip("monai.data.utils")


def _net() -> torch.nn.Module:
    torch.manual_seed(0)
    # zero padding makes each window's output depend on where the window sits
    return torch.nn.Sequential(
        torch.nn.Conv3d(1, 4, 3, padding=1), torch.nn.Tanh(), torch.nn.Conv3d(4, 3, 3, padding=1)
    ).double()


@pytest.mark.parametrize("mode", ["gaussian", "constant"])
@pytest.mark.parametrize(
    ("size", "roi"), [((31, 25, 16), (11, 9, 7)), ((21, 21, 13), (11, 11, 7))], ids=["a", "b"]
)
def test_probabilities_match_monai_when_windows_coincide(size, roi, mode):
    step = [int(r * 0.5) for r in roi]
    assert all((s - r) % st == 0 for s, r, st in zip(size, roi, step, strict=True))
    net = _net()
    x = torch.randn(1, 1, *size, dtype=torch.float64)
    ours = sliding_window_inference(
        x, net, roi, overlap=0.5, gaussian=mode == "gaussian", sigma_scale=0.125
    )
    theirs = inferers.sliding_window_inference(
        x, roi, 2, lambda t: net(t).softmax(1), overlap=0.5, mode=mode, sigma_scale=0.125
    )
    torch.testing.assert_close(ours.double(), theirs.double(), atol=2e-6, rtol=0)


def test_window_starts_equal_monais_on_aligned_sizes_and_spread_otherwise():
    assert window_starts(40, 16, 0.5) == [0, 8, 16, 24]
    # 37 - 16 = 21 is not a multiple of 8: MONAI would use 0, 8, 16, 21; fdseg spreads
    assert window_starts(37, 16, 0.5) == [0, 7, 14, 21]


def test_gaussian_importance_equals_monais_map_for_odd_windows():
    patch = (11, 9, 7)
    theirs = monai_data.compute_importance_map(patch, mode="gaussian", sigma_scale=0.125)
    torch.testing.assert_close(gaussian_importance(patch), theirs, atol=1e-6, rtol=1e-6)
