"""The sigmoid rule and the softmax rule: hand computations, and the background channel
of a sigmoid model never reaching a label."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from fdseg_core.choices import LOSS_ACTIVATION, activation_of_loss
from fdseg_core.infer import labels_from_probabilities, probabilities, sliding_window_inference


def test_sigmoid_rule_matches_a_hand_computation():
    # one batch, 3 classes, 4 voxels in a row; logits chosen so that sigmoid values are
    # easy: logit 0 -> 0.5, +-inf-ish -> 1 / 0
    logits = torch.tensor(
        [
            [
                [[[9.0, 9.0, -9.0, 9.0]]],  # background: ignored by the sigmoid rule
                [[[2.0, -1.0, 0.0, -3.0]]],  # class 1
                [[[1.0, -2.0, -0.5, -3.0]]],  # class 2
            ]
        ]
    )
    probs = probabilities(logits, "sigmoid")
    s = torch.sigmoid
    fg1 = s(torch.tensor([2.0, -1.0, 0.0, -3.0]))
    fg2 = s(torch.tensor([1.0, -2.0, -0.5, -3.0]))
    torch.testing.assert_close(probs[0, 1, 0, 0], fg1)
    torch.testing.assert_close(probs[0, 2, 0, 0], fg2)
    torch.testing.assert_close(probs[0, 0, 0, 0], 1 - torch.maximum(fg1, fg2))
    # voxel 0: class 1 (0.88 > 0.73, both >= .5); voxel 1: both < .5 -> 0; voxel 2:
    # class 1 at exactly 0.5 -> foreground; voxel 3: both small -> 0
    assert labels_from_probabilities(probs, "sigmoid")[0, 0, 0].tolist() == [1, 0, 1, 0]
    # the softmax rule on the same logits reads the background logit: voxel 0, class 1
    # by the sigmoid rule, becomes background
    softmax_labels = labels_from_probabilities(probabilities(logits), "softmax")
    assert softmax_labels[0, 0, 0].tolist() == [0, 0, 1, 0]


def test_sigmoid_rule_picks_the_most_likely_foreground_class_on_numpy_too():
    probs = np.array(
        [
            [0.0, 0.0, 0.0, 0.9],  # channel 0 is never read
            [0.6, 0.2, 0.49, 0.51],
            [0.7, 0.1, 0.3, 0.50],
        ],
        dtype=np.float32,
    )
    got = labels_from_probabilities(probs, "sigmoid", dim=0)
    assert isinstance(got, np.ndarray)
    assert got.tolist() == [2, 0, 0, 1]
    assert labels_from_probabilities(probs, "softmax", dim=0).tolist() == [2, 1, 1, 0]


def test_softmax_probabilities_are_a_softmax():
    logits = torch.randn(2, 4, 3, 5, 6, dtype=torch.float64)
    torch.testing.assert_close(probabilities(logits), logits.float().softmax(1))


def test_unknown_activation_and_a_sigmoid_without_foreground_are_refused():
    with pytest.raises(ValueError, match="activation must be one of .*'tanh'"):
        probabilities(torch.zeros(1, 2, 2, 2, 2), "tanh")
    with pytest.raises(ValueError, match="background and a foreground channel, got 1"):
        probabilities(torch.zeros(1, 1, 2, 2, 2), "sigmoid")
    with pytest.raises(ValueError, match="loss must be one of .*'focal'"):
        activation_of_loss("focal")


def test_every_loss_names_its_activation():
    from fdseg_core.choices import LOSSES

    assert set(LOSS_ACTIVATION) == set(LOSSES)
    assert activation_of_loss("sigmoid_dice") == "sigmoid"
    assert activation_of_loss("dice_ce") == "softmax"


class ShiftChannel0(torch.nn.Module):
    """A fixed pointwise model whose channel-0 logit gets ``shift``."""

    def __init__(self, shift: float) -> None:
        super().__init__()
        torch.manual_seed(0)
        self.conv = torch.nn.Conv3d(1, 3, 3, padding=1)
        self.shift = shift

    def forward(self, x):
        out = self.conv(x)
        return torch.cat([out[:, :1] + self.shift, out[:, 1:]], 1)


@pytest.mark.parametrize("tta", [False, True], ids=["plain", "tta"])
def test_sliding_window_sigmoid_labels_ignore_the_background_logit(tta):
    x = torch.randn(1, 1, 20, 18, 12)
    runs = {
        shift: sliding_window_inference(
            x, ShiftChannel0(shift).eval(), (8, 8, 8), tta_flips=tta, activation="sigmoid"
        )
        for shift in (-20.0, 0.0, 20.0)
    }
    base = runs[0.0]
    for probs in runs.values():
        torch.testing.assert_close(probs, base)  # every channel, channel 0 included
    labels = labels_from_probabilities(base, "sigmoid")
    assert len(labels.unique()) > 1
    # the softmax rule does depend on it (what the sigmoid rule fixes)
    soft = [
        labels_from_probabilities(
            sliding_window_inference(x, ShiftChannel0(s).eval(), (8, 8, 8)), "softmax"
        )
        for s in (-20.0, 20.0)
    ]
    assert not torch.equal(soft[0], soft[1])
